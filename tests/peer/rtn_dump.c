/* SPDX-License-Identifier: Apache-2.0 */
/* rtn_dump.c - test driver: quantize a raw fp32 matrix with pq_rtn_quantize
 * and write the results as raw files for the PyTorch peer test:
 * PREFIX.codes (int8 [rows, cols] or packed uint8), PREFIX.scale (float32),
 * PREFIX.zp (int32, asymmetric only). Prints the metrics on stdout as
 * "sum_sq err_sq max_abs_err n_nonfinite" (%.17g).
 *
 * usage: rtn_dump IN.f32 ROWS COLS BITS tensor|channel|group GROUP_SIZE sym|asym
 *                 error|zero THREADS PREFIX */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/config.h"
#include "quant/rtn.h"

static int write_raw(const char *prefix, const char *ext, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s.%s", prefix, ext);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        fprintf(stderr, "rtn_dump: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 11) {
        fprintf(stderr, "usage: rtn_dump IN.f32 ROWS COLS BITS tensor|channel|group GS sym|asym "
                        "error|zero THREADS PREFIX\n");
        return 2;
    }
    int64_t rows = atoll(argv[2]), cols = atoll(argv[3]);
    pq_qspec spec = {.bits = atoi(argv[4]), .group_size = atoi(argv[6]),
                     .symmetric = strcmp(argv[7], "sym") == 0};
    spec.gran = strcmp(argv[5], "tensor") == 0    ? PQ_GRAN_TENSOR
                : strcmp(argv[5], "channel") == 0 ? PQ_GRAN_CHANNEL
                                                  : PQ_GRAN_GROUP;
    pq_nan_policy pol = strcmp(argv[8], "zero") == 0 ? PQ_NAN_ZERO : PQ_NAN_ERROR;
    int threads = atoi(argv[9]);
    pq_ops ops;
    pq_status hs = pq_hardware_select("cpu", &ops); /* PQ_KERNELS may name one */
    if (hs) {
        fprintf(stderr, "rtn_dump: %s: %s\n", pq_strerror(hs), pq_err_detail());
        return 2;
    }
    const char *prefix = argv[10];

    size_t n = (size_t)(rows * cols);
    float *w = malloc(n * sizeof *w + 1);
    FILE *f = fopen(argv[1], "rb");
    if (!w || !f || fread(w, sizeof *w, n, f) != n) {
        fprintf(stderr, "rtn_dump: cannot read %zu floats from %s\n", n, argv[1]);
        return 1;
    }
    fclose(f);
    pq_qtensor qt;
    pq_status st = pq_rtn_quantize(&ops, threads, w, rows, cols, &spec, pol, "input", &qt);
    if (st) {
        fprintf(stderr, "rtn_dump: %s: %s\n", pq_strerror(st), pq_err_detail());
        free(w);
        return 3;
    }
    int rc = write_raw(prefix, "codes", qt.codes, (size_t)(rows * qt.code_row_bytes)) ||
             write_raw(prefix, "scale", qt.scale, (size_t)qt.n_scales * sizeof(float)) ||
             (qt.zero_point && write_raw(prefix, "zp", qt.zero_point, (size_t)qt.n_scales * sizeof(int32_t)));
    printf("%.17g %.17g %.17g %lld\n", qt.metrics.sum_sq, qt.metrics.err_sq, qt.metrics.max_abs_err,
           (long long)qt.metrics.n_nonfinite);
    pq_qtensor_free(&qt);
    free(w);
    return rc;
}
