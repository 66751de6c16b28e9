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

/* Masks of the 4 vectors of 16 lanes that cover w <= 64 columns. */
static inline void pq_attn_col_masks(int w, __mmask16 mk[4])
{
    for (int x = 0; x < 4; x++) {
        int n = w - 16 * x;
        mk[x] = n >= 16 ? (__mmask16)0xffff : n > 0 ? (__mmask16)((1u << n) - 1u) : 0;
    }
}

/* Rows 0 .. nr-1 of the 4 x 4 accumulators into o (row stride ldo) at
 * column h0, the lanes mk selects. */
static inline void pq_attn_store_rows(const __m512 acc[4][4], int nr, const __mmask16 mk[4], float *o,
                                      int64_t ldo, int h0)
{
    for (int r = 0; r < nr; r++) {
        float *or_ = o + r * ldo + h0;
        for (int x = 0; x < 4; x++)
            if (mk[x]) _mm512_mask_storeu_ps(or_ + 16 * x, mk[x], acc[r][x]);
    }
}

#endif
