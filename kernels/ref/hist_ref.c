/* SPDX-License-Identifier: Apache-2.0 */
/* hist_ref.c - scalar reference of the one-pass calibration statistics
 * (pq_kernels.h, hist_ieee): the bin of an element is a slice of its fp32 bit
 * pattern, so no arithmetic on the value can move it between bins. */
#include "kernels/kernels_impl.h"

#include <math.h>
#include <string.h>

void pq_hist_ieee_ref(const float *x, int64_t n_rows, int64_t dim, uint32_t *counts,
                      uint64_t *nonfinite, float *mn, float *mx, float *chan_absmax)
{
    float lo = *mn, hi = *mx;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * dim;
        for (int64_t j = 0; j < dim; j++) {
            uint32_t u;
            memcpy(&u, &row[j], sizeof u);
            if ((u & 0x7f800000u) == 0x7f800000u) {
                /* exponent all ones: NaN when the mantissa is non-zero, else +-Inf */
                nonfinite[(u & 0x7fffffu) ? 0 : (u >> 31) ? 2 : 1]++;
                continue;
            }
            counts[u >> PQ_HIST_SHIFT]++;
            float v = row[j], a = fabsf(v);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
            if (a > chan_absmax[j]) chan_absmax[j] = a;
        }
    }
    *mn = lo;
    *mx = hi;
}
