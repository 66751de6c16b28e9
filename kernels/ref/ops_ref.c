/* SPDX-License-Identifier: Apache-2.0 */
/* ops_ref.c - scalar reference of the transformer float ops (LayerNorm,
 * softmax, exact-erf GELU, rotary): the numbers of the fp32 ESM-2 forward.
 *
 * Each follows the PyTorch CPU op order documented in docs/esm2.md so the C
 * forward matches fair-esm to about 1e-6 relative per op. */
#include <math.h>

#include "kernels/kernels_impl.h"

/* Moments in double (one pass for the mean, one for the biased variance), then
 * PyTorch's fp32 form: y = (x * rstd + (-rstd * mean)) * w + b. */
void pq_layernorm_ref(const float *x, int64_t n_rows, int64_t d, const float *w,
                      const float *b, float eps, float *y)
{
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double s = 0.0;
        for (int64_t j = 0; j < d; j++) s += xr[j];
        double mean = s / (double)d, v = 0.0;
        for (int64_t j = 0; j < d; j++) {
            double t = xr[j] - mean;
            v += t * t;
        }
        v /= (double)d;
        float rstd = (float)(1.0 / sqrt(v + (double)eps));
        float nb = -rstd * (float)mean;
        for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] * rstd + nb) * w[j] + b[j];
    }
}

/* Row max subtracted; exp in fp32; normalised by the reciprocal of the sum
 * (PyTorch's vectorised softmax multiplies by 1/sum). -inf entries give 0. */
void pq_softmax_rows_ref(float *x, int64_t n_rows, int64_t n)
{
    for (int64_t r = 0; r < n_rows; r++) {
        float *xr = x + r * n;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) mx = xr[j] > mx ? xr[j] : mx;
        if (mx == -INFINITY) mx = 0.0f; /* an all-masked row stays all zero/NaN-free */
        float s = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            xr[j] = expf(xr[j] - mx);
            s += xr[j];
        }
        float inv = 1.0f / s;
        for (int64_t j = 0; j < n; j++) xr[j] *= inv;
    }
}

void pq_gelu_ref(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = (v * 0.5f) * (1.0f + erff(v / 1.41421356f));
    }
}

/* The angle is the single fp32 product t * inv_freq[i]; cos/sin of that float
 * are taken in double and rounded once. */
static void pq_rotary_table_ref(const float *inv_freq, int half, int64_t n_pos, float *cos_t,
                         float *sin_t)
{
    for (int64_t t = 0; t < n_pos; t++)
        for (int i = 0; i < half; i++) {
            float a = (float)t * inv_freq[i];
            cos_t[t * half + i] = (float)cos((double)a);
            sin_t[t * half + i] = (float)sin((double)a);
        }
}

/* Split-half rotation, two rounded products and one rounded add per output,
 * as x*cos + rotate_half(x)*sin evaluates in PyTorch. */
void pq_rotary_ref(float *x, int64_t n_tokens, int64_t ld, int n_heads, int hd,
                   const float *cos_t, const float *sin_t)
{
    int half = hd / 2;
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int h = 0; h < n_heads; h++) {
            float *p = x + t * ld + (int64_t)h * hd;
            for (int i = 0; i < half; i++) {
                float x1 = p[i], x2 = p[i + half];
                float a = x1 * c[i], bb = x2 * s[i];
                float cc = x2 * c[i], dd = x1 * s[i];
                p[i] = a - bb;
                p[i + half] = cc + dd;
            }
        }
    }
}

void pq_rotary_table(const float *inv_freq, int half, int64_t n_pos, float *cos_t, float *sin_t)
{
    pq_rotary_table_ref(inv_freq, half, n_pos, cos_t, sin_t);
}
