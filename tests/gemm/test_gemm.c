/* SPDX-License-Identifier: Apache-2.0 */
/* test_gemm.c - integer GEMM kernels: every variant's int32 sums against a
 * plain triple loop (exactly, saturation-trap codes included), the fused fp32
 * epilogue against double precision, weight-only GEMM against
 * dequantise-then-cblas_sgemm, activation quantisation against hand-computed
 * codes, and 1 vs 2 threads bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cmocka.h>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/gemm/pq_gemm.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((next() >> 11) * (1.0 / 9007199254740992.0));
}

/* Random int8 in [lo, hi], a quarter of them at the extremes (-128/-127/127):
 * the values that break a saturating maddubs-style kernel. */
static int8_t code(int lo, int hi)
{
    uint64_t r = next();
    if ((r & 3) == 0) {
        int e[3] = {lo, lo == -128 ? -127 : lo, hi};
        return (int8_t)e[(r >> 2) % 3];
    }
    return (int8_t)(lo + (int)((r >> 8) % (uint64_t)(hi - lo + 1)));
}

/* Every kernel context, by the name pq_ops_select knows, and the GEMM
 * micro-kernels each must carry. */
static const char *const variants[] = {"ref", "avx2", "avx512"};
static const char *const gemm_names[] = {"ref", "avx2", "avx512vnni"};
#define N_VARIANTS 3
static pq_ops contexts[N_VARIANTS];
static int have[N_VARIANTS];
static pq_ops best; /* "cpu" */

static int setup(void **state)
{
    (void)state;
    for (int v = 0; v < N_VARIANTS; v++) have[v] = pq_ops_select(variants[v], &contexts[v]) == PQ_KOK;
    return pq_ops_select("cpu", &best) == PQ_KOK ? 0 : -1;
}

/* Context v; NULL when this build or CPU cannot run it. */
static const pq_ops *use_variant(int v)
{
    if (!have[v]) return NULL;
    assert_string_equal(contexts[v].gemm.name, gemm_names[v]);
    return &contexts[v];
}

/* ---- int8 x int8 -> int32 exactness --------------------------------------- */

typedef struct shape { int64_t m, n, k; } shape;

/* How check_i8i8 fills A and W. */
typedef enum fill {
    FILL_RANDOM,      /* both in [-128, 127], a quarter at the extremes */
    FILL_MIN,         /* A and W all -128: every madd pair is 32768 */
    FILL_MAX_MIN,     /* A all 127, W all -128 */
    FILL_SIGN_EXTREMES, /* A in {-127, 127}, W in {-128, -127, 127}: largest
                       * pair sums of the sign-trick path without overflow */
    FILL_SPARSE_MIN,  /* A in [-127, 127] except a few -128 in one row (only
                       * that row block needs the exact -128 correction) */
} fill;

static void check_i8i8_shape(shape s, fill f)
{
    int64_t lda = s.k + 3, ldc = s.n + 1;
    /* +1 byte / +1 int32: pointers deliberately not vector aligned */
    int8_t *abuf = malloc((size_t)(s.m * lda + 1)), *a = abuf + 1;
    int8_t *wq = malloc((size_t)(s.n * s.k));
    int32_t *cbuf = malloc((size_t)(s.m * ldc + 1) * sizeof(int32_t)), *c = cbuf + 1;
    int32_t *c2 = malloc((size_t)(s.m * ldc) * sizeof(int32_t));
    int64_t *expect = malloc((size_t)(s.m * s.n) * sizeof(int64_t));
    float *scale = malloc((size_t)s.n * sizeof(float));
    assert_non_null(abuf), assert_non_null(wq), assert_non_null(cbuf), assert_non_null(c2);
    assert_non_null(expect), assert_non_null(scale);
    static const int8_t wext[3] = {-128, -127, 127};
    for (int64_t i = 0; i < s.m * lda; i++) {
        switch (f) {
        case FILL_RANDOM: a[i] = code(-128, 127); break;
        case FILL_MIN: a[i] = -128; break;
        case FILL_MAX_MIN: a[i] = 127; break;
        case FILL_SIGN_EXTREMES: a[i] = (next() & 1) ? 127 : -127; break;
        case FILL_SPARSE_MIN: a[i] = code(-127, 127); break;
        }
    }
    if (f == FILL_SPARSE_MIN) { /* row m/2: first, last and one middle column */
        int64_t r = s.m / 2;
        a[r * lda] = a[r * lda + s.k - 1] = a[r * lda + s.k / 2] = -128;
    }
    for (int64_t i = 0; i < s.n * s.k; i++) {
        switch (f) {
        case FILL_RANDOM: case FILL_SPARSE_MIN: wq[i] = code(-128, 127); break;
        case FILL_MIN: case FILL_MAX_MIN: wq[i] = -128; break;
        case FILL_SIGN_EXTREMES: wq[i] = wext[next() % 3]; break;
        }
    }
    for (int64_t j = 0; j < s.n; j++) scale[j] = 1.0f;
    for (int64_t i = 0; i < s.m; i++)
        for (int64_t j = 0; j < s.n; j++) {
            int64_t acc = 0;
            for (int64_t k = 0; k < s.k; k++) acc += (int64_t)a[i * lda + k] * wq[j * s.k + k];
            expect[i * s.n + j] = acc;
        }
    pq_gemm_w *w = NULL;
    assert_int_equal(pq_gemm_pack_i8(wq, s.n, s.k, scale, NULL, PQ_GEMM_CHANNEL, 0,
                                     PQ_GEMM_USE_I8I8, &w), PQ_KOK);
    for (int v = 0; v < N_VARIANTS; v++) {
        const pq_ops *ops = use_variant(v);
        if (!ops) continue;
        for (int nt = 1; nt <= 2; nt++) {
            int32_t *out = nt == 1 ? c : c2;
            assert_int_equal(pq_gemm_i8i8_s32(ops, a, s.m, lda, w, out, ldc, nt), PQ_KOK);
            for (int64_t i = 0; i < s.m; i++)
                for (int64_t j = 0; j < s.n; j++)
                    if (out[i * ldc + j] != expect[i * s.n + j])
                        fail_msg("%s nt=%d fill %d m=%lld n=%lld k=%lld: c[%lld,%lld]=%d expected %lld",
                                 variants[v], nt, (int)f, (long long)s.m, (long long)s.n,
                                 (long long)s.k, (long long)i, (long long)j, out[i * ldc + j],
                                 (long long)expect[i * s.n + j]);
        }
        for (int64_t i = 0; i < s.m; i++)
            assert_memory_equal(c + i * ldc, c2 + i * ldc, (size_t)s.n * sizeof(int32_t));
    }
    pq_gemm_w_free(w);
    free(abuf), free(wq), free(cbuf), free(c2), free(expect), free(scale);
}

