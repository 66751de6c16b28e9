/* SPDX-License-Identifier: Apache-2.0 */
/* bench_gptq_factor.c - the blocked GPTQ factor (quant/gptq_factor.h,
 * PQ_GPTQ_FACTOR_NB) on one process against LAPACK's whole-matrix dpotrf +
 * dtrtri (one BLAS thread each, the route it replaced), on the same damped
 * SPD matrix, interleaved, best of REPS:
 *   bench_gptq_factor D THREADS REPS
 * Prints one JSON line (seconds and GFLOP/s at 2/3 d^3 flops; with
 * PQ_BENCH_CPU_TIME=1 the seconds are the process's CPU time, steadier on a
 * loaded machine, meaningful for THREADS 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "base/pq_clock.h"
#include "model/blas.h"
#include "quant/gptq.h"

static int cpu_time;

static double now(void)
{
    if (!cpu_time) return pq_now_s();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    cpu_time = getenv("PQ_BENCH_CPU_TIME") && !strcmp(getenv("PQ_BENCH_CPU_TIME"), "1");
    if (argc != 4) {
        fprintf(stderr, "usage: bench_gptq_factor D THREADS REPS\n");
        return 2;
    }
    const int64_t d = atoll(argv[1]);
    const int nt = atoi(argv[2]), reps = atoi(argv[3]);
    if (d < 1 || nt < 1 || reps < 1 || pq_blas_load()) return 2;
    /* H = X^T X / t, X t x d uniform, t = 2 d */
    const int64_t t = 2 * d;
    double *x = malloc((size_t)(t * d) * sizeof *x), *H = malloc((size_t)(d * d) * sizeof *H);
    double *A = malloc((size_t)(d * d) * sizeof *A);
    uint64_t s = 7;
    for (int64_t k = 0; k < t * d; k++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        x[k] = (double)(s >> 11) / 9007199254740992.0 - 0.5;
    }
    pq_blas_set_threads(nt);
    if (pq_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)t, 1.0 / (double)t, x, (int)d, 0.0, H, (int)d))
        return 1;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < i; j++) H[i * d + j] = H[j * d + i];
    double mean = 0;
    for (int64_t i = 0; i < d; i++) mean += H[i * d + i] / (double)d;
    double best_b = 1e30, best_l = 1e30;
    const pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    for (int r = 0; r < reps; r++) {
        memcpy(A, H, (size_t)(d * d) * sizeof *A);
        pq_gptq_factor *f = NULL;
        double t0 = now();
        if (pq_gptq_prepare_with(A, d, &o, "bench", &pq_factor_comm_local, PQ_GPTQ_FACTOR_NB, nt, &f)) return 1;
        double t1 = now();
        pq_gptq_factor_free(f);
        best_b = t1 - t0 < best_b ? t1 - t0 : best_b;
        memcpy(A, H, (size_t)(d * d) * sizeof *A);
        for (int64_t i = 0; i < d; i++) A[i * d + i] += 0.01 * mean;
        int info = 0;
        pq_blas_set_threads(1);
        t0 = now();
        if (pq_dpotrf('L', (int)d, A, (int)d, &info) || info) return 1;
        if (pq_dtrtri('L', 'N', (int)d, A, (int)d, &info) || info) return 1;
        t1 = now();
        best_l = t1 - t0 < best_l ? t1 - t0 : best_l;
    }
    const double fl = 2.0 / 3.0 * (double)d * (double)d * (double)d;
    printf("{\"d\": %lld, \"threads\": %d, \"blocked_s\": %.4f, \"blocked_gflops\": %.2f, \"lapack_1thread_s\": %.4f, "
           "\"lapack_gflops\": %.2f}\n",
           (long long)d, nt, best_b, fl / best_b * 1e-9, best_l, fl / best_l * 1e-9);
    free(x);
    free(H);
    free(A);
    return 0;
}
