/* SPDX-License-Identifier: Apache-2.0 */
/* quant_avx2.c - AVX2 variants of the quantization kernels. Must equal
 * kernels/ref/quant_ref.c bit for bit: same fp32 product, same clamp, same
 * RNE rounding; vector bodies do whole blocks and the reference finishes the
 * tail. Compiled with -mavx2 -mfma only in this file. */
#include <immintrin.h>
#include <math.h>

#include "kernels/kernels_impl.h"

/* Lanes whose exponent is not all ones (finite values). */
static inline __m256i finite_mask(__m256 v)
{
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
    const __m256i expall = _mm256_set1_epi32(0x7f800000);
    __m256i a = _mm256_and_si256(_mm256_castps_si256(v), absmask);
    return _mm256_cmpgt_epi32(expall, a);
}

void pq_row_minmax_avx2(const float *x, int64_t n, float *mn, float *mx, int64_t *n_nonfinite)
{
    const __m256 pinf = _mm256_set1_ps(INFINITY), ninf = _mm256_set1_ps(-INFINITY);
    __m256 lo0 = pinf, hi0 = ninf, lo1 = pinf, hi1 = ninf;
    int64_t bad = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        __m256 fa = _mm256_castsi256_ps(finite_mask(a)), fb = _mm256_castsi256_ps(finite_mask(b));
        bad += 16 - __builtin_popcount((unsigned)_mm256_movemask_ps(fa))
                  - __builtin_popcount((unsigned)_mm256_movemask_ps(fb));
        lo0 = _mm256_min_ps(lo0, _mm256_blendv_ps(pinf, a, fa));
        hi0 = _mm256_max_ps(hi0, _mm256_blendv_ps(ninf, a, fa));
        lo1 = _mm256_min_ps(lo1, _mm256_blendv_ps(pinf, b, fb));
        hi1 = _mm256_max_ps(hi1, _mm256_blendv_ps(ninf, b, fb));
    }
    float l[8], h[8];
    _mm256_storeu_ps(l, _mm256_min_ps(lo0, lo1));
    _mm256_storeu_ps(h, _mm256_max_ps(hi0, hi1));
    float tl, th;
    int64_t tb;
    pq_row_minmax_ref(x + i, n - i, &tl, &th, &tb);
    for (int k = 0; k < 8; k++) {
        if (l[k] < tl) tl = l[k];
        if (h[k] > th) th = h[k];
    }
    *mn = tl;
    *mx = th;
    *n_nonfinite = bad + tb;
}

void pq_row_absmax_avx2(const float *x, int64_t n, float *amax, int64_t *n_nonfinite)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    int64_t bad = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        __m256 b = _mm256_and_ps(_mm256_loadu_ps(x + i + 8), absmask);
        __m256 fa = _mm256_castsi256_ps(finite_mask(a)), fb = _mm256_castsi256_ps(finite_mask(b));
        bad += 16 - __builtin_popcount((unsigned)_mm256_movemask_ps(fa))
                  - __builtin_popcount((unsigned)_mm256_movemask_ps(fb));
        m0 = _mm256_max_ps(m0, _mm256_and_ps(a, fa));
        m1 = _mm256_max_ps(m1, _mm256_and_ps(b, fb));
    }
    float m[8];
    _mm256_storeu_ps(m, _mm256_max_ps(m0, m1));
    float t;
    int64_t tb;
    pq_row_absmax_ref(x + i, n - i, &t, &tb);
    for (int k = 0; k < 8; k++)
        if (m[k] > t) t = m[k];
    *amax = t;
    *n_nonfinite = bad + tb;
}

static inline __m256i quant8(const float *x, __m256 inv, __m256 lo, __m256 hi, __m256i zp)
{
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), inv);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
}

void pq_quantize_row_avx2(const float *x, int64_t n, float inv_scale, int32_t zp,
                          int32_t qmin, int32_t qmax, int8_t *q)
{
    const __m256 inv = _mm256_set1_ps(inv_scale);
    const __m256 lo = _mm256_set1_ps((float)(qmin - zp)), hi = _mm256_set1_ps((float)(qmax - zp));
    const __m256i vzp = _mm256_set1_epi32(zp);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = quant8(x + i, inv, lo, hi, vzp), b = quant8(x + i + 8, inv, lo, hi, vzp);
        __m256i c = quant8(x + i + 16, inv, lo, hi, vzp), d = quant8(x + i + 24, inv, lo, hi, vzp);
        /* values are already in [-128,127]: saturation never triggers */
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i abcd = _mm256_packs_epi16(ab, cd);
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(abcd, perm));
    }
    pq_quantize_row_ref(x + i, n - i, inv_scale, zp, qmin, qmax, q + i);
}