static void test_i8i8_exact(void **state)
{
    (void)state;
    static const shape shapes[] = {
        {1, 1, 1},     {1, 17, 3},    {3, 3, 31},     {17, 33, 17},  {31, 17, 33},
        {33, 31, 100}, {100, 33, 1},  {1, 320, 1280}, {3, 1280, 33}, {100, 320, 1280},
        {7, 100, 320}, {6, 16, 2},    {12, 32, 1279}, {5, 321, 99},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_i8i8_shape(shapes[i], FILL_RANDOM);
}

/* Every pair product at its maximum: -128 * -128 twice per madd pair = 32768,
 * one past int16; and 127 * -128 everywhere. */
static void test_i8i8_saturation_trap(void **state)
{
    (void)state;
    shape s1 = {7, 19, 1281}, s2 = {1, 33, 64};
    check_i8i8_shape(s1, FILL_MIN);
    check_i8i8_shape(s2, FILL_MAX_MIN);
}

/* The dynamic (symmetric) activation path: A in [-127, 127] against the
 * weight extremes, pair sums up to 2 * 128 * 127; and A with a few -128
 * codes, which the sign trick cannot take directly. Expectations from the
 * int64 triple loop. */
static void test_i8i8_sign_trick(void **state)
{
    (void)state;
    static const shape shapes[] = {{13, 35, 1283}, {1, 16, 4}, {6, 17, 257}, {25, 64, 1280}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_i8i8_shape(shapes[i], FILL_SIGN_EXTREMES);
        check_i8i8_shape(shapes[i], FILL_SPARSE_MIN);
    }
}

/* ---- fused epilogue ------------------------------------------------------- */

static double gelu_d(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* The epilogue of a test mode: bias, and the residual (mode 1) or GELU (2). */
static pq_gemm_epilogue epi_of(int mode, const float *bias, const float *res, int64_t n)
{
    return (pq_gemm_epilogue){.bias = bias,
                              .post = mode == 1 ? PQ_GEMM_POST_RESIDUAL
                                                : (mode == 2 ? PQ_GEMM_POST_GELU : PQ_GEMM_POST_NONE),
                              .residual = res, .ldr = n};
}

/* mode 0: per-token symmetric, bias, no post; 1: per-tensor asymmetric
 * activations + asymmetric weights + residual; 2: per-token + GELU. */
static void check_epilogue(int64_t m, int64_t n, int64_t k, int mode)
{
    int asym = mode == 1;
    int8_t *a = malloc((size_t)(m * k)), *wq = malloc((size_t)(n * k));
    float *as = malloc((size_t)m * sizeof(float)), *ws = malloc((size_t)n * sizeof(float));
    float *bias = malloc((size_t)n * sizeof(float)), *res = malloc((size_t)(m * n) * sizeof(float));
    int32_t *wz = malloc((size_t)n * sizeof(int32_t));
    float *y[N_VARIANTS] = {0};
    for (int64_t i = 0; i < m * k; i++) a[i] = code(asym ? -128 : -127, 127);
    for (int64_t i = 0; i < n * k; i++) wq[i] = code(asym ? -128 : -127, 127);
    for (int64_t i = 0; i < m; i++) as[i] = frand(1e-3f, 2e-2f);
    for (int64_t j = 0; j < n; j++) {
        ws[j] = frand(1e-3f, 1e-2f);
        bias[j] = frand(-1.0f, 1.0f);
        wz[j] = (int32_t)(next() % 21) - 10;
    }
    for (int64_t i = 0; i < m * n; i++) res[i] = frand(-2.0f, 2.0f);
    int32_t a_zp = asym ? 7 : 0;
    pq_gemm_w *w = NULL;
    assert_int_equal(pq_gemm_pack_i8(wq, n, k, ws, asym ? wz : NULL, PQ_GEMM_CHANNEL, 0,
                                     PQ_GEMM_USE_I8I8, &w), PQ_KOK);
    pq_gemm_epilogue epi = epi_of(mode, bias, res, n);
    for (int v = 0; v < N_VARIANTS; v++) {
        const pq_ops *ops = use_variant(v);
        if (!ops) continue;
        y[v] = malloc((size_t)(m * n) * sizeof(float));
        assert_int_equal(pq_gemm_i8i8_f32(ops, a, m, k, as, !asym, a_zp, w, &epi, y[v], n, 2), PQ_KOK);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0.0;
                for (int64_t kk = 0; kk < k; kk++)
                    acc += (double)(a[i * k + kk] - a_zp) * (double)(wq[j * k + kk] - (asym ? wz[j] : 0));
                double e = acc * as[asym ? 0 : i] * ws[j] + bias[j];
                double mag = fabs(acc * as[asym ? 0 : i] * ws[j]) + fabs(bias[j]);
                if (mode == 1) {
                    e += res[i * n + j];
                    mag += fabs(res[i * n + j]);
                }
                if (mode == 2) e = gelu_d(e);
                /* fp32: int32->float, two products, one sum (+1 add, gelu ~1e-6) */
                double tol = 1e-6 * mag + 2e-6;
                double got = y[v][i * n + j];
                if (fabs(got - e) > tol)
                    fail_msg("%s mode %d [%lld,%lld]: %.9g vs %.9g", variants[v], mode,
                             (long long)i, (long long)j, got, e);
            }
    }
    /* The variants' GEMMs perform the same fp32 operations: identical bits to
     * the reference GEMM run with the same context's element-wise GELU. */
    float *yr = malloc((size_t)(m * n) * sizeof(float));
    for (int v = 1; v < N_VARIANTS; v++) {
        if (!y[v]) continue;
        pq_ops mix = contexts[0];
        mix.gelu = contexts[v].gelu;
        assert_int_equal(pq_gemm_i8i8_f32(&mix, a, m, k, as, !asym, a_zp, w, &epi, yr, n, 2), PQ_KOK);
        assert_memory_equal(yr, y[v], (size_t)(m * n) * sizeof(float));
    }
    free(yr);
    pq_gemm_w_free(w);
    for (int v = 0; v < N_VARIANTS; v++) free(y[v]);
    free(a), free(wq), free(as), free(ws), free(bias), free(res), free(wz);
}

static void test_i8i8_epilogue(void **state)
{
    (void)state;
    check_epilogue(17, 33, 100, 0);
    check_epilogue(31, 40, 1280, 1);
    check_epilogue(3, 17, 321, 2);
    check_epilogue(1, 320, 33, 1);
}

/* pq_gemm_w8a8_f32 = dynamic quantisation then the fused GEMM, and the result
 * approximates the fp32 product within the 8-bit error budget. */
static void test_w8a8_end_to_end(void **state)
{
    (void)state;
    int64_t m = 9, n = 35, k = 130;
    float *x = malloc((size_t)(m * k) * sizeof(float)), *wf = malloc((size_t)(n * k) * sizeof(float));
    int8_t *wq = malloc((size_t)(n * k));
    float *ws = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)(m * n) * sizeof(float));
    for (int64_t i = 0; i < m * k; i++) x[i] = frand(-3.0f, 3.0f);
    for (int64_t j = 0; j < n; j++) {
        float amax = 0.0f;
        for (int64_t kk = 0; kk < k; kk++) {
            wf[j * k + kk] = frand(-0.5f, 0.5f);
            amax = fmaxf(amax, fabsf(wf[j * k + kk]));
        }
        ws[j] = amax / 127.0f;
        for (int64_t kk = 0; kk < k; kk++) wq[j * k + kk] = (int8_t)nearbyintf(wf[j * k + kk] / ws[j]);
    }
    pq_gemm_w *w = NULL;
    assert_int_equal(pq_gemm_pack_i8(wq, n, k, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_I8I8, &w), PQ_KOK);
    for (int v = 0; v < N_VARIANTS; v++) {
        const pq_ops *ops = use_variant(v);
        if (!ops) continue;
        assert_int_equal(pq_gemm_w8a8_f32(ops, x, m, k, w, NULL, y, n, 1), PQ_KOK);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double ax = 0.0, e = 0.0, bound = 1e-5;
                for (int64_t kk = 0; kk < k; kk++) ax = fmax(ax, fabs(x[i * k + kk]));
                double hx = ax / 254.0, hw = ws[j] / 2.0; /* half quantisation steps */
                for (int64_t kk = 0; kk < k; kk++) {
                    e += (double)x[i * k + kk] * wf[j * k + kk];
                    bound += 1.01 * (hx * fabs(wf[j * k + kk]) + fabs(x[i * k + kk]) * hw + hx * hw);
                }
                assert_true(fabs(y[i * n + j] - e) <= bound);
            }
    }
    pq_gemm_w_free(w);
    free(x), free(wf), free(wq), free(ws), free(y);
}

