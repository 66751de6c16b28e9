/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_avx2.c - the GPTQ column loop (pq_gptq_block) on AVX2 vectors of 8
 * rows, 4 columns x 16 rows in registers (the scheme: gptq_body.h). Rows
 * left over from the 16- and 8-row vectors go to the reference. */
#include <immintrin.h>

#include "kernels/kernels_impl.h"

#define VW 8
#define VF __m256
#define VI __m256i
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VLOADI(p) _mm256_loadu_si256((const __m256i *)(p))
#define VSET1 _mm256_set1_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMIN _mm256_min_ps
#define VMAX _mm256_max_ps
#define VCVTT _mm256_cvttps_epi32
#define VADDI _mm256_add_epi32
/* the saturating packs never saturate codes in [-128, 127] */
#define VSTORE_CODES(dst, c)                                                                        \
    do {                                                                                            \
        const __m128i c16_ = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)); \
        _mm_storel_epi64((__m128i *)(dst), _mm_packs_epi16(c16_, c16_));                            \
    } while (0)
#define PQ_GPTQ_COLS 4

#include "kernels/x86/gptq_body.h"

void pq_gptq_block_avx2(const pq_gptq_block *b, int64_t r0, int64_t r1)
{
    int64_t r = r0;
    for (; r + 16 <= r1; r += 16) block_rows(b, r, 2);
    for (; r + 8 <= r1; r += 8) block_rows(b, r, 1);
    if (r < r1) pq_gptq_block_ref(b, r, r1);
}