void pq_dequantize_row_avx2(const int8_t *q, int64_t n, float scale, int32_t zp, float *y)
{
    const __m256 s = _mm256_set1_ps(scale);
    const __m256i vzp = _mm256_set1_epi32(zp);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(q + i));
        __m256i v = _mm256_sub_epi32(_mm256_cvtepi8_epi32(b), vzp);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
    }
    pq_dequantize_row_ref(q + i, n - i, scale, zp, y + i);
}

/* Lanes 0-3 and 4-7 in two vectors: per lane the reference's operations in
 * its order (no FMA: the build has -ffp-contract=off). */
void pq_error_lanes_avx2(const float *x, const int8_t *q, int64_t n, float scale, int32_t zp, double s[8],
                         double e[8], double m[8])
{
    const __m256 sc = _mm256_set1_ps(scale);
    const __m256i vzp = _mm256_set1_epi32(zp);
    const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
    __m256d s0 = _mm256_loadu_pd(s), s1 = _mm256_loadu_pd(s + 4);
    __m256d e0 = _mm256_loadu_pd(e), e1 = _mm256_loadu_pd(e + 4);
    __m256d m0 = _mm256_loadu_pd(m), m1 = _mm256_loadu_pd(m + 4);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m128i b = _mm_loadl_epi64((const __m128i *)(q + i));
        __m256 wh = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(b), vzp)), sc);
        __m256d w0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), w1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        __m256d d0 = _mm256_sub_pd(w0, _mm256_cvtps_pd(_mm256_castps256_ps128(wh)));
        __m256d d1 = _mm256_sub_pd(w1, _mm256_cvtps_pd(_mm256_extractf128_ps(wh, 1)));
        s0 = _mm256_add_pd(s0, _mm256_mul_pd(w0, w0));
        s1 = _mm256_add_pd(s1, _mm256_mul_pd(w1, w1));
        e0 = _mm256_add_pd(e0, _mm256_mul_pd(d0, d0));
        e1 = _mm256_add_pd(e1, _mm256_mul_pd(d1, d1));
        /* max_pd(a, b) is a > b ? a : b, as the reference */
        m0 = _mm256_max_pd(_mm256_and_pd(d0, absmask), m0);
        m1 = _mm256_max_pd(_mm256_and_pd(d1, absmask), m1);
    }
    _mm256_storeu_pd(s, s0);
    _mm256_storeu_pd(s + 4, s1);
    _mm256_storeu_pd(e, e0);
    _mm256_storeu_pd(e + 4, e1);
    _mm256_storeu_pd(m, m0);
    _mm256_storeu_pd(m + 4, m1);
    pq_error_lanes_ref(x + i, q + i, n - i, scale, zp, s, e, m); /* i is a multiple of 8: lanes line up */
}

void pq_pack_i4_avx2(const int8_t *q, int64_t n, uint8_t *packed)
{
    const __m256i eight = _mm256_set1_epi8(8);
    const __m256i w = _mm256_set1_epi16(0x1001); /* bytes (1, 16): lo + 16*hi */
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i a = _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(q + i)), eight);
        __m256i b = _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(q + i + 32)), eight);
        __m256i pa = _mm256_maddubs_epi16(a, w), pb = _mm256_maddubs_epi16(b, w);
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi16(pa, pb), 0xd8);
        _mm256_storeu_si256((__m256i *)(packed + i / 2), p);
    }
    pq_pack_i4_ref(q + i, n - i, packed + i / 2);
}

void pq_unpack_i4_avx2(const uint8_t *packed, int64_t n, int8_t *q)
{
    const __m128i low4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(packed + i / 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(b, low4), eight);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low4), eight);
        _mm_storeu_si128((__m128i *)(q + i), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128((__m128i *)(q + i + 16), _mm_unpackhi_epi8(lo, hi));
    }
    pq_unpack_i4_ref(packed + i / 2, n - i, q + i);
}
