/* SPDX-License-Identifier: Apache-2.0 */
/* attn_x86.h - the AVX-512F pieces the fp32 and bf16 fused attention kernels
 * share (kernels/x86/attn_avx512.c). */
#ifndef PQ_ATTN_X86_H
#define PQ_ATTN_X86_H

#include <stdint.h>

/* y[0..hd) = split-half rotation of x scaled by s, the products and sums of
 * pq_rotary_ref. */
void pq_attn_rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y);

/* In place: softmax of x[0..T), probabilities times 1/sum; x[T..Tp) (Tp a
 * multiple of 16) set to 0. */
void pq_attn_softmax_row(float *x, int64_t T, int64_t Tp);

#endif
