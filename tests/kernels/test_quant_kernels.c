/* SPDX-License-Identifier: Apache-2.0 */
/* test_quant_kernels.c - quantization kernels: the reference against
 * hand-computed values, and every kernel context this build and CPU run
 * (ref, avx2, avx512) against the reference, bit for bit, on random and adversarial inputs (odd lengths,
 * unaligned pointers, .5 ties, clamping, extremes, denormals, -0, NaN/Inf). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels_impl.h"
#include "pq_config.h"
#include "kernels/pq_kernels.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((next() >> 11) * (1.0 / 9007199254740992.0));
}

/* Every context pq_ops_select knows, the reference first (itself checked
 * against the hand-computed expectations); those this build or CPU cannot
 * run are NULL. */
static const char *const variant_names[] = {"ref", "avx2", "avx512"};
#define N_NAMES (sizeof variant_names / sizeof variant_names[0])
static pq_ops contexts[N_NAMES];
static int have[N_NAMES];
static pq_ops ref_ops;

static int setup(void **state)
{
    (void)state;
    pq_ops_init_ref(&ref_ops);
    for (size_t i = 0; i < N_NAMES; i++)
        have[i] = pq_ops_select(variant_names[i], &contexts[i]) == PQ_KOK;
    return 0;
}

static const pq_ops *variant(size_t i) { return have[i] ? &contexts[i] : NULL; }

#define FAILV(v, ...)                                                        \
    do {                                                                     \
        char m_[256];                                                        \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                \
        fail_msg("variant '%s': %s", (v)->name, m_);                         \
    } while (0)

static const int64_t lengths[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65,
                                  100, 127, 128, 129, 199, 200, 1000, 4099, 65537};
#define N_LENGTHS (sizeof lengths / sizeof lengths[0])
#define MAXN 65537

/* Adversarial float: mixes normal values, signed zeros, denormals, huge
 * values and exact ties. */
static float adversarial(void)
{
    switch (next() % 10) {
    case 0: return -0.0f;
    case 1: return (next() & 1 ? 1 : -1) * FLT_MIN * frand(0.0f, 1.0f); /* denormal */
    case 2: return (next() & 1 ? 1 : -1) * FLT_MAX * frand(0.5f, 1.0f);
    case 3: return (float)((int)(next() % 400) - 200) + 0.5f;               /* tie */
    case 4: return (float)((int)(next() % 400) - 200);
    default: return frand(-300.0f, 300.0f);
    }
}

static void test_minmax_absmax(void **state)
{
    (void)state;
    float *buf = malloc((MAXN + 4) * sizeof *buf);
    const pq_ops *R = &ref_ops;
    for (size_t vi = 0; vi < N_NAMES; vi++) {
        const pq_ops *v = variant(vi);
        if (!v) continue;
        for (size_t li = 0; li < N_LENGTHS; li++)
            for (int off = 0; off < 3; off++)
                for (int trial = 0; trial < 4; trial++) {
                    int64_t n = lengths[li];
                    float *x = buf + off;
                    for (int64_t i = 0; i < n; i++) x[i] = trial < 2 ? frand(-5, 5) : adversarial();
                    int64_t want_bad = 0;
                    if (trial & 1)
                        for (int64_t i = 0; i < n; i++)
                            if (next() % 7 == 0) {
                                static const float nf[3] = {NAN, INFINITY, -INFINITY};
                                x[i] = nf[next() % 3];
                            }
                    /* independent expectation */
                    double lo = INFINITY, hi = -INFINITY, am = 0;
                    for (int64_t i = 0; i < n; i++) {
                        if (isnan(x[i]) || isinf(x[i])) { want_bad++; continue; }
                        lo = fmin(lo, x[i]);
                        hi = fmax(hi, x[i]);
                        am = fmax(am, fabs(x[i]));
                    }
                    float mn, mx, a;
                    int64_t bad, bad2;
                    v->row_minmax(x, n, &mn, &mx, &bad);
                    v->row_absmax(x, n, &a, &bad2);
                    if ((double)mn != lo || (double)mx != hi || bad != want_bad)
                        FAILV(v, "row_minmax n=%lld off=%d: got [%g,%g] bad %lld, want [%g,%g] bad %lld",
                              (long long)n, off, mn, mx, (long long)bad, lo, hi, (long long)want_bad);
                    if ((double)a != am || bad2 != want_bad)
                        FAILV(v, "row_absmax n=%lld off=%d: got %g bad %lld, want %g bad %lld",
                              (long long)n, off, a, (long long)bad2, am, (long long)want_bad);
                    float rmn, rmx;
                    int64_t rb;
                    R->row_minmax(x, n, &rmn, &rmx, &rb);
                    if (rmn != mn || rmx != mx || rb != bad) FAILV(v, "row_minmax differs from ref");
                }
        /* all non-finite: empty range */
        float nf[20];
        for (int i = 0; i < 20; i++) nf[i] = i % 2 ? NAN : -INFINITY;
        float mn, mx, a;
        int64_t bad;
        v->row_minmax(nf, 20, &mn, &mx, &bad);
        if (!(mn == INFINITY && mx == -INFINITY && bad == 20)) FAILV(v, "all non-finite row_minmax");
        v->row_absmax(nf, 20, &a, &bad);
        if (!(a == 0.0f && bad == 20)) FAILV(v, "all non-finite row_absmax");
    }
    free(buf);
}