/* The whole W8A8 linear of every variant (including quantization written
 * straight into a packed A) gives the scalar reference's floats bit for bit:
 * the same codes, the same exact int32 sums, the same fp32 epilogue. Rows with
 * a zero, a tiny and a huge range, k tails of every size, 1 and 2 threads. */
static void test_w8a8_variants_match_ref(void **state)
{
    (void)state;
    static const shape shapes[] = {{1, 17, 3}, {13, 35, 130}, {25, 64, 1283}, {12, 32, 8},
                                   {30, 48, 1281}, {7, 16, 5}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t m = shapes[si].m, n = shapes[si].n, k = shapes[si].k;
        float *x = malloc((size_t)(m * k) * sizeof(float)), *ws = malloc((size_t)n * sizeof(float));
        float *bias = malloc((size_t)n * sizeof(float));
        float *y0 = malloc((size_t)(m * n) * sizeof(float)), *y1 = malloc((size_t)(m * n) * sizeof(float));
        int8_t *wq = malloc((size_t)(n * k));
        for (int64_t i = 0; i < m; i++) {
            float range = i % 3 == 0 ? 1.0f : (i % 3 == 1 ? 1e-7f : 300.0f);
            for (int64_t j = 0; j < k; j++) x[i * k + j] = i == 1 ? 0.0f : frand(-range, range);
        }
        for (int64_t i = 0; i < n * k; i++) wq[i] = (int8_t)(rand() % 255 - 127);
        for (int64_t j = 0; j < n; j++) {
            ws[j] = frand(1e-3f, 1e-2f);
            bias[j] = frand(-1.0f, 1.0f);
        }
        pq_gemm_w *w = NULL;
        assert_int_equal(pq_gemm_pack_i8(wq, n, k, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_I8I8, &w), PQ_KOK);
        pq_gemm_epilogue epi = {.bias = bias};
        const pq_ops *ref = use_variant(0);
        assert_non_null(ref);
        assert_int_equal(pq_gemm_w8a8_f32(ref, x, m, k, w, &epi, y0, n, 1), PQ_KOK);
        for (int v = 1; v < N_VARIANTS; v++) {
            const pq_ops *ops = use_variant(v);
            if (!ops) continue;
            for (int nt = 1; nt <= 2; nt++) {
                memset(y1, 0xff, (size_t)(m * n) * sizeof(float));
                assert_int_equal(pq_gemm_w8a8_f32(ops, x, m, k, w, &epi, y1, n, nt), PQ_KOK);
                if (memcmp(y0, y1, (size_t)(m * n) * sizeof(float)))
                    fail_msg("w8a8 %s (%d threads) differs from ref at m %lld n %lld k %lld", variants[v], nt,
                             (long long)m, (long long)n, (long long)k);
            }
        }
        pq_gemm_w_free(w);
        free(x), free(ws), free(bias), free(y0), free(y1), free(wq);
    }
}

/* ---- activation quantisation (hand-computed) ------------------------------ */

