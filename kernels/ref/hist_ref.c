/* SPDX-License-Identifier: Apache-2.0 */
/* hist_ref.c - scalar reference of the IEEE-bit histogram used by calibration
 * (pq_kernels.h, hist_ieee): the bin of an element is a slice of its fp32 bit
 * pattern, so no arithmetic on the value can move it between bins. */
#include "kernels_impl.h"

#include <string.h>

int64_t pq_hist_ieee_ref(const float *x, int64_t n, uint64_t *const *blocks, uint64_t *nonfinite)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        uint32_t blk = u >> 23; /* sign and exponent */
        if ((blk & 0xffu) == 0xffu) {
            /* exponent all ones: NaN when the mantissa is non-zero, else +-Inf */
            nonfinite[(u & 0x7fffffu) ? 0 : (u >> 31) ? 2 : 1]++;
            continue;
        }
        uint64_t *b = blocks[blk];
        if (!b) return i; /* the caller allocates the block and resumes here */
        b[(u >> PQ_HIST_SHIFT) & (PQ_HIST_BLOCK - 1)]++;
    }
    return n;
}