/* Expected code of one element, computed independently in double from the
 * fp32 product (which is exact to represent in double). */
static int32_t want_code(float x, float inv, int32_t zp, int32_t qmin, int32_t qmax)
{
    float p = x * inv;
    double r = nearbyint((double)p) + zp;
    return r < qmin ? qmin : (r > qmax ? qmax : (int32_t)r);
}

static void test_quantize_hand(void **state)
{
    (void)state;
    /* RNE ties with inv_scale 1 */
    const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 127.5f, -127.5f,
                       -0.0f, 1e-40f, -1e-40f, FLT_MAX, -FLT_MAX, 3.49999976f, 0.49999997f};
    const int8_t sym[] = {0, 2, 2, 0, -2, -2, 126, -126, 127, -127, 0, 0, 0, 127, -127, 3, 0};
    /* zp 3, range [-128,127]: 127.5 -> 128+3 clamps to 127 */
    const int8_t asym[] = {3, 5, 5, 3, 1, 1, 127, -123, 127, -125, 3, 3, 3, 127, -128, 6, 3};
    enum { N = sizeof x / sizeof x[0], T = 5 * N };
    /* tiled so that the vector bodies, not only the scalar tails, see them */
    float xt[T];
    int8_t q[T];
    for (int i = 0; i < T; i++) xt[i] = x[i % N];
    for (size_t vi = 0; vi < N_NAMES; vi++) {
        const pq_ops *v = variant(vi);
        if (!v) continue;
        v->quantize_row(xt, T, 1.0f, 0, -127, 127, q);
        for (int i = 0; i < T; i++)
            if (q[i] != sym[i % N]) FAILV(v, "sym x=%g: got %d want %d", xt[i], q[i], sym[i % N]);
        v->quantize_row(xt, T, 1.0f, 3, -128, 127, q);
        for (int i = 0; i < T; i++)
            if (q[i] != asym[i % N]) FAILV(v, "asym x=%g: got %d want %d", xt[i], q[i], asym[i % N]);
        /* int4 range; inv 2: 1.25*2 = 2.5 -> 2; -3.75*2 = -7.5 -> -8 -> clamps to -7 */
        const float y[] = {1.25f, -3.75f, 0.75f, 100.0f};
        const int8_t y4[] = {2, -7, 2, 7};
        v->quantize_row(y, 4, 2.0f, 0, -7, 7, q);
        for (int i = 0; i < 4; i++)
            if (q[i] != y4[i]) FAILV(v, "int4 y=%g: got %d want %d", y[i], q[i], y4[i]);
    }
}

