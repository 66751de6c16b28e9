/* SPDX-License-Identifier: Apache-2.0 */
/* hist_avx2.c - AVX2 variant of the IEEE-bit histogram: bin indices and the
 * non-finite test for 8 elements at a time, then scalar increments (there is
 * no scatter-add). Counts are identical to hist_ref.c by construction. */
#include "kernels_impl.h"

#include <immintrin.h>
#include <string.h>

int64_t pq_hist_ieee_avx2(const float *x, int64_t n, uint64_t *const *blocks, uint64_t *nonfinite)
{
    const __m256i expmask = _mm256_set1_epi32(0x7f800000);
    int64_t i = 0;
    uint32_t blk[8], idx[8];
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(u, expmask), expmask);
        __m256i b = _mm256_srli_epi32(u, 23);
        __m256i k = _mm256_and_si256(_mm256_srli_epi32(u, PQ_HIST_SHIFT),
                                     _mm256_set1_epi32(PQ_HIST_BLOCK - 1));
        _mm256_storeu_si256((__m256i *)blk, b);
        _mm256_storeu_si256((__m256i *)idx, k);
        if (_mm256_movemask_ps(_mm256_castsi256_ps(special))) {
            /* rare: let the reference handle this group element by element */
            int64_t r = pq_hist_ieee_ref(x + i, 8, blocks, nonfinite);
            if (r < 8) return i + r;
            continue;
        }
        /* all 8 blocks must exist before any is counted, so that a stop
         * leaves the group untouched and the caller can resume at i */
        int missing = 0;
        for (int j = 0; j < 8; j++) missing |= blocks[blk[j]] == NULL;
        if (missing) {
            int64_t r = pq_hist_ieee_ref(x + i, 8, blocks, nonfinite);
            if (r < 8) return i + r;
            continue;
        }
        for (int j = 0; j < 8; j++) blocks[blk[j]][idx[j]]++;
    }
    if (i < n) {
        int64_t r = pq_hist_ieee_ref(x + i, n - i, blocks, nonfinite);
        return i + r;
    }
    return n;
}
