/* SPDX-License-Identifier: Apache-2.0 */
/* test_attention.c - the fused attention of one (sequence, head)
 * (pq_ops.attention): the scalar reference against a hand-computed case and
 * against the same attention computed in double from its definition
 * (docs/esm2.md: q scaled by hd^-0.5, split-half rotary on q and k,
 * softmax(q k^T) v); every compiled-in variant against the reference within
 * the tolerances stated in kernels/x86/attn_avx512.c, q/k/v left unchanged,
 * the same output with and without the maps requested. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels_impl.h"

#define TOL_P 5e-6  /* probabilities, absolute (scores of |s| ~ 20 differ by an FMA rounding) */
#define TOL_O 1e-5  /* outputs, times max(1, |o|) */
/* bf16 outputs: a probability next to a bf16 rounding boundary may round the
 * other way (one bf16 ulp, 2^-8 relative), times max(1, |o|) */
#define TOL_O_BF16 2e-3

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(float lo, float hi)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

typedef struct head {
    int64_t T, ld;
    int hd;
    float *q, *k, *v, *ct, *st;
} head;

/* T tokens of one head inside rows of ld floats (other heads' columns
 * around it), scores spread wide enough that softmax is far from uniform. */
static head make_head(int64_t T, int hd, float spread)
{
    head h = {.T = T, .hd = hd, .ld = (int64_t)hd * 3 + 5};
    size_t n = (size_t)(T * h.ld);
    h.q = malloc(n * sizeof(float));
    h.k = malloc(n * sizeof(float));
    h.v = malloc(n * sizeof(float));
    h.ct = malloc((size_t)(T * hd / 2) * sizeof(float));
    h.st = malloc((size_t)(T * hd / 2) * sizeof(float));
    assert_non_null(h.q); assert_non_null(h.k); assert_non_null(h.v);
    assert_non_null(h.ct); assert_non_null(h.st);
    for (size_t i = 0; i < n; i++) {
        h.q[i] = frand(-spread, spread);
        h.k[i] = frand(-spread, spread);
        h.v[i] = frand(-2, 2);
    }
    float inv[64];
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)hd);
    pq_rotary_table(inv, hd / 2, T, h.ct, h.st);
    return h;
}

static void free_head(head *h)
{
    free(h->q); free(h->k); free(h->v); free(h->ct); free(h->st);
}

static float *scratch_for(int64_t T, int hd)
{
    size_t n = pq_attention_scratch(T, hd);
    float *s = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    assert_non_null(s);
    return s;
}

/* The definition in double: o [T][hd], p [T][T]. */
static void attention_double(const head *h, double *o, double *p)
{
    int64_t T = h->T;
    int hd = h->hd, half = hd / 2;
    double *qr = malloc(sizeof(double) * (size_t)(T * hd)), *kr = malloc(sizeof(double) * (size_t)(T * hd));
    assert_non_null(qr); assert_non_null(kr);
    double sc = 1.0 / sqrt((double)hd);
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double c = h->ct[t * half + i], s = h->st[t * half + i];
            double q1 = h->q[t * h->ld + i] * sc, q2 = h->q[t * h->ld + i + half] * sc;
            double k1 = h->k[t * h->ld + i], k2 = h->k[t * h->ld + i + half];
            qr[t * hd + i] = q1 * c - q2 * s;
            qr[t * hd + i + half] = q2 * c + q1 * s;
            kr[t * hd + i] = k1 * c - k2 * s;
            kr[t * hd + i + half] = k2 * c + k1 * s;
        }
    for (int64_t i = 0; i < T; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < T; j++) {
            double s = 0.0;
            for (int d = 0; d < hd; d++) s += qr[i * hd + d] * kr[j * hd + d];
            p[i * T + j] = s;
            mx = s > mx ? s : mx;
        }
        for (int64_t j = 0; j < T; j++) sum += (p[i * T + j] = exp(p[i * T + j] - mx));
        for (int64_t j = 0; j < T; j++) p[i * T + j] /= sum;
        for (int d = 0; d < hd; d++) {
            double a = 0.0;
            for (int64_t j = 0; j < T; j++) a += p[i * T + j] * h->v[j * h->ld + d];
            o[i * hd + d] = a;
        }
    }
    free(qr); free(kr);
}

/* T = 2, hd = 2, position table cos 1 / sin 0 at t = 0 and a quarter turn at
 * t = 1: by hand. */
