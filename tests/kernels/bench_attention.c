/* SPDX-License-Identifier: Apache-2.0 */
/* bench_attention.c - benchmark (not a test): one layer's attention of one
 * sequence of T tokens on the t33 shape (20 heads of 64), three ways,
 * interleaved round by round on one thread: per-head SGEMMs with the avx2
 * rotary and softmax (the forward's path without a fused kernel), the fused
 * fp32 kernel and the fused bf16 kernel (where the CPU has them). Times are
 * the thread's CPU time, so a loaded machine slows all three alike; prints
 * the median per round of each and the ratios.
 *
 * usage: bench_attention T [ROUNDS] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels_impl.h"
#include "kernels/pq_kernels.h"

#define H 20
#define HD 64

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_attention T [ROUNDS]\n");
        return 2;
    }
    int T = atoi(argv[1]), rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (T < 1 || T > 4096 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "bench_attention: T in 1..4096, ROUNDS in 1..1000\n");
        return 2;
    }
    pq_ops a2, a5;
    int have2 = pq_ops_select("avx2", &a2) == PQ_KOK, have5 = pq_ops_select("avx512", &a5) == PQ_KOK;
    if (!have2) pq_ops_init_ref(&a2);
    if (have5) pq_ops_force_bf16_attention(&a5); /* timed even where the forward prefers fp32 */
    int64_t ld = 3 * H * HD;
    size_t nscr = pq_attention_scratch(T, HD);
    if (nscr < (size_t)T * (size_t)T) nscr = (size_t)T * (size_t)T;
    float *qkv = malloc(sizeof(float) * (size_t)T * (size_t)ld), *w = malloc(sizeof(float) * (size_t)T * (size_t)ld);
    float *o = malloc(sizeof(float) * (size_t)T * H * HD), *ct = malloc(sizeof(float) * (size_t)T * HD / 2);
    float *st = malloc(sizeof(float) * (size_t)T * HD / 2), *scr = aligned_alloc(64, (nscr * sizeof(float) + 63) / 64 * 64);
    double *t[3];
    for (int i = 0; i < 3; i++) t[i] = calloc((size_t)rounds, sizeof(double));
    if (!qkv || !w || !o || !ct || !st || !scr || !t[0] || !t[1] || !t[2]) {
        fprintf(stderr, "bench_attention: out of memory\n");
        return 1;
    }
    uint64_t r = 88172645463325252ull;
    for (int64_t i = 0; i < (int64_t)T * ld; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        qkv[i] = (float)((double)(r >> 11) / 9007199254740992.0) * 4.0f - 2.0f;
    }
    float inv[HD / 2];
    for (int i = 0; i < HD / 2; i++) inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / HD);
    pq_rotary_table(inv, HD / 2, T, ct, st);
    openblas_set_num_threads(1);
    float sc = 1.0f / sqrtf((float)HD);
    for (int round = 0; round <= rounds; round++) { /* round 0 warms up */
        double t0 = cpu_s();
        memcpy(w, qkv, sizeof(float) * (size_t)T * (size_t)ld);
        for (int h = 0; h < H; h++) {
            float *qh = w + h * HD, *kh = w + H * HD + h * HD, *vh = w + 2 * H * HD + h * HD;
            for (int64_t i = 0; i < T; i++)
                for (int j = 0; j < HD; j++) qh[i * ld + j] *= sc;
            a2.rotary(qh, T, ld, 1, HD, ct, st);
            a2.rotary(kh, T, ld, 1, HD, ct, st);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, 1.0f, qh, (int)ld, kh, (int)ld, 0.0f, scr, T);
            a2.softmax_rows(scr, T, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, scr, T, vh, (int)ld, 0.0f, o + h * HD,
                        H * HD);
        }
        double t1 = cpu_s();
        for (int h = 0; have5 && a5.attention && h < H; h++)
            a5.attention(qkv + h * HD, qkv + H * HD + h * HD, qkv + 2 * H * HD + h * HD, ld, T, HD, sc, ct, st,
                         o + h * HD, H * HD, NULL, scr);
        double t2 = cpu_s();
        for (int h = 0; have5 && a5.attention_bf16 && h < H; h++)
            a5.attention_bf16(qkv + h * HD, qkv + H * HD + h * HD, qkv + 2 * H * HD + h * HD, ld, T, HD, sc, ct,
                              st, o + h * HD, H * HD, NULL, scr);
        double t3 = cpu_s();
        if (round == 0) continue;
        t[0][round - 1] = t1 - t0;
        t[1][round - 1] = t2 - t1;
        t[2][round - 1] = t3 - t2;
    }
    for (int i = 0; i < 3; i++) qsort(t[i], (size_t)rounds, sizeof(double), cmp);
    double m0 = t[0][rounds / 2], m1 = t[1][rounds / 2], m2 = t[2][rounds / 2];
    printf("T %d, %d heads of %d, median of %d rounds, ms of CPU per layer:\n", T, H, HD, rounds);
    printf("  per-head SGEMMs (%s rotary/softmax)  %9.3f\n", a2.name, 1e3 * m0);
    if (have5 && a5.attention) printf("  fused fp32 (avx512)               %9.3f  %.2fx\n", 1e3 * m1, m0 / m1);
    if (have5 && a5.attention_bf16) printf("  fused bf16 (avx512_bf16)          %9.3f  %.2fx\n", 1e3 * m2, m0 / m2);
    free(qkv); free(w); free(o); free(ct); free(st); free(scr);
    for (int i = 0; i < 3; i++) free(t[i]);
    return 0;
}
