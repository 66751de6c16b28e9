/* SPDX-License-Identifier: Apache-2.0 */
/* ops_avx512.c - AVX-512F variants of the element-wise transformer ops of
 * kernels/ref/ops_ref.c (the avx512 context's; the others are avx2's).
 * Compiled with the avx512 context's flags only in this file. Tolerances in
 * math512.h, tested in tests/model/test_ops.c. */
#include <immintrin.h>
#include <math.h>

#include "kernels/kernels_impl.h"
#include "kernels/x86/math512.h"

void pq_gelu_avx512(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, pq_gelu512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, m, pq_gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* Sum of the 16 floats of v as doubles, into two accumulators. */
static inline void add16_pd(__m512 v, __m512d *s0, __m512d *s1)
{
    *s0 = _mm512_add_pd(*s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    __m256 h = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    *s1 = _mm512_add_pd(*s1, _mm512_cvtps_pd(h));
}

/* Squares of (v - m) as doubles, into two accumulators. */
static inline void sq16_pd(__m512 v, __m512d m, __m512d *s0, __m512d *s1)
{
    __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), m);
    __m256 h = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m512d c = _mm512_sub_pd(_mm512_cvtps_pd(h), m);
    *s0 = _mm512_add_pd(*s0, _mm512_mul_pd(a, a));
    *s1 = _mm512_add_pd(*s1, _mm512_mul_pd(c, c));
}

/* As pq_layernorm_avx2, 16 columns a step: moments in double (four chains),
 * the output's fp32 products and sums as the reference's. Within 2e-6 of the
 * row's output scale (tests/model/test_ops.c). */
void pq_layernorm_avx512(const float *x, int64_t n_rows, int64_t d, const float *w, const float *b, float eps,
                         float *y)
{
    int64_t full = d / 16 * 16;
    __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
        int64_t j = 0;
        for (; j + 32 <= full; j += 32) {
            add16_pd(_mm512_loadu_ps(xr + j), &s0, &s1);
            add16_pd(_mm512_loadu_ps(xr + j + 16), &s2, &s3);
        }
        for (; j < full; j += 16) add16_pd(_mm512_loadu_ps(xr + j), &s0, &s1);
        double s = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
        for (j = full; j < d; j++) s += xr[j];
        double mean = s / (double)d;
        __m512d m = _mm512_set1_pd(mean);
        s0 = s1 = s2 = s3 = _mm512_setzero_pd();
        for (j = 0; j + 32 <= full; j += 32) {
            sq16_pd(_mm512_loadu_ps(xr + j), m, &s0, &s1);
            sq16_pd(_mm512_loadu_ps(xr + j + 16), m, &s2, &s3);
        }
        for (; j < full; j += 16) sq16_pd(_mm512_loadu_ps(xr + j), m, &s0, &s1);
        double v2 = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
        for (j = full; j < d; j++) {
            double t = xr[j] - mean;
            v2 += t * t;
        }
        v2 /= (double)d;
        float rstd = (float)(1.0 / sqrt(v2 + (double)eps));
        float nb = -rstd * (float)mean;
        __m512 vr = _mm512_set1_ps(rstd), vb = _mm512_set1_ps(nb);
        for (j = 0; j < d; j += 16) {
            __mmask16 mk = j < full ? (__mmask16)0xffff : tail;
            __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + j), vr), vb);
            t = _mm512_add_ps(_mm512_mul_ps(t, _mm512_maskz_loadu_ps(mk, w + j)), _mm512_maskz_loadu_ps(mk, b + j));
            _mm512_mask_storeu_ps(yr + j, mk, t);
        }
    }
}
