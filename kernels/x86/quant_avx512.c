/* SPDX-License-Identifier: Apache-2.0 */
/* quant_avx512.c - AVX-512F variants of two quantization kernels of
 * kernels/ref/quant_ref.c (the avx512 context's; its other quantization slots
 * are avx2's). Bit for bit the reference's, as quant_avx2.c's: vector bodies
 * do whole blocks and the reference finishes the tail. Compiled with the
 * avx512 context's flags only in this file. */
#include <immintrin.h>
#include <math.h>

#include "kernels/kernels_impl.h"

/* Lanes whose exponent is not all ones (finite values). */
static inline __mmask16 finite16(__m512 v)
{
    __m512i a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff));
    return _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(0x7f800000), a);
}

/* min and max over the finite lanes (MINPS(lo, x) as quant_avx2.c's, so
 * the same value of a tie between -0 and +0); 32 floats a step. */
void pq_row_minmax_avx512(const float *x, int64_t n, float *mn, float *mx, int64_t *n_nonfinite)
{
    __m512 lo0 = _mm512_set1_ps(INFINITY), hi0 = _mm512_set1_ps(-INFINITY), lo1 = lo0, hi1 = hi0;
    int64_t bad = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        __mmask16 fa = finite16(a), fb = finite16(b);
        bad += 32 - __builtin_popcount((unsigned)fa) - __builtin_popcount((unsigned)fb);
        lo0 = _mm512_mask_min_ps(lo0, fa, lo0, a);
        hi0 = _mm512_mask_max_ps(hi0, fa, hi0, a);
        lo1 = _mm512_mask_min_ps(lo1, fb, lo1, b);
        hi1 = _mm512_mask_max_ps(hi1, fb, hi1, b);
    }
    float l[16], h[16];
    _mm512_storeu_ps(l, _mm512_min_ps(lo0, lo1));
    _mm512_storeu_ps(h, _mm512_max_ps(hi0, hi1));
    float tl, th;
    int64_t tb;
    pq_row_minmax_ref(x + i, n - i, &tl, &th, &tb);
    for (int k = 0; k < 16; k++) {
        if (l[k] < tl) tl = l[k];
        if (h[k] > th) th = h[k];
    }
    *mn = tl;
    *mx = th;
    *n_nonfinite = bad + tb;
}

/* The 8 lanes in one vector of doubles; two blocks of 8 a step, each lane
 * adding its two elements in index order (no FMA: -ffp-contract=off). */
static inline void lanes8(const float *x, const int8_t *q, __m256 sc, __m256i vzp, __m512d *s, __m512d *e,
                          __m512d *m)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)q);
    __m256 wh = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(b), vzp)), sc);
    __m512d w = _mm512_cvtps_pd(_mm256_loadu_ps(x));
    __m512d d = _mm512_sub_pd(w, _mm512_cvtps_pd(wh));
    *s = _mm512_add_pd(*s, _mm512_mul_pd(w, w));
    *e = _mm512_add_pd(*e, _mm512_mul_pd(d, d));
    /* MAXPD(a, b) is a > b ? a : b, as the reference */
    *m = _mm512_max_pd(_mm512_abs_pd(d), *m);
}

void pq_error_lanes_avx512(const float *x, const int8_t *q, int64_t n, float scale, int32_t zp, double s[8],
                           double e[8], double m[8])
{
    const __m256 sc = _mm256_set1_ps(scale);
    const __m256i vzp = _mm256_set1_epi32(zp);
    __m512d vs = _mm512_loadu_pd(s), ve = _mm512_loadu_pd(e), vm = _mm512_loadu_pd(m);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        lanes8(x + i, q + i, sc, vzp, &vs, &ve, &vm);
        lanes8(x + i + 8, q + i + 8, sc, vzp, &vs, &ve, &vm);
    }
    for (; i + 8 <= n; i += 8) lanes8(x + i, q + i, sc, vzp, &vs, &ve, &vm);
    _mm512_storeu_pd(s, vs);
    _mm512_storeu_pd(e, ve);
    _mm512_storeu_pd(m, vm);
    pq_error_lanes_ref(x + i, q + i, n - i, scale, zp, s, e, m); /* i is a multiple of 8: lanes line up */
}
