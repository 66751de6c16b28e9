/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_driver.c - test driver for the GPTQ peer test: build the Hessian of
 * the input rows X (fp32, n x d, cut into "sequences" of SEQ rows), run the
 * GPTQ solve on the weight W (fp32, rows x d) and write, for the peers:
 *   OUT/H.f64 (d x d, 2/n * X^T X), OUT/codes.i8 (rows x d, unpacked),
 *   OUT/scales.f32, OUT/zp.i32 (rows x groups), OUT/Q.f32 (dequantized).
 * usage: gptq_driver X.f32 D SEQ W.f32 ROWS BITS GROUP SYM ACT_ORDER OUT [H.f64]
 *        (GROUP 0: per channel; H.f64 given: solve with that Hessian, d x d
 *        fp64, instead of building one from X) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/gptq.h"
#include "quant/hessian.h"

static void *slurp(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)*n + 1);
    if (p && fread(p, 1, (size_t)*n, f) != (size_t)*n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static int dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) {
        perror(path);
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 11 && argc != 12) {
        fprintf(stderr, "usage: gptq_driver X.f32 D SEQ W.f32 ROWS BITS GROUP SYM ACT_ORDER OUT [H.f64]\n");
        return 2;
    }
    const int64_t d = atoll(argv[2]), seq = atoll(argv[3]), rows = atoll(argv[5]);
    const int bits = atoi(argv[6]), group = atoi(argv[7]);
    long nx, nw;
    float *X = slurp(argv[1], &nx), *W = slurp(argv[4], &nw);
    if (!X || !W || nw != (long)(rows * d * 4) || nx % (d * 4)) {
        fprintf(stderr, "gptq_driver: bad input files\n");
        return 1;
    }
    const int64_t n = nx / (d * 4);
    pq_qspec s = {.bits = bits, .gran = group ? PQ_GRAN_GROUP : PQ_GRAN_CHANNEL, .group_size = group,
                  .symmetric = atoi(argv[8]) != 0};
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    o.act_order = atoi(argv[9]) != 0;
    const char *out = argv[10];
    pq_ops ops;
    if (pq_ops_select("cpu", &ops) != PQ_KOK) return 1;
    pq_hessian *h = NULL;
    double *H = malloc((size_t)(d * d) * sizeof *H);
    pq_gptq_factor *f = NULL;
    if (argc == 12) {
        long nh;
        double *Hg = slurp(argv[11], &nh);
        if (!Hg || nh != (long)(d * d * 8)) {
            fprintf(stderr, "gptq_driver: bad Hessian file %s\n", argv[11]);
            return 1;
        }
        memcpy(H, Hg, (size_t)(d * d) * 8);
        free(Hg);
    } else {
        if (pq_hessian_create(d, "driver", &h)) goto fail;
        for (int64_t t = 0; t < n; t += seq)
            if (pq_hessian_add(h, NULL, X + t * d, n - t < seq ? n - t : seq, d)) goto fail;
        if (pq_hessian_finish(h, H)) goto fail;
    }
    if (dump(out, "H.f64", H, (size_t)(d * d) * 8)) return 1;
    if (pq_gptq_prepare(H, d, &o, "driver", &f)) goto fail;
    const int64_t G = pq_qspec_groups(&s, d), rb = pq_qspec_row_bytes(&s, d);
    uint8_t *codes = malloc((size_t)(rows * rb));
    int8_t *q = malloc((size_t)(rows * d));
    float *scale = malloc((size_t)(rows * G) * sizeof *scale), *Q = malloc((size_t)(rows * d) * sizeof *Q);
    int32_t *zp = calloc((size_t)(rows * G), sizeof *zp);
    pq_rtn_rows r = {.codes = codes, .scale = scale, .zero_point = s.symmetric ? NULL : zp};
    if (pq_gptq_quantize_rows(&ops, f, W, rows, d, &s, 0, &r)) goto fail;
    pq_ops ref;
    pq_ops_init_ref(&ref);
    for (int64_t i = 0; i < rows; i++) {
        if (bits == 4)
            ref.unpack_i4(codes + i * rb, d, q + i * d);
        else
            memcpy(q + i * d, codes + i * rb, (size_t)d);
        for (int64_t g = 0; g < G; g++) {
            const int64_t c0 = g * (group ? group : d), c1 = group && c0 + group < d ? c0 + group : d;
            ref.dequantize_row(q + i * d + c0, c1 - c0, scale[i * G + g], zp[i * G + g], Q + i * d + c0);
        }
    }
    if (dump(out, "codes.i8", q, (size_t)(rows * d)) || dump(out, "scales.f32", scale, (size_t)(rows * G) * 4) ||
        dump(out, "zp.i32", zp, (size_t)(rows * G) * 4) || dump(out, "Q.f32", Q, (size_t)(rows * d) * 4))
        return 1;
    pq_gptq_factor_free(f);
    pq_hessian_free(h);
    free(H);
    free(X);
    free(W);
    free(codes);
    free(q);
    free(scale);
    free(Q);
    free(zp);
    return 0;
fail:
    fprintf(stderr, "gptq_driver: %s\n", pq_err_detail());
    return 1;
}