static void test_quantize_dynamic_hand(void **state)
{
    (void)state;
    /* Row 0: absmax 127 -> scale 1, ties go to even: 0.5->0, -1.5->-2, 2.5->2,
     * 3.5->4. Row 1: absmax 254 -> scale 2 (inv 0.5): 1->0.5->0, 3->1.5->2,
     * 5->2.5->2, -254->-127, 0.99->0.495->0. Row 2: zeros -> scale 1e-5/127.
     * 19 columns: 16 in the vector body, 3 in the tail. */
    float x[3][19] = {
        {0.5f, -1.5f, 2.5f, 3.5f, 127.0f, -0.5f, 1.49f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5f, -2.5f, 1.5f},
        {1.0f, 3.0f, 5.0f, -254.0f, 0.99f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0f, 3.0f, -5.0f},
        {0},
    };
    int8_t want[3][19] = {
        {0, -2, 2, 4, 127, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -2, 2},
        {0, 2, 2, -127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, -2},
        {0},
    };
    float want_s[3] = {1.0f, 2.0f, 1e-5f / 127.0f};
    for (int v = 0; v < N_VARIANTS; v++) {
        const pq_ops *ops = use_variant(v);
        if (!ops) continue;
        int8_t q[3][19];
        float s[3];
        pq_gemm_quantize_rows_dynamic(ops, &x[0][0], 3, 19, 19, &q[0][0], 19, s);
        assert_memory_equal(q, want, sizeof want);
        for (int i = 0; i < 3; i++) assert_true(s[i] == want_s[i]);
    }
    /* static: scale 0.5 (inv 2), zp 3: 0.25->0.5->0 ->3; 0.75->1.5->2 ->5;
     * 100->200+3 -> 127; -100 -> -197 -> -128; -1.25->-2.5->-2 -> 1 */
    float xs[5] = {0.25f, 0.75f, 100.0f, -100.0f, -1.25f};
    int8_t qs[5], ws[5] = {3, 5, 127, -128, 1};
    pq_gemm_quantize_rows_static(xs, 1, 5, 5, 0.5f, 3, -128, 127, qs, 5);
    assert_memory_equal(qs, ws, 5);
}

/* ---- weight-only ------------------------------------------------------------ */

typedef struct wcase {
    int bits, sym;
    pq_gemm_gran gran;
    int64_t gs, m, n, k;
} wcase;

static void check_wonly(wcase c)
{
    int64_t ng = c.gran == PQ_GEMM_GROUP ? (c.k + c.gs - 1) / c.gs : 1;
    int64_t nsc = c.gran == PQ_GEMM_TENSOR ? 1 : c.n * ng, gsz = c.gran == PQ_GEMM_GROUP ? c.gs : c.k;
    int8_t *q = malloc((size_t)(c.n * c.k));
    uint8_t *q4 = calloc((size_t)(c.n * ((c.k + 1) / 2)), 1);
    float *sc = malloc((size_t)nsc * sizeof(float));
    int32_t *zp = malloc((size_t)nsc * sizeof(int32_t));
    float *wd = malloc((size_t)(c.n * c.k) * sizeof(float));
    int64_t ldx = c.k + 1;
    float *xbuf = malloc((size_t)(c.m * ldx + 1) * sizeof(float)), *x = xbuf + 1;
    float *bias = malloc((size_t)c.n * sizeof(float)), *e = malloc((size_t)(c.m * c.n) * sizeof(float));
    float *y1 = malloc((size_t)(c.m * c.n) * sizeof(float)), *y2 = malloc((size_t)(c.m * c.n) * sizeof(float));
    int lo = c.bits == 8 ? -128 : -8, hi = c.bits == 8 ? 127 : 7;
    for (int64_t i = 0; i < c.n * c.k; i++)
        q[i] = (int8_t)(lo + (int)(next() % (uint64_t)(hi - lo + 1)));
    for (int64_t i = 0; i < nsc; i++) {
        sc[i] = frand(1e-3f, 2e-2f);
        zp[i] = c.sym ? 0 : lo + (int)(next() % (uint64_t)(hi - lo + 1));
    }
    for (int64_t r = 0; r < c.n; r++)
        for (int64_t kk = 0; kk < c.k; kk++) {
            /* FORMAT.md packing, written out here independently */
            uint8_t nib = (uint8_t)(q[r * c.k + kk] + 8);
            q4[r * ((c.k + 1) / 2) + kk / 2] |= (uint8_t)((kk & 1) ? nib << 4 : nib);
            if ((c.k & 1) && kk == c.k - 1) q4[r * ((c.k + 1) / 2) + kk / 2] |= 8 << 4;
            int64_t s = c.gran == PQ_GEMM_TENSOR ? 0 : (c.gran == PQ_GEMM_CHANNEL ? r : r * ng + kk / gsz);
            wd[r * c.k + kk] = (float)(q[r * c.k + kk] - zp[s]) * sc[s];
        }
    for (int64_t i = 0; i < c.m * ldx; i++) x[i] = frand(-2.0f, 2.0f);
    for (int64_t j = 0; j < c.n; j++) bias[j] = frand(-1.0f, 1.0f);
    for (int64_t i = 0; i < c.m; i++)
        for (int64_t j = 0; j < c.n; j++) e[i * c.n + j] = bias[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c.m, (int)c.n, (int)c.k, 1.0f, x,
                (int)ldx, wd, (int)c.k, 1.0f, e, (int)c.n);
    pq_gemm_w *w = NULL;
    if (c.bits == 8)
        assert_int_equal(pq_gemm_pack_i8(q, c.n, c.k, sc, c.sym ? NULL : zp, c.gran, c.gs,
                                         PQ_GEMM_USE_WONLY, &w), PQ_KOK);
    else
        assert_int_equal(pq_gemm_pack_i4(q4, c.n, c.k, sc, c.sym ? NULL : zp, c.gran, c.gs, PQ_GEMM_USE_WONLY, &w),
                         PQ_KOK);
    pq_gemm_epilogue epi = {.bias = bias};
    for (int v = 0; v < N_VARIANTS; v++) {
        const pq_ops *ops = use_variant(v);
        if (!ops) continue;
        assert_int_equal(pq_gemm_wonly_f32(ops, x, c.m, ldx, w, &epi, y1, c.n, 1), PQ_KOK);
        assert_int_equal(pq_gemm_wonly_f32(ops, x, c.m, ldx, w, &epi, y2, c.n, 2), PQ_KOK);
        assert_memory_equal(y1, y2, (size_t)(c.m * c.n) * sizeof(float));
        for (int64_t i = 0; i < c.m; i++)
            for (int64_t j = 0; j < c.n; j++) {
                /* fp32 sums in different orders; the GEMV variant also
                 * carries the zero-point offset (<= 16 codes) through the sum */
                double mag = fabs(bias[j]);
                for (int64_t kk = 0; kk < c.k; kk++) {
                    int64_t s = c.gran == PQ_GEMM_TENSOR ? 0 : (c.gran == PQ_GEMM_CHANNEL ? j : j * ng + kk / gsz);
                    mag += fabs(x[i * ldx + kk]) * (fabs(wd[j * c.k + kk]) + (hi + 1) * sc[s]);
                }
                double tol = 2e-6 * mag + 1e-6;
                if (fabs(y1[i * c.n + j] - e[i * c.n + j]) > tol)
                    fail_msg("%s bits %d gran %d m %lld [%lld,%lld]: %.9g vs sgemm %.9g (tol %.3g)",
                             variants[v], c.bits, c.gran, (long long)c.m, (long long)i,
                             (long long)j, y1[i * c.n + j], e[i * c.n + j], tol);
            }
    }
    pq_gemm_w_free(w);
    free(q), free(q4), free(sc), free(zp), free(wd), free(xbuf), free(bias), free(e), free(y1), free(y2);
}

