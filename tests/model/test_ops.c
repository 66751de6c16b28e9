/* SPDX-License-Identifier: Apache-2.0 */
/* test_ops.c - float transformer kernels: the reference against hand-computed
 * values, and every compiled-in variant against the reference within the
 * tolerances stated in kernels/x86/ops_avx2.c and math512.h. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/pq_kernels.h"

#define TOL_LN 2e-6    /* relative to the row's output scale */
#define TOL_SOFTMAX 1e-6
#define TOL_GELU 1e-6  /* times max(1, |x|) */

static uint64_t rng = 88172645463325252ull;
static float frand(float lo, float hi)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static void test_ref_hand_values(void **state)
{
    (void)state;
    pq_ops ref;
    pq_ops_init_ref(&ref);
    const pq_ops *R = &ref;
    /* layernorm of [1,2,3,4]: mean 2.5, var 1.25 -> (x-2.5)/sqrt(1.25+eps) */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, b[4] = {0, 0, 0, 1}, y[4];
    R->layernorm(x, 1, 4, w, b, 1e-5f, y);
    double s = 1.0 / sqrt(1.25 + 1e-5);
    assert_float_equal(y[0], -1.5 * s, 1e-6);
    assert_float_equal(y[1], -0.5 * s, 1e-6);
    assert_float_equal(y[2], 2 * 0.5 * s, 1e-6);
    assert_float_equal(y[3], 1.5 * s + 1, 1e-6);
    /* softmax of [0, ln2, -inf] = [1/3, 2/3, 0] */
    float p[3] = {0.0f, (float)log(2.0), -INFINITY};
    R->softmax_rows(p, 1, 3);
    assert_float_equal(p[0], 1.0 / 3.0, 1e-7);
    assert_float_equal(p[1], 2.0 / 3.0, 1e-7);
    assert_true(p[2] == 0.0f);
    /* gelu(1) = 0.5 * (1 + erf(1/sqrt2)) = 0.8413447460685429; gelu(-2) = -0.04550026389635842 */
    float g[3] = {1.0f, -2.0f, 0.0f};
    R->gelu(g, 3);
    assert_float_equal(g[0], 0.8413447460685429, 2e-7);
    assert_float_equal(g[1], -0.04550026389635842, 2e-8);
    assert_true(g[2] == 0.0f);
    /* rotary hd=4: inv_freq [1, 0.01]; position 2: angles [2, 0.02] */
    float inv[2] = {1.0f, 0.01f}, ct[3 * 2], st[3 * 2];
    pq_rotary_table(inv, 2, 3, ct, st);
    assert_float_equal(ct[2 * 2 + 0], cos(2.0), 1e-7);
    assert_float_equal(st[2 * 2 + 1], sin((double)(2.0f * 0.01f)), 1e-8);
    float q[4] = {1, 2, 3, 4};
    R->rotary(q, 1, 4, 1, 4, ct + 4, st + 4);
    /* y0 = x0 c0 - x2 s0; y2 = x2 c0 + x0 s0 */
    assert_float_equal(q[0], 1 * cos(2.0) - 3 * sin(2.0), 1e-6);
    assert_float_equal(q[2], 3 * cos(2.0) + 1 * sin(2.0), 1e-6);
    assert_float_equal(q[1], 2 * cos(0.02) - 4 * sin(0.02), 1e-6);
    assert_float_equal(q[3], 4 * cos(0.02) + 2 * sin(0.02), 1e-6);
}

