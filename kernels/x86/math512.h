/* SPDX-License-Identifier: Apache-2.0 */
/* math512.h - element-wise functions on 16 floats (AVX-512F), inline for the
 * kernels that fuse them (include only where AVX-512F is on). */
#ifndef PQ_MATH512_H
#define PQ_MATH512_H

#include <immintrin.h>

/* e^x as ops_avx2.c's exp256: n = round(x / ln2), r = x - n ln2 (two-part
 * constant), degree-7 Taylor polynomial, times 2^n; below -87.3 exactly 0,
 * inputs assumed <= 88. */
static inline __m512 pq_exp512(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.3f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    p = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps((__mmask16)~under, p);
}

/* GELU, x/2 (1 + erf(x / sqrt 2)), erf by Abramowitz-Stegun 7.1.26 as
 * ops_avx2.c's, without its two divisions (a 512-bit VDIVPS issues once per
 * 16 cycles): x times fl(1/sqrt 2), and 1/(1 + p|z|) from VRCP14PS with one
 * Newton step (~1 ulp). Within 1e-6 * max(1, |x|) of the reference
 * (tests/model/test_ops.c); every lane computes alike, so a result does not
 * depend on where a segment starts or ends. */
static inline __m512 pq_gelu512(__m512 v)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 z = _mm512_mul_ps(v, _mm512_set1_ps(0.707106781f));
    __m512 az = _mm512_abs_ps(z);
    __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), az, one);
    __m512 t = _mm512_rcp14_ps(d);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(1.061405429f), t, _mm512_set1_ps(-1.453152027f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.421413741f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-0.284496736f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.254829592f));
    q = _mm512_mul_ps(q, t);
    __m512 e = pq_exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(az, az)));
    __m512 erfa = _mm512_fnmadd_ps(q, e, one); /* erf(|z|) */
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32((int)0x80000000u));
    __m512 erfz = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erfa), sign));
    return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.5f)), _mm512_add_ps(one, erfz));
}

#endif