static void test_wonly(void **state)
{
    (void)state;
    static const wcase cases[] = {
        {8, 1, PQ_GEMM_CHANNEL, 0, 1, 33, 100},   {8, 1, PQ_GEMM_CHANNEL, 0, 17, 100, 320},
        {8, 0, PQ_GEMM_GROUP, 32, 3, 31, 100},    {8, 0, PQ_GEMM_GROUP, 64, 5, 17, 1280},
        {8, 1, PQ_GEMM_TENSOR, 0, 4, 20, 17},     {4, 1, PQ_GEMM_GROUP, 32, 1, 320, 1280},
        {4, 0, PQ_GEMM_GROUP, 16, 7, 33, 33},     {4, 1, PQ_GEMM_CHANNEL, 0, 2, 3, 31},
        {4, 0, PQ_GEMM_GROUP, 128, 31, 65, 1280}, {4, 0, PQ_GEMM_TENSOR, 0, 1, 17, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_wonly(cases[i]);
}


/* ---- W4A8: int4 weights x int8 activations ---------------------------------- */

/* The FORMAT.md int4 row layout, written out here independently: byte j =
 * (q[2j] + 8) | (q[2j+1] + 8) << 4, a missing odd element as nibble 8. */
static uint8_t *pack_file_i4(const int8_t *q, int64_t n, int64_t k)
{
    int64_t rb = (k + 1) / 2;
    uint8_t *p = calloc((size_t)(n * rb), 1);
    for (int64_t r = 0; r < n; r++)
        for (int64_t kk = 0; kk < k + (k & 1); kk++) {
            uint8_t nib = kk < k ? (uint8_t)(q[r * k + kk] + 8) : 8;
            p[r * rb + kk / 2] |= (uint8_t)((kk & 1) ? nib << 4 : nib);
        }
    return p;
}

/* mode 0: per-token activations, bias; 1: per-tensor activations with a zero
 * point + residual; 2: per-token + GELU. Every variant (1 and 2 threads) gives
 * the reference's floats bit for bit, and the reference is within fp32
 * rounding of the double-precision sum over groups of the exact products. */
static void check_w4a8(wcase c, int mode)
{
    int64_t m = c.m, n = c.n, k = c.k, lda = k + 3;
    int64_t gsz = c.gran == PQ_GEMM_GROUP ? c.gs : k, ng = (k + gsz - 1) / gsz;
    int64_t nsc = c.gran == PQ_GEMM_TENSOR ? 1 : n * ng;
    int8_t *a = malloc((size_t)(m * lda)), *q = malloc((size_t)(n * k));
    float *as = malloc((size_t)m * sizeof(float)), *sc = malloc((size_t)nsc * sizeof(float));
    int32_t *zp = malloc((size_t)nsc * sizeof(int32_t));
    float *bias = malloc((size_t)n * sizeof(float)), *res = malloc((size_t)(m * n) * sizeof(float));
    float *y0 = malloc((size_t)(m * n) * sizeof(float)), *y1 = malloc((size_t)(m * n) * sizeof(float));
    int32_t a_zp = mode == 1 ? -5 : 0;
    for (int64_t i = 0; i < m * lda; i++) a[i] = code(mode == 1 ? -128 : -127, 127);
    for (int64_t i = 0; i < n * k; i++) q[i] = (next() & 3) == 0 ? (int8_t)((next() & 1) ? -8 : 7)
                                                              : (int8_t)((int)(next() % 16) - 8);
    for (int64_t i = 0; i < m; i++) as[i] = frand(1e-3f, 2e-2f);
    for (int64_t i = 0; i < nsc; i++) {
        sc[i] = frand(1e-3f, 2e-2f);
        zp[i] = c.sym ? 0 : (int32_t)(next() % 16) - 8;
    }
    for (int64_t j = 0; j < n; j++) bias[j] = frand(-1.0f, 1.0f);
    for (int64_t i = 0; i < m * n; i++) res[i] = frand(-2.0f, 2.0f);
    uint8_t *q4 = pack_file_i4(q, n, k);
    pq_gemm_w *w = NULL;
    assert_int_equal(pq_gemm_pack_i4(q4, n, k, sc, c.sym ? NULL : zp, c.gran, c.gs, PQ_GEMM_USE_I8I8, &w),
                     PQ_KOK);
    pq_gemm_epilogue epi = epi_of(mode, bias, res, n);
    for (int v = 0; v < N_VARIANTS; v++) {
        const pq_ops *ops = use_variant(v);
        if (!ops) continue;
        pq_ops mix = contexts[0]; /* the reference GEMM with this context's GELU */
        mix.gelu = ops->gelu;
        assert_int_equal(pq_gemm_i8i8_f32(&mix, a, m, lda, as, mode != 1, a_zp, w, &epi, y0, n, 1), PQ_KOK);
        for (int nt = 1; nt <= 2; nt++) {
            assert_int_equal(pq_gemm_i8i8_f32(ops, a, m, lda, as, mode != 1, a_zp, w, &epi, y1, n, nt), PQ_KOK);
            if (memcmp(y0, y1, (size_t)(m * n) * sizeof(float)))
                fail_msg("%s W4A8 gran %d gs %lld m %lld n %lld k %lld mode %d threads %d: not the reference's bits",
                         variants[v], c.gran, (long long)c.gs, (long long)m, (long long)n, (long long)k, mode, nt);
        }
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double e = 0.0, mag = 0.0, s_a = as[mode == 1 ? 0 : i];
            for (int64_t g = 0; g < ng; g++) {
                int64_t si = c.gran == PQ_GEMM_TENSOR ? 0 : j * ng + g;
                double acc = 0.0;
                for (int64_t kk = g * gsz; kk < k && kk < (g + 1) * gsz; kk++)
                    acc += (double)(a[i * lda + kk] - a_zp) * (double)(q[j * k + kk] - zp[si]);
                e += acc * sc[si] * s_a;
                mag += fabs(acc * sc[si] * s_a);
            }
            e += bias[j];
            mag += fabs(bias[j]);
            if (mode == 1) {
                e += res[i * n + j];
                mag += fabs(res[i * n + j]);
            }
            if (mode == 2) e = gelu_d(e);
            /* fp32: per group a conversion, a product and a sum; then the
             * activation scale, the bias (+ residual, gelu ~1e-6) */
            double tol = 1.2e-7 * (3.0 * (double)ng + 4.0) * mag + 2e-6;
            if (fabs(y0[i * n + j] - e) > tol)
                fail_msg("ref W4A8 gs %lld mode %d [%lld,%lld]: %.9g vs %.9g (tol %.3g)", (long long)c.gs, mode,
                         (long long)i, (long long)j, y0[i * n + j], e, tol);
        }
    /* one group: the raw int32 sums of every variant, exactly */
    if (ng == 1) {
        int32_t *c0 = malloc((size_t)(m * n) * sizeof(int32_t));
        for (int v = 0; v < N_VARIANTS; v++) {
            const pq_ops *ops = use_variant(v);
            if (!ops) continue;
            assert_int_equal(pq_gemm_i8i8_s32(ops, a, m, lda, w, c0, n, 2), PQ_KOK);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    int32_t t = 0;
                    for (int64_t kk = 0; kk < k; kk++) t += a[i * lda + kk] * q[j * k + kk];
                    assert_int_equal(c0[i * n + j], t);
                }
        }
        free(c0);
    } else {
        int32_t c0;
        assert_int_equal(pq_gemm_i8i8_s32(&contexts[0], a, m, lda, w, &c0, n, 1), PQ_KBADARG);
    }
    pq_gemm_w_free(w);
    free(a), free(q), free(q4), free(as), free(sc), free(zp), free(bias), free(res), free(y0), free(y1);
}

static const wcase w4a8_cases[] = {
    {4, 1, PQ_GEMM_CHANNEL, 0, 1, 64, 1280},   {4, 1, PQ_GEMM_CHANNEL, 0, 13, 35, 130},
    {4, 0, PQ_GEMM_TENSOR, 0, 25, 33, 1283},   {4, 1, PQ_GEMM_GROUP, 32, 12, 32, 256},
    {4, 0, PQ_GEMM_GROUP, 128, 30, 48, 1280},  {4, 1, PQ_GEMM_GROUP, 64, 2, 17, 100},
    {4, 0, PQ_GEMM_GROUP, 36, 14, 20, 150},    {4, 1, PQ_GEMM_GROUP, 34, 5, 16, 101},
    {4, 0, PQ_GEMM_CHANNEL, 0, 24, 64, 5},     {4, 1, PQ_GEMM_GROUP, 256, 1, 320, 5120},
    {4, 1, PQ_GEMM_GROUP, 64, 25, 40, 300},    {4, 1, PQ_GEMM_CHANNEL, 0, 26, 80, 1282},
    /* symmetric groups folded in the kernels: GEMV over four panels (+ one),
     * odd last quads, a short last group, 12-row tiles over pairs of panels */
    {4, 1, PQ_GEMM_GROUP, 128, 1, 80, 1280},   {4, 1, PQ_GEMM_GROUP, 8, 1, 64, 36},
    {4, 1, PQ_GEMM_GROUP, 128, 13, 33, 1001},  {4, 1, PQ_GEMM_GROUP, 128, 25, 64, 1000},
    {4, 1, PQ_GEMM_CHANNEL, 0, 1, 70, 1001},
    /* four row blocks and more: each chunk's panels unpacked to int8 first
     * (a short last group, odd last quads, a single last panel, a 1-row last
     * block) */
    {4, 1, PQ_GEMM_GROUP, 128, 50, 64, 1000},  {4, 1, PQ_GEMM_CHANNEL, 0, 60, 48, 1001},
    {4, 1, PQ_GEMM_GROUP, 32, 49, 40, 300},
};

static void test_w4a8(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof w4a8_cases / sizeof w4a8_cases[0]; i++)
        for (int mode = 0; mode < 3; mode++) check_w4a8(w4a8_cases[i], mode);
}

