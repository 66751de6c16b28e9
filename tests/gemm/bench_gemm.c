/* SPDX-License-Identifier: Apache-2.0 */
/* bench_gemm.c - times one GEMM operation on random data and prints
 * "op m n k threads best_ms median_ms variant best_cpu_ms" (process CPU time,
 * all threads; scripts/bench/bench_gemm.py drives it). Ops: sgemm, sgemv (OpenBLAS fp32), i8i8 (int32 out only),
 * i8i8_f32 (+ fused epilogue), w8a8 (+ per-token quantisation), wonly8
 * (int8 per-channel), wonly4 (int4, group 128), w4a8 (int4 per-channel x
 * per-token int8), w4a8g (int4 group 128 x per-token int8). The kernel context is "cpu" (the
 * best this CPU runs), or the one PQ_KERNELS names (ref | avx2 | avx512), read
 * once here; "variant" prints its GEMM micro-kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "kernels/gemm/pq_gemm.h"

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_gemm OP M N K THREADS REPS\n");
        return 2;
    }
    const char *op = argv[1];
    int64_t m = atoll(argv[2]), n = atoll(argv[3]), k = atoll(argv[4]);
    int nt = atoi(argv[5]), reps = atoi(argv[6]);
    openblas_set_num_threads(nt);
    const char *kn = getenv("PQ_KERNELS");
    pq_ops ops;
    pq_kstatus ks = pq_ops_select(kn && *kn ? kn : "cpu", &ops);
    if (ks) {
        char avail[64];
        fprintf(stderr, "bench_gemm: PQ_KERNELS=%s: %s (choices %s; available here: %s)\n", kn,
                pq_kstatus_str(ks), pq_ops_names(), pq_ops_available(avail, sizeof avail));
        return 2;
    }
    float *x = malloc((size_t)(m * k) * sizeof(float)), *wf = malloc((size_t)(n * k) * sizeof(float));
    float *y = malloc((size_t)(m * n) * sizeof(float)), *bias = malloc((size_t)n * sizeof(float));
    float *ws = malloc((size_t)n * sizeof(float)), *as = malloc((size_t)m * sizeof(float));
    int8_t *a8 = malloc((size_t)(m * k)), *w8 = malloc((size_t)(n * k));
    uint8_t *w4 = malloc((size_t)(n * ((k + 1) / 2)));
    int64_t ng4 = (k + 127) / 128;
    float *s4 = malloc((size_t)(n * ng4) * sizeof(float));
    int32_t *c = malloc((size_t)(m * n) * sizeof(int32_t));
    if (!x || !wf || !y || !bias || !ws || !as || !a8 || !w8 || !w4 || !s4 || !c) return 1;
    srand(1);
    for (int64_t i = 0; i < m * k; i++) {
        x[i] = (float)rand() / RAND_MAX - 0.5f;
        a8[i] = (int8_t)(rand() % 255 - 127);
    }
    for (int64_t i = 0; i < n * k; i++) {
        wf[i] = (float)rand() / RAND_MAX - 0.5f;
        w8[i] = (int8_t)(rand() % 255 - 127);
    }
    for (int64_t i = 0; i < n * ((k + 1) / 2); i++) w4[i] = (uint8_t)rand();
    for (int64_t i = 0; i < n; i++) ws[i] = bias[i] = 0.01f;
    for (int64_t i = 0; i < n * ng4; i++) s4[i] = 0.01f;
    for (int64_t i = 0; i < m; i++) as[i] = 0.01f;
    pq_gemm_w *w = NULL;
    pq_kstatus st = PQ_KOK;
    if (!strcmp(op, "i8i8") || !strcmp(op, "i8i8_f32") || !strcmp(op, "w8a8"))
        st = pq_gemm_pack_i8(w8, n, k, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_I8I8, &w);
    else if (!strcmp(op, "wonly8"))
        st = pq_gemm_pack_i8(w8, n, k, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_WONLY, &w);
    else if (!strcmp(op, "wonly4"))
        st = pq_gemm_pack_i4(w4, n, k, s4, NULL, PQ_GEMM_GROUP, 128, PQ_GEMM_USE_WONLY, &w);
    else if (!strcmp(op, "w4a8"))
        st = pq_gemm_pack_i4(w4, n, k, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_I8I8, &w);
    else if (!strcmp(op, "w4a8g"))
        st = pq_gemm_pack_i4(w4, n, k, s4, NULL, PQ_GEMM_GROUP, 128, PQ_GEMM_USE_I8I8, &w);
    if (st) {
        fprintf(stderr, "bench_gemm: %s\n", pq_kstatus_str(st));
        return 1;
    }
    pq_gemm_epilogue epi = {.bias = bias};
    double *t = malloc((size_t)(reps + 2) * sizeof(double)), cpu_best = 1e300;
    for (int r = -2; r < reps; r++) {
        double t0 = now_ms(), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
        if (!strcmp(op, "sgemm"))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x,
                        (int)k, wf, (int)k, 0.0f, y, (int)n);
        else if (!strcmp(op, "sgemv"))
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)k, 1.0f, wf, (int)k, x, 1, 0.0f, y, 1);
        else if (!strcmp(op, "i8i8"))
            st = pq_gemm_i8i8_s32(&ops, a8, m, k, w, c, n, nt);
        else if (!strcmp(op, "i8i8_f32"))
            st = pq_gemm_i8i8_f32(&ops, a8, m, k, as, 1, 0, w, &epi, y, n, nt);
        else if (!strcmp(op, "w8a8") || !strcmp(op, "w4a8") || !strcmp(op, "w4a8g"))
            st = pq_gemm_w8a8_f32(&ops, x, m, k, w, &epi, y, n, nt);
        else if (!strcmp(op, "wonly8") || !strcmp(op, "wonly4"))
            st = pq_gemm_wonly_f32(&ops, x, m, k, w, &epi, y, n, nt);
        else {
            fprintf(stderr, "bench_gemm: unknown op %s\n", op);
            return 2;
        }
        if (st) {
            fprintf(stderr, "bench_gemm: %s\n", pq_kstatus_str(st));
            return 1;
        }
        if (r >= 0) {
            t[r] = now_ms() - t0;
            double c = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
            cpu_best = c < cpu_best ? c : cpu_best;
        }
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    printf("%s %lld %lld %lld %d %.4f %.4f %s %.4f\n", op, (long long)m, (long long)n,
           (long long)k, nt, t[0], t[reps / 2], ops.gemm.name, cpu_best);
    pq_gemm_w_free(w);
    free(x), free(wf), free(y), free(bias), free(ws), free(as), free(a8), free(w8), free(w4);
    free(s4), free(c), free(t);
    return 0;
}
