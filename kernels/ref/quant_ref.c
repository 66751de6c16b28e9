/* SPDX-License-Identifier: Apache-2.0 */
/* quant_ref.c - scalar reference kernels for range observation, quantize,
 * dequantize and int4 packing. These define the numbers: every other variant
 * must reproduce their integer outputs bit for bit. */
#include "kernels/kernels_impl.h"

#include <math.h>

void pq_row_minmax_ref(const float *x, int64_t n, float *mn, float *mx, int64_t *n_nonfinite)
{
    float lo = INFINITY, hi = -INFINITY;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v)) { bad++; continue; }
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    *mn = lo;
    *mx = hi;
    *n_nonfinite = bad;
}

void pq_row_absmax_ref(const float *x, int64_t n, float *amax, int64_t *n_nonfinite)
{
    float m = 0.0f;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (!isfinite(a)) { bad++; continue; }
        if (a > m) m = a;
    }
    *amax = m;
    *n_nonfinite = bad;
}

void pq_quantize_row_ref(const float *x, int64_t n, float inv_scale, int32_t zp,
                         int32_t qmin, int32_t qmax, int8_t *q)
{
    /* Clamp in float first: the bounds are integers, so clamping before or
     * after the RNE rounding gives the same code, and the int conversion is
     * then always in range. */
    const float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * inv_scale;
        v = v < lo ? lo : (v > hi ? hi : v);
        q[i] = (int8_t)((int32_t)nearbyintf(v) + zp);
    }
}

void pq_dequantize_row_ref(const int8_t *q, int64_t n, float scale, int32_t zp, float *y)
{
    for (int64_t i = 0; i < n; i++) y[i] = (float)((int32_t)q[i] - zp) * scale;
}

void pq_error_lanes_ref(const float *x, const int8_t *q, int64_t n, float scale, int32_t zp, double s[8],
                        double e[8], double m[8])
{
    for (int64_t i = 0; i < n; i++) {
        const int l = (int)(i % 8);
        double w = x[i];
        double d = w - (double)((float)((int32_t)q[i] - zp) * scale);
        s[l] += w * w;
        e[l] += d * d;
        d = fabs(d);
        m[l] = d > m[l] ? d : m[l];
    }
}

void pq_pack_i4_ref(const int8_t *q, int64_t n, uint8_t *packed)
{
    for (int64_t j = 0; 2 * j < n; j++) {
        unsigned lo = (unsigned)(q[2 * j] + 8) & 0xfu;
        unsigned hi = 2 * j + 1 < n ? (unsigned)(q[2 * j + 1] + 8) & 0xfu : 8u;
        packed[j] = (uint8_t)(lo | hi << 4);
    }
}

void pq_unpack_i4_ref(const uint8_t *packed, int64_t n, int8_t *q)
{
    for (int64_t i = 0; i < n; i++) {
        unsigned b = packed[i / 2];
        q[i] = (int8_t)((int)((i & 1) ? b >> 4 : b & 0xfu) - 8);
    }
}