static void test_ref_hand_case(void **state)
{
    (void)state;
    /* q0 = (2, 0), q1 = (0, 0); k0 = (1, 0), k1 = (0, 1) rotated by 90 deg
     * -> (-1, 0); scale 1/sqrt(2). Row 0: scores (2/sqrt2 * 1, 2/sqrt2 * -1)
     * = (sqrt2, -sqrt2). Row 1: q1 = 0: uniform. */
    float q[4] = {2, 0, 0, 0}, k[4] = {1, 0, 0, 1}, v[4] = {1, 10, 3, 30};
    float ct[2] = {1.0f, 0.0f}, st[2] = {0.0f, 1.0f}, o[4], p[4];
    float *scr = scratch_for(2, 2);
    pq_attention_ref(q, k, v, 2, 2, 2, 1.0f / sqrtf(2.0f), ct, st, o, 2, p, scr);
    double a = exp(sqrt(2.0)), b = exp(-sqrt(2.0));
    double p00 = a / (a + b), p01 = b / (a + b);
    assert_float_equal(p[0], p00, 1e-6);
    assert_float_equal(p[1], p01, 1e-6);
    assert_float_equal(p[2], 0.5, 1e-7);
    assert_float_equal(p[3], 0.5, 1e-7);
    assert_float_equal(o[0], p00 * 1 + p01 * 3, 1e-5);
    assert_float_equal(o[1], p00 * 10 + p01 * 30, 1e-5);
    assert_float_equal(o[2], 2.0, 1e-6);
    assert_float_equal(o[3], 20.0, 1e-5);
    free(scr);
}

static void test_ref_vs_double(void **state)
{
    (void)state;
    const int64_t Ts[] = {1, 3, 17, 70};
    const int hds[] = {16, 24, 64};
    for (size_t ti = 0; ti < 4; ti++)
        for (size_t hi = 0; hi < 3; hi++) {
            head h = make_head(Ts[ti], hds[hi], 3.0f);
            int64_t T = h.T;
            int hd = h.hd;
            float *o = malloc(sizeof(float) * (size_t)(T * hd)), *p = malloc(sizeof(float) * (size_t)(T * T));
            double *od = malloc(sizeof(double) * (size_t)(T * hd)), *pd = malloc(sizeof(double) * (size_t)(T * T));
            float *scr = scratch_for(T, hd);
            pq_attention_ref(h.q, h.k, h.v, h.ld, T, hd, 1.0f / sqrtf((float)hd), h.ct, h.st, o, hd, p, scr);
            attention_double(&h, od, pd);
            for (int64_t i = 0; i < T * T; i++)
                if (fabs(p[i] - pd[i]) > 2e-6)
                    fail_msg("ref T=%lld hd=%d p[%lld] %g vs %g", (long long)T, hd, (long long)i, p[i], pd[i]);
            for (int64_t i = 0; i < T * hd; i++)
                if (fabs(o[i] - od[i]) > 2e-5 * fmax(1.0, fabs(od[i])))
                    fail_msg("ref T=%lld hd=%d o[%lld] %g vs %g", (long long)T, hd, (long long)i, o[i], od[i]);
            /* bf16 products: q, k, v, p carry 8 significant bits */
            pq_attention_bf16_ref(h.q, h.k, h.v, h.ld, T, hd, 1.0f / sqrtf((float)hd), h.ct, h.st, o, hd, p, scr);
            double ep = 0, eo = 0;
            for (int64_t i = 0; i < T * T; i++) ep = fmax(ep, fabs(p[i] - pd[i]));
            for (int64_t i = 0; i < T * hd; i++) eo = fmax(eo, fabs(o[i] - od[i]) / fmax(1.0, fabs(od[i])));
            if (ep > 0.03 || eo > 0.03)
                fail_msg("bf16 ref T=%lld hd=%d: p off by %g, o by %g", (long long)T, hd, ep, eo);
            if (T > 1 && ep == 0.0 && eo == 0.0)
                fail_msg("bf16 ref T=%lld hd=%d: no rounding at all", (long long)T, hd);
            free(o); free(p); free(od); free(pd); free(scr);
            free_head(&h);
        }
}

/* A variant's o2 (maps p2) and o3 (no maps) against the reference's o1, p1;
 * q and k unchanged (q0, k0); columns past the head not written. */
