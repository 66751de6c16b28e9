/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_avx512.c - the GPTQ column loop (pq_gptq_block) on AVX-512 vectors
 * of 16 rows, 8 columns x 32 rows in registers (the scheme: gptq_body.h).
 * Rows left over from the 32- and 16-row vectors go to the AVX2 variant. */
#include <immintrin.h>

#include "kernels/kernels_impl.h"

#define VW 16
#define VF __m512
#define VI __m512i
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VLOADI _mm512_loadu_si512
#define VSET1 _mm512_set1_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMIN _mm512_min_ps
#define VMAX _mm512_max_ps
#define VCVTT _mm512_cvttps_epi32
#define VADDI _mm512_add_epi32
/* vpmovdb truncates: codes in [-128, 127] keep their value */
#define VSTORE_CODES(dst, c) _mm_storeu_si128((__m128i *)(dst), _mm512_cvtepi32_epi8(c))
#define PQ_GPTQ_COLS 8

#include "kernels/x86/gptq_body.h"

void pq_gptq_block_avx512(const pq_gptq_block *b, int64_t r0, int64_t r1)
{
    int64_t r = r0;
    for (; r + 32 <= r1; r += 32) block_rows(b, r, 2);
    for (; r + 16 <= r1; r += 16) block_rows(b, r, 1);
    if (r < r1) pq_gptq_block_avx2(b, r, r1);
}