static void test_variants_vs_ref(void **state)
{
    (void)state;
    pq_ops ref, ctx;
    pq_ops_init_ref(&ref);
    const pq_ops *R = &ref;
    /* avx512's element-wise slots are avx2's but for gelu and layernorm */
    const char *names[] = {"avx2", "avx512"};
    int tested = 0;
    for (size_t vi = 0; vi < sizeof names / sizeof names[0]; vi++) {
        if (pq_ops_select(names[vi], &ctx) != PQ_KOK) continue;
        const pq_ops *V = &ctx;
        tested++;
        const int64_t dims[] = {1, 7, 8, 17, 320, 481};
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            int64_t d = dims[di], rows = 3;
            float *x = malloc((size_t)(rows * d + 1) * sizeof(float));
            float *w = malloc((size_t)d * sizeof(float)), *b = malloc((size_t)d * sizeof(float));
            float *y1 = malloc((size_t)(rows * d) * sizeof(float)), *y2 = malloc((size_t)(rows * d) * sizeof(float));
            for (int64_t i = 0; i < rows * d + 1; i++) x[i] = frand(-4, 4) + (i % 5 == 0 ? 30.0f : 0.0f);
            for (int64_t i = 0; i < d; i++) { w[i] = frand(0.5f, 1.5f); b[i] = frand(-0.2f, 0.2f); }
            /* misaligned input (&x[1]) on purpose */
            R->layernorm(x + 1, rows, d, w, b, 1e-5f, y1);
            V->layernorm(x + 1, rows, d, w, b, 1e-5f, y2);
            for (int64_t i = 0; i < rows * d; i++) {
                if (fabsf(y1[i] - y2[i]) > TOL_LN * fmaxf(1.0f, fabsf(y1[i])))
                    fail_msg("%s layernorm d=%lld i=%lld: %g vs ref %g", V->name, (long long)d, (long long)i,
                             y2[i], y1[i]);
            }
            /* softmax with a -inf entry and a wide range */
            memcpy(y1, x + 1, (size_t)(rows * d) * sizeof(float));
            for (int64_t i = 0; i < rows * d; i++) y1[i] *= 10.0f;
            y1[d / 2] = -INFINITY;
            memcpy(y2, y1, (size_t)(rows * d) * sizeof(float));
            R->softmax_rows(y1, rows, d);
            V->softmax_rows(y2, rows, d);
            for (int64_t i = 0; i < rows * d; i++)
                if (fabsf(y1[i] - y2[i]) > TOL_SOFTMAX)
                    fail_msg("%s softmax d=%lld i=%lld: %g vs ref %g", V->name, (long long)d, (long long)i,
                             y2[i], y1[i]);
            if (d > 1) assert_true(y2[d / 2] == 0.0f);
            /* gelu over [-10, 10] */
            for (int64_t i = 0; i < rows * d; i++) y1[i] = y2[i] = frand(-10, 10);
            R->gelu(y1, rows * d);
            V->gelu(y2, rows * d);
            for (int64_t i = 0; i < rows * d; i++) {
                float xi = y1[i]; /* after; the bound uses the output scale, >= |x| / 2 roughly */
                if (fabsf(y1[i] - y2[i]) > TOL_GELU * fmaxf(1.0f, 2.0f * fabsf(xi)))
                    fail_msg("%s gelu i=%lld: %g vs ref %g", V->name, (long long)i, y2[i], y1[i]);
            }
            free(x); free(w); free(b); free(y1); free(y2);
        }
        /* rotary: bit-identical, head dims 16, 24, 32, 64 */
        const int hds[] = {16, 24, 32, 64};
        for (size_t hi = 0; hi < 4; hi++) {
            int hd = hds[hi], H = 3, T = 9;
            int64_t ld = (int64_t)H * hd + 5;
            float inv[32], *ct = malloc(sizeof(float) * (size_t)(T * hd / 2)), *st = malloc(sizeof(float) * (size_t)(T * hd / 2));
            for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)hd);
            pq_rotary_table(inv, hd / 2, T, ct, st);
            float *a = malloc(sizeof(float) * (size_t)(T * ld)), *c = malloc(sizeof(float) * (size_t)(T * ld));
            for (int64_t i = 0; i < T * ld; i++) a[i] = c[i] = frand(-3, 3);
            R->rotary(a, T, ld, H, hd, ct, st);
            V->rotary(c, T, ld, H, hd, ct, st);
            assert_memory_equal(a, c, sizeof(float) * (size_t)(T * ld));
            free(a); free(c); free(ct); free(st);
        }
    }
    if (!tested) print_message("no SIMD variant on this CPU/build; reference only\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_hand_values),
        cmocka_unit_test(test_variants_vs_ref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