static void test_quantize_random(void **state)
{
    (void)state;
    float *buf = malloc((MAXN + 4) * sizeof *buf);
    int8_t *qb = malloc(MAXN + 4), *rb = malloc(MAXN + 4);
    const pq_ops *R = &ref_ops;
    static const int32_t ranges[4][2] = {{-127, 127}, {-128, 127}, {-7, 7}, {-8, 7}};
    for (size_t vi = 0; vi < N_NAMES; vi++) {
        const pq_ops *v = variant(vi);
        if (!v) continue;
        for (size_t li = 0; li < N_LENGTHS; li++)
            for (int off = 0; off < 3; off++)
                for (int trial = 0; trial < 6; trial++) {
                    int64_t n = lengths[li];
                    const int32_t *rg = ranges[trial % 4];
                    int32_t zp = trial % 2 ? (int32_t)(next() % 11) - 5 : 0;
                    float inv = trial < 4 ? frand(0.01f, 3.0f) : 1.0f;
                    float *x = buf + off;
                    int8_t *q = qb + (off + 1) % 3, *r = rb + off;
                    for (int64_t i = 0; i < n; i++) x[i] = trial < 2 ? frand(-200, 200) : adversarial();
                    v->quantize_row(x, n, inv, zp, rg[0], rg[1], q);
                    R->quantize_row(x, n, inv, zp, rg[0], rg[1], r);
                    for (int64_t i = 0; i < n; i++) {
                        int32_t w = want_code(x[i], inv, zp, rg[0], rg[1]);
                        if (q[i] != w || r[i] != w)
                            FAILV(v, "quantize n=%lld off=%d i=%lld x=%.9g inv=%.9g zp=%d [%d,%d]: got %d (ref %d) want %d",
                                  (long long)n, off, (long long)i, x[i], inv, zp, rg[0], rg[1], q[i], r[i], w);
                    }
                }
    }
    free(buf);
    free(qb);
    free(rb);
}

static void test_dequantize(void **state)
{
    (void)state;
    int8_t *q = malloc(MAXN + 4);
    float *y = malloc((MAXN + 4) * sizeof *y), *r = malloc((MAXN + 4) * sizeof *r);
    const pq_ops *R = &ref_ops;
    for (size_t vi = 0; vi < N_NAMES; vi++) {
        const pq_ops *v = variant(vi);
        if (!v) continue;
        /* hand: (q - zp) * scale */
        const int8_t hq[3] = {-3, 127, -128};
        float hy[3];
        v->dequantize_row(hq, 3, 0.5f, 2, hy);
        if (hy[0] != -2.5f || hy[1] != 62.5f || hy[2] != -65.0f) FAILV(v, "dequantize hand case");
        for (size_t li = 0; li < N_LENGTHS; li++)
            for (int off = 0; off < 3; off++) {
                int64_t n = lengths[li];
                float scale = frand(1e-6f, 2.0f);
                int32_t zp = (int32_t)(next() % 21) - 10;
                for (int64_t i = 0; i < n; i++) q[off + i] = (int8_t)(next() & 0xff);
                v->dequantize_row(q + off, n, scale, zp, y + (off + 2) % 3);
                R->dequantize_row(q + off, n, scale, zp, r);
                for (int64_t i = 0; i < n; i++) {
                    float w = (float)((double)((int32_t)q[off + i] - zp) * (double)scale);
                    float got = y[(off + 2) % 3 + i];
                    if (memcmp(&got, &w, 4) || memcmp(&r[i], &w, 4))
                        FAILV(v, "dequantize n=%lld i=%lld: got %.9g want %.9g", (long long)n,
                              (long long)i, got, w);
                }
            }
    }
    free(q);
    free(y);
    free(r);
}

/* error_lanes: a hand case (lane sums by index mod 8), and every variant
 * against the reference's doubles bit for bit, added onto running sums. */