/* The whole dynamic W4A8 Linear (quantisation written into the packed A where
 * a variant does that) gives the reference's floats bit for bit, and is
 * within the activation quantisation budget of the double-precision product
 * with the dequantised weights, (q - zp) * scale. */
static void test_w4a8_dynamic(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < sizeof w4a8_cases / sizeof w4a8_cases[0]; ci++) {
        wcase c = w4a8_cases[ci];
        int64_t m = c.m, n = c.n, k = c.k, ldx = k + 1;
        int64_t gsz = c.gran == PQ_GEMM_GROUP ? c.gs : k, ng = (k + gsz - 1) / gsz;
        int64_t nsc = c.gran == PQ_GEMM_TENSOR ? 1 : n * ng;
        float *x = malloc((size_t)(m * ldx) * sizeof(float)), *sc = malloc((size_t)nsc * sizeof(float));
        int8_t *q = malloc((size_t)(n * k));
        int32_t *zp = malloc((size_t)nsc * sizeof(int32_t));
        float *y0 = malloc((size_t)(m * n) * sizeof(float)), *y1 = malloc((size_t)(m * n) * sizeof(float));
        for (int64_t i = 0; i < m * ldx; i++) x[i] = frand(-3.0f, 3.0f);
        if (m > 1) x[ldx] = 40.0f; /* one row with an outlier */
        for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(next() % 16) - 8);
        for (int64_t i = 0; i < nsc; i++) {
            sc[i] = frand(1e-2f, 5e-2f);
            zp[i] = c.sym ? 0 : (int32_t)(next() % 16) - 8;
        }
        uint8_t *q4 = pack_file_i4(q, n, k);
        pq_gemm_w *w = NULL;
        assert_int_equal(pq_gemm_pack_i4(q4, n, k, sc, c.sym ? NULL : zp, c.gran, c.gs, PQ_GEMM_USE_I8I8, &w),
                         PQ_KOK);
        assert_int_equal(pq_gemm_w8a8_f32(&contexts[0], x, m, ldx, w, NULL, y0, n, 1), PQ_KOK);
        for (int v = 1; v < N_VARIANTS; v++) {
            const pq_ops *ops = use_variant(v);
            if (!ops) continue;
            for (int nt = 1; nt <= 2; nt++) {
                assert_int_equal(pq_gemm_w8a8_f32(ops, x, m, ldx, w, NULL, y1, n, nt), PQ_KOK);
                assert_memory_equal(y0, y1, (size_t)(m * n) * sizeof(float));
            }
        }
        for (int64_t i = 0; i < m; i++) {
            double ax = 0.0;
            for (int64_t kk = 0; kk < k; kk++) ax = fmax(ax, fabs(x[i * ldx + kk]));
            double hx = ax / 254.0; /* half an activation step */
            for (int64_t j = 0; j < n; j++) {
                double e = 0.0, bound = 1e-5, mag = 0.0;
                for (int64_t kk = 0; kk < k; kk++) {
                    int64_t si = c.gran == PQ_GEMM_TENSOR ? 0 : j * ng + kk / gsz;
                    double wd = (double)(q[j * k + kk] - zp[si]) * sc[si];
                    e += (double)x[i * ldx + kk] * wd;
                    bound += 1.01 * hx * fabs(wd);
                    mag += fabs((double)x[i * ldx + kk] * wd);
                }
                bound += 1.2e-7 * (3.0 * (double)ng + 4.0) * (mag + bound);
                if (fabs(y0[i * n + j] - e) > bound)
                    fail_msg("W4A8 dynamic gs %lld [%lld,%lld]: %.9g vs %.9g (bound %.3g)", (long long)c.gs,
                             (long long)i, (long long)j, y0[i * n + j], e, bound);
            }
        }
        pq_gemm_w_free(w);
        free(x), free(sc), free(q), free(zp), free(q4), free(y0), free(y1);
    }
}

