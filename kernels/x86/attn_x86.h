/* SPDX-License-Identifier: Apache-2.0 */
/* attn_x86.h - the AVX-512F pieces the fp32 and bf16 fused attention kernels
 * share (kernels/x86/attn_avx512.c; include only where AVX-512F is on). */
#ifndef PQ_ATTN_X86_H
#define PQ_ATTN_X86_H

#include <immintrin.h>
#include <stdint.h>

/* y[0..hd) = split-half rotation of x scaled by s, the products and sums of
 * pq_rotary_ref. */
void pq_attn_rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y);

/* In place: softmax of x[0..T), probabilities times 1/sum; x[T..Tp) (Tp a
 * multiple of 16) set to 0. */
void pq_attn_softmax_row(float *x, int64_t T, int64_t Tp);

#define RB 12 /* query rows per block */
#define PF 8  /* rows of q, k and v fetched ahead (their stride defeats the prefetchers) */

/* A block's RB x 32 sums: a<r>_0, a<r>_1 for row r (named registers: GCC
 * keeps an array of them on the stack). */
#define BLOCK_ACCS                                                                                     \
    const __m512 z = _mm512_setzero_ps();                                                          \
    __m512 a0_0 = z, a0_1 = z, a1_0 = z, a1_1 = z, a2_0 = z, a2_1 = z, a3_0 = z, a3_1 = z, a4_0 = z, \
           a4_1 = z, a5_0 = z, a5_1 = z, a6_0 = z, a6_1 = z, a7_0 = z, a7_1 = z, a8_0 = z, a8_1 = z, \
           a9_0 = z, a9_1 = z, a10_0 = z, a10_1 = z, a11_0 = z, a11_1 = z
#define BLOCK_ACC_ARRAY                                                                                \
    {{a0_0, a0_1}, {a1_0, a1_1}, {a2_0, a2_1}, {a3_0, a3_1}, {a4_0, a4_1},   {a5_0, a5_1},             \
     {a6_0, a6_1}, {a7_0, a7_1}, {a8_0, a8_1}, {a9_0, a9_1}, {a10_0, a10_1}, {a11_0, a11_1}}
/* Into cache: the hd floats at a + off, b + off and c + off (b, c: NULL
 * for none). */
static inline void pq_attn_prefetch_rows(const float *a, const float *b, const float *c, int64_t off, int hd)
{
    for (int d = 0; d < hd; d += 16) {
        _mm_prefetch((const char *)(a + off + d), _MM_HINT_T0);
        if (b) _mm_prefetch((const char *)(b + off + d), _MM_HINT_T0);
        if (c) _mm_prefetch((const char *)(c + off + d), _MM_HINT_T0);
    }
}

/* Masks of the 2 vectors of 16 lanes that cover w <= 32 columns. */
static inline void pq_attn_col_masks(int w, __mmask16 *m0, __mmask16 *m1)
{
    *m0 = w >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << w) - 1u);
    *m1 = w >= 32 ? (__mmask16)0xffff : w > 16 ? (__mmask16)((1u << (w - 16)) - 1u) : 0;
}

/* Rows 0 .. nr-1 of a block's sums into y (row stride ld): 32 columns, the
 * lanes m0 and m1 select. */
static inline void pq_attn_store_block(const __m512 acc[RB][2], int nr, float *y, int64_t ld, __mmask16 m0,
                                       __mmask16 m1)
{
    for (int r = 0; r < nr; r++) {
        _mm512_mask_storeu_ps(y + r * ld, m0, acc[r][0]);
        _mm512_mask_storeu_ps(y + r * ld + 16, m1, acc[r][1]);
    }
}

#endif
