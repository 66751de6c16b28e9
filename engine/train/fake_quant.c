/* SPDX-License-Identifier: Apache-2.0 */
/* fake_quant.c - scalar fake quantization and its LSQ / straight-through
 * backward (the definitions are in fake_quant.h). */
#include "train/fake_quant.h"

#include <math.h>

void pq_fq_weight_fwd_ref(const float *w, int64_t r0, int64_t r1, int64_t cols, int64_t gs, const float *s,
                          const int32_t *z, int32_t qmin, int32_t qmax, float *w_hat)
{
    int64_t ng = (cols + gs - 1) / gs;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t g = 0; g < ng; g++) {
            float sc = s[r * ng + g], inv = 1.0f / sc;
            int32_t zp = z ? z[r * ng + g] : 0;
            int64_t c1 = (g + 1) * gs < cols ? (g + 1) * gs : cols;
            for (int64_t c = g * gs; c < c1; c++) {
                float q = nearbyintf(w[r * cols + c] * inv) + (float)zp;
                q = q < (float)qmin ? (float)qmin : q > (float)qmax ? (float)qmax : q;
                w_hat[r * cols + c] = (q - (float)zp) * sc;
            }
        }
}

void pq_fq_weight_bwd_ref(const float *w, const float *dw_hat, int64_t r0, int64_t r1, int64_t cols, int64_t gs,
                          const float *s, const int32_t *z, int32_t qmin, int32_t qmax, float *dw, float *ds)
{
    int64_t ng = (cols + gs - 1) / gs;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t g = 0; g < ng; g++) {
            float sc = s[r * ng + g], inv = 1.0f / sc;
            int32_t zp = z ? z[r * ng + g] : 0;
            float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
            int64_t c0 = g * gs, c1 = (g + 1) * gs < cols ? (g + 1) * gs : cols;
            double acc = 0.0;
            for (int64_t c = c0; c < c1; c++) {
                float v = w[r * cols + c] * inv, d = dw_hat[r * cols + c];
                float e = v < lo ? lo : v > hi ? hi : nearbyintf(v) - v;
                acc += (double)d * e;
                dw[r * cols + c] = (v < lo || v > hi) ? 0.0f : d;
            }
            double gscale = 1.0 / sqrt((double)(c1 - c0) * (double)qmax);
            ds[r * ng + g] += (float)(acc * gscale);
        }
}

void pq_fq_act_rows_ref(float *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        float *r = x + i * d, amax = 0.0f;
        for (int64_t j = 0; j < d; j++) amax = fmaxf(amax, fabsf(r[j]));
        float s = fmaxf(amax, 1e-5f) / 127.0f, inv = 1.0f / s;
        for (int64_t j = 0; j < d; j++) {
            float v = nearbyintf(r[j] * inv);
            v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
            r[j] = v * s;
        }
    }
}

void pq_fq_act_static_fwd_ref(const float *x, int64_t n, float s, float *x_hat)
{
    float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * inv);
        v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
        x_hat[i] = v * s;
    }
}

double pq_fq_act_static_bwd_ref(const float *x, const float *dx_hat, int64_t n, float s, float *dx)
{
    float inv = 1.0f / s;
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * inv, d = dx_hat[i];
        float e = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : nearbyintf(v) - v;
        acc += (double)d * e;
        dx[i] = (v < -127.0f || v > 127.0f) ? 0.0f : d;
    }
    return acc;
}

double pq_fq_act_gscale(int64_t d) { return 1.0 / sqrt((double)d * 127.0); }