/* Scales so small that scale / 16 underflows: the kernels cannot fold the
 * groups with the pre-divided scales (pack.c keeps none) and must still give
 * the reference's bits, which are within fp32 rounding of the exact sum. */
static void test_w4a8_tiny_scales(void **state)
{
    (void)state;
    enum { N = 80, K = 256, GS = 64, NG = K / GS };
    static const int64_t ms[] = {1, 13};
    int8_t q[N * K], a[13 * K];
    float sc[N * NG], as[13], bias[N], y0[13 * N], y1[13 * N];
    for (int i = 0; i < N * K; i++) q[i] = (int8_t)((int)(next() % 16) - 8);
    for (int i = 0; i < 13 * K; i++) a[i] = code(-127, 127);
    for (int i = 0; i < N * NG; i++) sc[i] = frand(1e-3f, 2e-2f) * 1e-36f; /* ~1e-39..2e-38 */
    for (int i = 0; i < 13; i++) as[i] = frand(0.5f, 2.0f) * 1e30f;
    for (int i = 0; i < N; i++) bias[i] = frand(-1.0f, 1.0f);
    uint8_t *q4 = pack_file_i4(q, N, K);
    pq_gemm_w *w = NULL;
    assert_int_equal(pq_gemm_pack_i4(q4, N, K, sc, NULL, PQ_GEMM_GROUP, GS, PQ_GEMM_USE_I8I8, &w), PQ_KOK);
    pq_gemm_epilogue epi = {.bias = bias};
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        int64_t m = ms[mi];
        assert_int_equal(pq_gemm_i8i8_f32(&contexts[0], a, m, K, as, 1, 0, w, &epi, y0, N, 1), PQ_KOK);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < N; j++) {
                double e = 0.0, mag = 0.0;
                for (int64_t g = 0; g < NG; g++) {
                    double acc = 0.0;
                    for (int64_t kk = g * GS; kk < (g + 1) * GS; kk++) acc += (double)a[i * K + kk] * q[j * K + kk];
                    e += acc * sc[j * NG + g] * as[i];
                    mag += fabs(acc * sc[j * NG + g] * as[i]);
                }
                /* subnormal scales: each fma rounds to 2^-149 absolute */
                double tol = 1.2e-7 * (3.0 * NG + 4.0) * (mag + fabs(bias[j])) + NG * 1.5e-45 * as[i] + 1e-6;
                if (fabs(y0[i * N + j] - (e + bias[j])) > tol)
                    fail_msg("ref W4A8 tiny scales [%lld,%lld]: %.9g vs %.9g", (long long)i, (long long)j,
                             y0[i * N + j], e + bias[j]);
            }
        for (int v = 1; v < N_VARIANTS; v++) {
            const pq_ops *ops = use_variant(v);
            if (!ops) continue;
            for (int nt = 1; nt <= 2; nt++) {
                assert_int_equal(pq_gemm_i8i8_f32(ops, a, m, K, as, 1, 0, w, &epi, y1, N, nt), PQ_KOK);
                if (memcmp(y0, y1, (size_t)(m * N) * sizeof(float)))
                    fail_msg("%s W4A8 tiny scales m %lld threads %d: not the reference's bits", variants[v],
                             (long long)m, nt);
            }
        }
    }
    pq_gemm_w_free(w);
    free(q4);
}

/* ---- packing and argument checks ------------------------------------------- */

/* The epilogue reads the residual tile by tile while writing y: an aliased
 * residual would be added to values already written, so it is refused. */
static void test_residual_alias_refused(void **state)
{
    (void)state;
    enum { N = 16, K = 32, M = 4 };
    int8_t wq[N * K];
    float ws[N], x[M * K], y[M * N], r[M * N];
    for (int i = 0; i < N * K; i++) wq[i] = (int8_t)(i % 7 - 3);
    for (int i = 0; i < N; i++) ws[i] = 0.01f;
    for (int i = 0; i < M * K; i++) x[i] = (float)(i % 5) - 2.0f;
    for (int i = 0; i < M * N; i++) r[i] = y[i] = 1.0f;
    pq_gemm_w *w8 = NULL, *wo = NULL;
    const pq_ops *ops = &best;
    assert_int_equal(pq_gemm_pack_i8(wq, N, K, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_I8I8, &w8), PQ_KOK);
    assert_int_equal(pq_gemm_pack_i8(wq, N, K, ws, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_WONLY, &wo), PQ_KOK);
    pq_gemm_epilogue alias = {.post = PQ_GEMM_POST_RESIDUAL, .residual = y, .ldr = N};
    pq_gemm_epilogue apart = {.post = PQ_GEMM_POST_RESIDUAL, .residual = r, .ldr = N};
    assert_int_equal(pq_gemm_w8a8_f32(ops, x, M, K, w8, &alias, y, N, 1), PQ_KBADARG);
    assert_int_equal(pq_gemm_wonly_f32(ops, x, M, K, wo, &alias, y, N, 1), PQ_KBADARG);
    assert_int_equal(pq_gemm_w8a8_f32(ops, x, M, K, w8, &apart, y, N, 1), PQ_KOK);
    assert_int_equal(pq_gemm_wonly_f32(ops, x, M, K, wo, &apart, y, N, 1), PQ_KOK);
    pq_gemm_w_free(w8);
    pq_gemm_w_free(wo);
}