static void compare(const char *name, const head *h, int64_t ldo, const float *q0, const float *k0,
                    const float *o1, const float *o2, const float *o3, const float *p1, const float *p2,
                    double tol_o)
{
    int64_t T = h->T;
    int hd = h->hd;
    size_t nin = (size_t)(T * h->ld);
    assert_memory_equal(q0, h->q, nin * sizeof(float));
    assert_memory_equal(k0, h->k, nin * sizeof(float));
    assert_memory_equal(o2, o3, sizeof(float) * (size_t)(T * ldo));
    for (int64_t i = 0; i < T * T; i++)
        if (fabsf(p1[i] - p2[i]) > TOL_P)
            fail_msg("%s T=%lld hd=%d p[%lld] %g vs ref %g", name, (long long)T, hd, (long long)i, p2[i], p1[i]);
    for (int64_t i = 0; i < T; i++)
        for (int64_t d = 0; d < ldo; d++) {
            float a = o1[i * ldo + d], b = o2[i * ldo + d];
            if (d >= hd) {
                assert_true(b == 0.0f);
                continue;
            }
            if (fabsf(a - b) > tol_o * fmaxf(1.0f, fabsf(a)))
                fail_msg("%s T=%lld hd=%d o[%lld][%lld] %g vs ref %g", name, (long long)T, hd, (long long)i,
                         (long long)d, b, a);
        }
}

static void test_variants_vs_ref(void **state)
{
    (void)state;
    pq_ops ctx;
    int tested = 0, tested_bf16 = 0;
    const char *names[] = {"avx2", "avx512"};
    for (size_t vi = 0; vi < 2; vi++) {
        if (pq_ops_select(names[vi], &ctx) != PQ_KOK || !ctx.attention) continue;
        pq_ops_force_bf16_attention(&ctx); /* offered only where it is the faster; tested wherever it runs */
        tested++;
        const int64_t Ts[] = {1, 3, 15, 16, 17, 63, 64, 65, 130, 257};
        const int hds[] = {16, 24, 32, 64, 80, 128};
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
            for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
                head h = make_head(Ts[ti], hds[hi], 4.0f);
                int64_t T = h.T, ldo = h.hd + 3;
                int hd = h.hd;
                size_t nin = (size_t)(T * h.ld);
                float *q0 = malloc(nin * sizeof(float)), *k0 = malloc(nin * sizeof(float));
                memcpy(q0, h.q, nin * sizeof(float));
                memcpy(k0, h.k, nin * sizeof(float));
                float *o1 = calloc((size_t)(T * ldo), sizeof(float)), *o2 = calloc((size_t)(T * ldo), sizeof(float));
                float *o3 = calloc((size_t)(T * ldo), sizeof(float));
                float *p1 = malloc(sizeof(float) * (size_t)(T * T)), *p2 = malloc(sizeof(float) * (size_t)(T * T));
                float *s1 = scratch_for(T, hd), *s2 = scratch_for(T, hd);
                float sc = 1.0f / sqrtf((float)hd);
                pq_attention_ref(h.q, h.k, h.v, h.ld, T, hd, sc, h.ct, h.st, o1, ldo, p1, s1);
                ctx.attention(h.q, h.k, h.v, h.ld, T, hd, sc, h.ct, h.st, o2, ldo, p2, s2);
                ctx.attention(h.q, h.k, h.v, h.ld, T, hd, sc, h.ct, h.st, o3, ldo, NULL, s2);
                compare(ctx.name, &h, ldo, q0, k0, o1, o2, o3, p1, p2, TOL_O);
                if (ctx.attention_bf16) {
                    memset(o2, 0, sizeof(float) * (size_t)(T * ldo));
                    memset(o3, 0, sizeof(float) * (size_t)(T * ldo));
                    pq_attention_bf16_ref(h.q, h.k, h.v, h.ld, T, hd, sc, h.ct, h.st, o1, ldo, p1, s1);
                    ctx.attention_bf16(h.q, h.k, h.v, h.ld, T, hd, sc, h.ct, h.st, o2, ldo, p2, s2);
                    ctx.attention_bf16(h.q, h.k, h.v, h.ld, T, hd, sc, h.ct, h.st, o3, ldo, NULL, s2);
                    compare("bf16", &h, ldo, q0, k0, o1, o2, o3, p1, p2, TOL_O_BF16);
                    tested_bf16++;
                }
                free(q0); free(k0); free(o1); free(o2); free(o3); free(p1); free(p2); free(s1); free(s2);
                free_head(&h);
            }
    }
    if (!tested) print_message("no fused attention variant on this CPU/build; reference only\n");
    if (!tested_bf16) print_message("no bf16 attention variant on this CPU/build; reference only\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_hand_case),
        cmocka_unit_test(test_ref_vs_double),
        cmocka_unit_test(test_variants_vs_ref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