static void test_error_lanes(void **state)
{
    (void)state;
    float *x = malloc((MAXN + 4) * sizeof *x);
    int8_t *q = malloc(MAXN + 4);
    for (size_t vi = 0; vi < N_NAMES; vi++) {
        const pq_ops *v = variant(vi);
        if (!v) continue;
        /* x = 1.25 at i = 0 and 8 (lane 0), q = 2, zp 0, scale 0.5: w_hat 1,
         * d 0.25 twice; x = -3 at i = 3, q = -5: w_hat -2.5, d -0.5 */
        float hx[16] = {0};
        int8_t hq[16] = {0};
        hx[0] = hx[8] = 1.25f;
        hq[0] = hq[8] = 2;
        hx[3] = -3.0f;
        hq[3] = -5;
        double s[8] = {0}, e[8] = {0}, m[8] = {0};
        v->error_lanes(hx, hq, 16, 0.5f, 0, s, e, m);
        if (s[0] != 2 * 1.5625 || e[0] != 2 * 0.0625 || m[0] != 0.25 || s[3] != 9.0 || e[3] != 0.25 ||
            m[3] != 0.5 || s[1] != 0 || e[7] != 0 || m[5] != 0)
            FAILV(v, "error_lanes hand case");
        for (size_t li = 0; li < N_LENGTHS; li++)
            for (int off = 0; off < 3; off++) {
                int64_t n = lengths[li];
                float scale = frand(1e-4f, 0.1f);
                int32_t zp = (int32_t)(next() % 21) - 10;
                for (int64_t i = 0; i < n; i++) {
                    x[off + i] = frand(-5.0f, 5.0f);
                    q[off + i] = (int8_t)(next() & 0xff);
                }
                double vs[8], ve[8], vm[8], rs[8], re[8], rm[8];
                for (int l = 0; l < 8; l++) {
                    vs[l] = rs[l] = frand(0.0f, 3.0f);
                    ve[l] = re[l] = frand(0.0f, 3.0f);
                    vm[l] = rm[l] = frand(0.0f, 1.0f);
                }
                v->error_lanes(x + off, q + off, n, scale, zp, vs, ve, vm);
                pq_error_lanes_ref(x + off, q + off, n, scale, zp, rs, re, rm);
                if (memcmp(vs, rs, sizeof vs) || memcmp(ve, re, sizeof ve) || memcmp(vm, rm, sizeof vm))
                    FAILV(v, "error_lanes n=%lld off=%d differs from the reference", (long long)n, off);
            }
    }
    free(x);
    free(q);
}

static void test_pack_unpack(void **state)
{
    (void)state;
    int8_t *q = malloc(MAXN + 4), *u = malloc(MAXN + 4);
    uint8_t *p = malloc(MAXN / 2 + 8);
    for (size_t vi = 0; vi < N_NAMES; vi++) {
        const pq_ops *v = variant(vi);
        if (!v) continue;
        /* hand-computed bytes: low nibble = even column, offset binary */
        const int8_t hq[5] = {-8, 7, 0, 0, 1};
        uint8_t hp[3];
        v->pack_i4(hq, 5, hp);
        if (hp[0] != 0xF0 || hp[1] != 0x88 || hp[2] != 0x89)
            FAILV(v, "pack hand bytes %02x %02x %02x, want f0 88 89", hp[0], hp[1], hp[2]);
        const int8_t h3[3] = {1, -1, 5};
        v->pack_i4(h3, 3, hp);
        if (hp[0] != 0x79 || hp[1] != 0x8D) FAILV(v, "pack odd bytes %02x %02x, want 79 8d", hp[0], hp[1]);
        int8_t hu[4];
        const uint8_t b2[2] = {0x3C, 0xF0};
        v->unpack_i4(b2, 4, hu);
        if (hu[0] != 4 || hu[1] != -5 || hu[2] != -8 || hu[3] != 7) FAILV(v, "unpack hand bytes");
        for (size_t li = 0; li < N_LENGTHS; li++)
            for (int off = 0; off < 3; off++) {
                int64_t n = lengths[li];
                int8_t *src = q + off;
                for (int64_t i = 0; i < n; i++) src[i] = (int8_t)((int)(next() % 16) - 8);
                uint8_t *dst = p + (off ? 1 : 0);
                v->pack_i4(src, n, dst);
                for (int64_t j = 0; 2 * j < n; j++) {
                    unsigned lo = (unsigned)(src[2 * j] + 8), hi = 2 * j + 1 < n ? (unsigned)(src[2 * j + 1] + 8) : 8u;
                    if (dst[j] != (uint8_t)(lo + 16 * hi))
                        FAILV(v, "pack n=%lld byte %lld: got %02x want %02x", (long long)n, (long long)j,
                              dst[j], lo + 16 * hi);
                }
                v->unpack_i4(dst, n, u + (off + 1) % 3);
                if (n && memcmp(u + (off + 1) % 3, src, (size_t)n))
                    FAILV(v, "unpack(pack(q)) != q for n=%lld off=%d", (long long)n, off);
            }
    }
    free(q);
    free(u);
    free(p);
}