static void test_pack_and_sums(void **state)
{
    (void)state;
    int8_t wq[2 * 3] = {1, -2, 3, 127, -128, 5};
    float sc[2] = {1.0f, 1.0f};
    int32_t bad_zp[2] = {0, 200};
    pq_gemm_w *w = NULL;
    assert_int_equal(pq_gemm_pack_i8(wq, 2, 3, sc, NULL, PQ_GEMM_GROUP, 2, PQ_GEMM_USE_I8I8, &w),
                     PQ_KBADARG);
    assert_null(w);
    assert_int_equal(pq_gemm_pack_i8(wq, 2, 3, sc, bad_zp, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_WONLY, &w),
                     PQ_KBADARG);
    assert_int_equal(pq_gemm_pack_i8(wq, 2, 3, sc, NULL, PQ_GEMM_CHANNEL, 0, PQ_GEMM_USE_WONLY, &w),
                     PQ_KOK);
    int32_t c[2];
    int8_t a[3] = {1, 1, 1};
    const pq_ops *ops = &best;
    assert_int_equal(pq_gemm_i8i8_s32(ops, a, 1, 3, w, c, 2, 1), PQ_KBADARG); /* wrong use */
    assert_int_equal(pq_gemm_w_row_sums(w)[0], 2);
    assert_int_equal(pq_gemm_w_row_sums(w)[1], 4);
    pq_gemm_w_free(w);
    pq_gemm_w_free(NULL);
    int32_t s[2];
    int8_t aa[2 * 4] = {-128, -128, 127, 9, 1, 2, 3, 99}; /* lda 4, k 3 */
    pq_gemm_i8_row_sums(aa, 2, 3, 4, s);
    assert_int_equal(s[0], -129);
    assert_int_equal(s[1], 6);
}

/* pq_gemm_pack_parts: every packed code and row sum against the source
 * codes (the SSE2 quads and the scalar rest alike: full and partial panels,
 * k not a multiple of 16 or of 4), and the same bytes for 1 and 2 threads
 * and for the rows split into three parts (q, k and v stacked). Large
 * enough (n * k >= 2^20) for the pack to run threaded. */
static void test_pack_parts_threads(void **state)
{
    (void)state;
    const int64_t ns[2] = {1040, 1037}, ks[3] = {1024, 1030, 1034};
    for (int bits = 4; bits <= 8; bits += 4)
        for (int use = 0; use < 2; use++)
            for (int si = 0; si < 2; si++)
                for (int ki = 0; ki < 3; ki++) {
                    const int64_t n = ns[si], k = ks[ki], rb = bits == 8 ? k : (k + 1) / 2;
                    uint8_t *q = malloc((size_t)(n * rb));
                    float *sc = malloc((size_t)n * sizeof *sc);
                    assert_non_null(q);
                    assert_non_null(sc);
                    for (int64_t i = 0; i < n * rb; i++) q[i] = (uint8_t)next();
                    for (int64_t i = 0; i < n; i++) sc[i] = 0.5f;
                    pq_gemm_use u = use ? PQ_GEMM_USE_WONLY : PQ_GEMM_USE_I8I8;
                    const void *one[1] = {q};
                    const int64_t rows1[1] = {n}, rows3[3] = {10, 517, n - 527};
                    const void *three[3] = {q, q + 10 * rb, q + 527 * rb};
                    pq_gemm_w *w1 = NULL, *w2 = NULL, *w3 = NULL;
                    assert_int_equal(pq_gemm_pack_parts(bits, one, rows1, 1, k, sc, NULL, PQ_GEMM_CHANNEL, 0, u, 1,
                                                        &w1), PQ_KOK);
                    assert_int_equal(pq_gemm_pack_parts(bits, one, rows1, 1, k, sc, NULL, PQ_GEMM_CHANNEL, 0, u, 2,
                                                        &w2), PQ_KOK);
                    assert_int_equal(pq_gemm_pack_parts(bits, three, rows3, 3, k, sc, NULL, PQ_GEMM_CHANNEL, 0, u,
                                                        2, &w3), PQ_KOK);
                    for (int64_t r = 0; r < n; r++) {
                        int32_t sum = 0;
                        for (int64_t c = 0; c < k; c++) {
                            const uint8_t *row = q + r * rb;
                            int want = bits == 8 ? (int8_t)row[c]
                                                 : (int)((c & 1) ? row[c / 2] >> 4 : row[c / 2] & 15) - 8;
                            sum += want;
                            if (pq_gemm_w_code(w1, r, c) != want) fail_msg("bits %d use %d n %lld k %lld: "
                                "code [%lld, %lld] %d, want %d", bits, use, (long long)n, (long long)k,
                                (long long)r, (long long)c, pq_gemm_w_code(w1, r, c), want);
                        }
                        if (bits == 8) assert_int_equal(pq_gemm_w_row_sums(w1)[r], sum);
                    }
                    size_t bytes = (size_t)(w1->n_panels * w1->panel_bytes);
                    assert_memory_equal(w1->data, w2->data, bytes);
                    assert_memory_equal(w1->data, w3->data, bytes);
                    if (w1->row_sum) {
                        size_t nsum = (size_t)(w1->n_panels * PQ_GEMM_NR * w1->n_groups);
                        assert_memory_equal(w1->row_sum, w2->row_sum, nsum * sizeof *w1->row_sum);
                        assert_memory_equal(w1->row_sum, w3->row_sum, nsum * sizeof *w1->row_sum);
                    }
                    pq_gemm_w_free(w1);
                    pq_gemm_w_free(w2);
                    pq_gemm_w_free(w3);
                    free(q);
                    free(sc);
                }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_i8i8_exact),
        cmocka_unit_test(test_i8i8_saturation_trap),
        cmocka_unit_test(test_i8i8_sign_trick),
        cmocka_unit_test(test_i8i8_epilogue),
        cmocka_unit_test(test_w8a8_end_to_end),
        cmocka_unit_test(test_w8a8_variants_match_ref),
        cmocka_unit_test(test_quantize_dynamic_hand),
        cmocka_unit_test(test_wonly),
        cmocka_unit_test(test_w4a8),
        cmocka_unit_test(test_w4a8_dynamic),
        cmocka_unit_test(test_w4a8_tiny_scales),
        cmocka_unit_test(test_pack_and_sums),
        cmocka_unit_test(test_pack_parts_threads),
        cmocka_unit_test(test_residual_alias_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
