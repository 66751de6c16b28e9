/* SPDX-License-Identifier: Apache-2.0 */
/* ops_avx2.c - AVX2 variants of the transformer float ops of
 * kernels/ref/ops_ref.c. Compiled with -mavx2 -mfma only in this file.
 *
 * Tolerances against the reference (tested in tests/kernels/test_ops.c):
 * - layernorm: moments in double like the reference, in another summation
 *   order; outputs within 2e-6 relative of the row scale;
 * - softmax: polynomial expf (degree-7, ~2 ulp), probabilities within 1e-6
 *   absolute;
 * - gelu: erf by Abramowitz-Stegun 7.1.26 (|error| <= 1.5e-7, the form
 *   PyTorch's own AVX2 erf uses), within 1e-6 * max(1, |x|);
 * - rotary: bit-identical (same products, no FMA). */
#include <immintrin.h>
#include <math.h>

#include "kernels/kernels_impl.h"

static inline double hsum_pd(__m256d v)
{
    __m128d lo = _mm256_castpd256_pd128(v), hi = _mm256_extractf128_pd(v, 1);
    lo = _mm_add_pd(lo, hi);
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

static inline float hsum_ps(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

static inline float hmax_ps(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_max_ps(lo, hi);
    lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_max_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

void pq_layernorm_avx2(const float *x, int64_t n_rows, int64_t d, const float *w,
                       const float *b, float eps, float *y)
{
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        int64_t j = 0;
        for (; j + 8 <= d; j += 8) {
            __m256 v = _mm256_loadu_ps(xr + j);
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
        double s = hsum_pd(_mm256_add_pd(s0, s1));
        for (; j < d; j++) s += xr[j];
        double mean = s / (double)d;
        __m256d m = _mm256_set1_pd(mean);
        s0 = _mm256_setzero_pd();
        s1 = _mm256_setzero_pd();
        for (j = 0; j + 8 <= d; j += 8) {
            __m256 v = _mm256_loadu_ps(xr + j);
            __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
            __m256d c = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
            s0 = _mm256_add_pd(s0, _mm256_mul_pd(a, a));
            s1 = _mm256_add_pd(s1, _mm256_mul_pd(c, c));
        }
        double v2 = hsum_pd(_mm256_add_pd(s0, s1));
        for (; j < d; j++) {
            double t = xr[j] - mean;
            v2 += t * t;
        }
        v2 /= (double)d;
        float rstd = (float)(1.0 / sqrt(v2 + (double)eps));
        float nb = -rstd * (float)mean;
        __m256 vr = _mm256_set1_ps(rstd), vb = _mm256_set1_ps(nb);
        for (j = 0; j + 8 <= d; j += 8) {
            __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + j), vr), vb);
            t = _mm256_add_ps(_mm256_mul_ps(t, _mm256_loadu_ps(w + j)), _mm256_loadu_ps(b + j));
            _mm256_storeu_ps(yr + j, t);
        }
        for (; j < d; j++) yr[j] = (xr[j] * rstd + nb) * w[j] + b[j];
    }
}

/* e^x: n = round(x / ln2), r = x - n ln2 (two-part constant), degree-7 Taylor
 * polynomial on |r| <= ln2/2, times 2^n. Inputs below -87.3 give exactly 0
 * (so -inf masks stay exact zeros); inputs are assumed <= 88. */
static inline __m256 exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, p);
}

void pq_softmax_rows_avx2(float *x, int64_t n_rows, int64_t n)
{
    for (int64_t r = 0; r < n_rows; r++) {
        float *xr = x + r * n;
        __m256 vm = _mm256_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(xr + j));
        float mx = hmax_ps(vm);
        for (; j < n; j++) mx = xr[j] > mx ? xr[j] : mx;
        if (mx == -INFINITY) mx = 0.0f;
        __m256 m = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
        for (j = 0; j + 8 <= n; j += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(xr + j), m));
            _mm256_storeu_ps(xr + j, e);
            acc = _mm256_add_ps(acc, e);
        }
        float s = hsum_ps(acc);
        for (; j < n; j++) {
            xr[j] = expf(xr[j] - mx);
            s += xr[j];
        }
        float inv = 1.0f / s;
        __m256 vi = _mm256_set1_ps(inv);
        for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(xr + j, _mm256_mul_ps(_mm256_loadu_ps(xr + j), vi));
        for (; j < n; j++) xr[j] *= inv;
    }
}

void pq_gelu_avx2(float *x, int64_t n)
{
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 rs2 = _mm256_set1_ps(1.41421356f), sgn = _mm256_set1_ps(-0.0f);
    const __m256 p = _mm256_set1_ps(0.3275911f);
    const __m256 a1 = _mm256_set1_ps(0.254829592f), a2 = _mm256_set1_ps(-0.284496736f);
    const __m256 a3 = _mm256_set1_ps(1.421413741f), a4 = _mm256_set1_ps(-1.453152027f);
    const __m256 a5 = _mm256_set1_ps(1.061405429f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_div_ps(v, rs2);
        __m256 az = _mm256_andnot_ps(sgn, z);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(p, az, one));
        __m256 q = _mm256_fmadd_ps(a5, t, a4);
        q = _mm256_fmadd_ps(q, t, a3);
        q = _mm256_fmadd_ps(q, t, a2);
        q = _mm256_fmadd_ps(q, t, a1);
        q = _mm256_mul_ps(q, t);
        __m256 e = exp256(_mm256_xor_ps(sgn, _mm256_mul_ps(az, az)));
        __m256 erfa = _mm256_fnmadd_ps(q, e, one);                 /* erf(|z|) */
        __m256 erfz = _mm256_or_ps(erfa, _mm256_and_ps(sgn, z));   /* sign of z */
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(v, half), _mm256_add_ps(one, erfz)));
    }
    pq_gelu_ref(x + i, n - i);
}

void pq_rotary_avx2(float *x, int64_t n_tokens, int64_t ld, int n_heads, int hd,
                    const float *cos_t, const float *sin_t)
{
    int half = hd / 2;
    if (half % 8 != 0) { /* hd 16 / 24 ... : the reference is as fast */
        pq_rotary_ref(x, n_tokens, ld, n_heads, hd, cos_t, sin_t);
        return;
    }
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int h = 0; h < n_heads; h++) {
            float *q = x + t * ld + (int64_t)h * hd;
            for (int i = 0; i < half; i += 8) {
                __m256 x1 = _mm256_loadu_ps(q + i), x2 = _mm256_loadu_ps(q + i + half);
                __m256 vc = _mm256_loadu_ps(c + i), vs = _mm256_loadu_ps(s + i);
                __m256 y1 = _mm256_sub_ps(_mm256_mul_ps(x1, vc), _mm256_mul_ps(x2, vs));
                __m256 y2 = _mm256_add_ps(_mm256_mul_ps(x2, vc), _mm256_mul_ps(x1, vs));
                _mm256_storeu_ps(q + i, y1);
                _mm256_storeu_ps(q + i + half, y2);
            }
        }
    }
}