/* Where the build and the CPU have AVX2 (AVX-512 VNNI), that context must be
 * tested (a silent fallback to the reference would test nothing), it must
 * carry its own kernels, and avx512's quantize_row and histogram are avx2's. */
static void test_variants_present(void **state)
{
    (void)state;
    assert_non_null(variant(0));
#if PQ_HAVE_AVX2
    if (pq_cpu_has_avx2_fma()) {
        assert_non_null(variant(1));
        assert_ptr_not_equal(variant(1)->quantize_row, ref_ops.quantize_row);
        assert_string_equal(variant(1)->gemm.name, "avx2");
    }
#endif
#if PQ_HAVE_AVX2 && defined(PQ_HAVE_AVX512VNNI)
    if (pq_cpu_has_avx512vnni()) {
        assert_non_null(variant(2));
        assert_string_equal(variant(2)->gemm.name, "avx512vnni");
        assert_ptr_equal(variant(2)->quantize_row, variant(1)->quantize_row);
        assert_ptr_equal(variant(2)->hist_ieee, variant(1)->hist_ieee);
    }
#endif
    for (size_t i = 0; i < N_NAMES; i++)
        if (variant(i)) print_message("testing context '%s'\n", variant(i)->name);
}

/* The selector: "cpu" is the best context usable here (the first that
 * pq_ops_available lists), an unknown name is PQ_KUNKNOWN, avx512 is
 * refused only where the CPU lacks what the VNNI GEMM needs (or the build
 * lacks it), and a refusal leaves the caller's context alone. */
static void test_selector(void **state)
{
    (void)state;
    char avail[64], first[16];
    pq_ops o;
    pq_ops_available(avail, sizeof avail);
    assert_non_null(strstr(avail, "ref"));
    snprintf(first, sizeof first, "%.*s", (int)strcspn(avail, ","), avail);
    assert_int_equal(pq_ops_select("cpu", &o), PQ_KOK);
    assert_string_equal(o.name, first);
    pq_ops_init_ref(&o);
    assert_int_equal(pq_ops_select("avx512vnni", &o), PQ_KUNKNOWN);
    assert_int_equal(pq_ops_select("", &o), PQ_KUNKNOWN);
    assert_int_equal(pq_ops_select(NULL, &o), PQ_KUNKNOWN);
    assert_string_equal(o.name, "ref");
    assert_null(pq_ops_needs("avx512vnni"));
    assert_non_null(strstr(pq_ops_needs("avx512"), "avx512vnni"));
    pq_kstatus k = pq_ops_select("avx512", &o);
#if PQ_HAVE_AVX2 && defined(PQ_HAVE_AVX512VNNI)
    assert_int_equal(k, pq_cpu_has_avx512vnni() ? PQ_KOK : PQ_KNOCPU);
#else
    assert_int_equal(k, PQ_KNOTBUILT);
#endif
    if (k == PQ_KOK) {
        assert_string_equal(o.name, "avx512");
        assert_string_equal(o.gemm.name, "avx512vnni");
        assert_string_equal(first, "avx512");
    } else {
        assert_string_equal(o.name, "ref");
        assert_null(strstr(avail, "avx512"));
    }
    assert_int_equal(pq_ops_select("ref", &o), PQ_KOK);
    assert_string_equal(o.gemm.name, "ref");
    assert_ptr_equal(o.gelu, ref_ops.gelu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variants_present),
        cmocka_unit_test(test_selector),
        cmocka_unit_test(test_minmax_absmax),
        cmocka_unit_test(test_quantize_hand),
        cmocka_unit_test(test_quantize_random),
        cmocka_unit_test(test_dequantize),
        cmocka_unit_test(test_error_lanes),
        cmocka_unit_test(test_pack_unpack),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
