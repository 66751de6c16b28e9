/* SPDX-License-Identifier: Apache-2.0 */
/* bench_rtn.c - benchmark driver: per-channel int8 observe + quantize of a raw
 * fp32 [ROWS, COLS] matrix with pq_rtn_quantize_rows; prints the best of REPS
 * runs as "seconds <s> gbps <GB/s of fp32 input>". With OUT given, also writes
 * the codes (int8) and scales (float32) of the last run to OUT.codes/OUT.scale
 * so that the caller can check them against PyTorch. Kernels: the best this
 * CPU runs, or the context PQ_KERNELS names (pq_hardware_select).
 *
 * usage: bench_rtn IN.f32 ROWS COLS THREADS metrics|nometrics sym|asym REPS [OUT] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/config.h"
#include "quant/rtn.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_raw(const char *prefix, const char *ext, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s.%s", prefix, ext);
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(p, 1, n, f) != n;
    if (f) bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "bench_rtn: cannot write %s\n", path);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: bench_rtn IN.f32 ROWS COLS THREADS metrics|nometrics sym|asym REPS [OUT]\n");
        return 2;
    }
    int64_t rows = atoll(argv[2]), cols = atoll(argv[3]);
    int threads = atoi(argv[4]), reps = atoi(argv[7]);
    int metrics = strcmp(argv[5], "metrics") == 0;
    pq_qspec spec = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = strcmp(argv[6], "sym") == 0};
    size_t n = (size_t)(rows * cols);
    float *w = malloc(n * sizeof *w);
    int8_t *codes = malloc(n);
    float *scale = malloc((size_t)rows * sizeof *scale);
    int32_t *zp = malloc((size_t)rows * sizeof *zp);
    double *ss = malloc((size_t)rows * sizeof *ss), *es = malloc((size_t)rows * sizeof *es);
    float *me = malloc((size_t)rows * sizeof *me);
    FILE *f = fopen(argv[1], "rb");
    if (!w || !codes || !scale || !zp || !ss || !es || !me || !f || fread(w, sizeof *w, n, f) != n) {
        fprintf(stderr, "bench_rtn: cannot read %zu floats from %s\n", n, argv[1]);
        return 1;
    }
    fclose(f);
    /* touch the outputs once so that page faults are not timed */
    memset(codes, 0, n);
    pq_ops ops;
    pq_status hs = pq_hardware_select("cpu", &ops);
    if (hs) {
        fprintf(stderr, "bench_rtn: %s: %s\n", pq_strerror(hs), pq_err_detail());
        return 2;
    }
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        pq_rtn_rows out = {.codes = codes, .scale = scale, .zero_point = zp};
        if (metrics) {
            out.row_sum_sq = ss;
            out.row_err_sq = es;
            out.row_max_err = me;
        }
        double t0 = now_s();
        pq_status st = pq_rtn_quantize_rows(&ops, threads, w, rows, cols, &spec, PQ_NAN_ERROR, NULL, "bench", 0, &out);
        double t = now_s() - t0;
        if (st) {
            fprintf(stderr, "bench_rtn: %s: %s\n", pq_strerror(st), pq_err_detail());
            return 3;
        }
        if (t < best) best = t;
    }
    printf("kernels %s seconds %.6f gbps %.3f\n", ops.name, best,
           (double)n * sizeof(float) / best / 1e9);
    int rc = 0;
    if (argc == 9)
        rc = write_raw(argv[8], "codes", codes, n) ||
             write_raw(argv[8], "scale", scale, (size_t)rows * sizeof *scale);
    free(w); free(codes); free(scale); free(zp); free(ss); free(es); free(me);
    return rc;
}
