/* SPDX-License-Identifier: Apache-2.0 */
/* bench_gptq.c - benchmark of the GPTQ numerics (scripts/bench/bench_gptq.py
 * runs it next to the paper's reference):
 *   bench_gptq hessian D N_SEQS SEQ_LEN REPS
 *     the Hessian build (pq_hessian_add_seqs, each sequence its own partial) against BLAS dsyrk on
 *     the same rows in one call (fp64, one BLAS thread, as the build uses);
 *   bench_gptq solve H.f64 W.f32 ROWS D THREADS BITS GROUP ACT_ORDER [KERNELS]
 *     pq_gptq_prepare + pq_gptq_quantize_rows on a given H and W, with the
 *     kernel context KERNELS (pq_ops_select's names; default cpu).
 * Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/blas.h"
#include "quant/gptq.h"
#include "quant/hessian.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process (all its threads): on a loaded machine it counts
 * the work and not the waits for a core. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_hessian(int64_t d, int64_t n_seqs, int64_t len, int reps)
{
    const int64_t n = n_seqs * len;
    float *x = malloc((size_t)(n * d) * sizeof *x);
    double *xd = malloc((size_t)(n * d) * sizeof *xd), *c = malloc((size_t)(d * d) * sizeof *c);
    uint32_t s = 1;
    for (int64_t i = 0; i < n * d; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)(s >> 8) - (1 << 23)) / (float)(1 << 23);
        xd[i] = x[i];
    }
    if (pq_blas_load()) goto fail;
    pq_blas_set_threads(1);
    double best_syrk = 1e30, best_h = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (pq_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n, 1.0, xd, (int)d, 0.0, c, (int)d))
            goto fail;
        double t1 = now();
        best_syrk = t1 - t0 < best_syrk ? t1 - t0 : best_syrk;
        pq_hessian *h;
        if (pq_hessian_create(d, "bench", &h)) goto fail;
        /* the sequences as one forward batch brings them (gptq_run.c), each its own partial */
        int64_t *off = malloc((size_t)(n_seqs + 1) * sizeof *off);
        for (int64_t q = 0; q <= n_seqs; q++) off[q] = q * len;
        t0 = now();
        pq_status hs = pq_hessian_add_seqs(h, NULL, x, off, n_seqs, d, 1);
        t1 = now();
        free(off);
        if (hs) goto fail;
        best_h = t1 - t0 < best_h ? t1 - t0 : best_h;
        pq_hessian_free(h);
    }
    const double flops = (double)n * (double)d * (double)(d + 1);
    printf("{\"mode\": \"hessian\", \"d\": %lld, \"n_seqs\": %lld, \"seq_len\": %lld, \"dsyrk_s\": %.6f, "
           "\"dsyrk_gflops\": %.3f, \"hessian_s\": %.6f, \"hessian_gflops\": %.3f, \"ratio\": %.4f}\n",
           (long long)d, (long long)n_seqs, (long long)len, best_syrk, flops / best_syrk * 1e-9, best_h,
           flops / best_h * 1e-9, best_syrk / best_h);
    free(x);
    free(xd);
    free(c);
    return 0;
fail:
    fprintf(stderr, "bench_gptq: %s\n", pq_err_detail());
    return 1;
}

static void *slurp(const char *path, size_t want)
{
    FILE *f = fopen(path, "rb");
    void *p = malloc(want);
    if (!f || !p || fread(p, 1, want, f) != want) {
        fprintf(stderr, "bench_gptq: cannot read %zu bytes of %s\n", want, path);
        exit(1);
    }
    fclose(f);
    return p;
}

static int bench_solve(char **a, const char *kernels)
{
    const int64_t rows = atoll(a[2]), d = atoll(a[3]);
    const int nt = atoi(a[4]), bits = atoi(a[5]), group = atoi(a[6]);
    double *H = slurp(a[0], (size_t)(d * d) * 8);
    float *W = slurp(a[1], (size_t)(rows * d) * 4);
    pq_qspec s = {.bits = bits, .gran = group ? PQ_GRAN_GROUP : PQ_GRAN_CHANNEL, .group_size = group,
                  .symmetric = true};
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    o.act_order = atoi(a[7]) != 0;
    const int64_t G = pq_qspec_groups(&s, d);
    void *codes = malloc((size_t)(rows * pq_qspec_row_bytes(&s, d)));
    float *scale = malloc((size_t)(rows * G) * sizeof *scale);
    pq_rtn_rows r = {.codes = codes, .scale = scale};
    pq_ops ops;
    if (pq_ops_select(kernels, &ops) != PQ_KOK) {
        fprintf(stderr, "bench_gptq: kernel context '%s' is not available here\n", kernels);
        return 1;
    }
    if (pq_blas_load()) goto fail;
    pq_blas_set_threads(nt);
    double t0 = now(), c0 = cpu_now();
    pq_gptq_factor *f;
    if (pq_gptq_prepare(H, d, &o, "bench", &f)) goto fail;
    double t1 = now();
    if (pq_gptq_quantize_rows(&ops, f, W, rows, d, &s, nt, &r)) goto fail;
    double t2 = now(), c2 = cpu_now();
    printf("{\"mode\": \"solve\", \"rows\": %lld, \"d\": %lld, \"threads\": %d, \"kernels\": \"%s\", "
           "\"prepare_s\": %.6f, \"quantize_s\": %.6f, \"total_s\": %.6f, \"total_cpu_s\": %.6f}\n",
           (long long)rows, (long long)d, nt, ops.name, t1 - t0, t2 - t1, t2 - t0, c2 - c0);
    pq_gptq_factor_free(f);
    free(H);
    free(W);
    free(codes);
    free(scale);
    return 0;
fail:
    fprintf(stderr, "bench_gptq: %s\n", pq_err_detail());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "hessian"))
        return bench_hessian(atoll(argv[2]), atoll(argv[3]), atoll(argv[4]), atoi(argv[5]));
    if ((argc == 10 || argc == 11) && !strcmp(argv[1], "solve"))
        return bench_solve(argv + 2, argc == 11 ? argv[10] : "cpu");
    fprintf(stderr, "usage: bench_gptq hessian D N_SEQS SEQ_LEN REPS\n"
                    "       bench_gptq solve H.f64 W.f32 ROWS D THREADS BITS GROUP ACT_ORDER [KERNELS]\n");
    return 2;
}
