/* SPDX-License-Identifier: Apache-2.0 */
/* attn_grad.h - ESM-2 self-attention on a packed batch (q scaled by
 * hd^-0.5, split-half rotary on q and k, softmax over the sequence's own
 * keys; docs/esm2.md 3.2) with the probabilities kept, and its backward. */
#ifndef PQ_ATTN_GRAD_H
#define PQ_ATTN_GRAD_H

#include <stdint.h>

#include "base/pq_err.h"

typedef struct pq_attn_shape {
    int64_t n_seqs;
    const int64_t *offsets; /* [n_seqs + 1] token offsets (packed batch) */
    int n_heads, head_dim;
    int64_t max_T;          /* longest sequence */
    const float *cos_t, *sin_t; /* [max_T, head_dim/2] (pq_rotary_table) */
    float qscale;           /* head_dim^-0.5 */
    int n_threads;
} pq_attn_shape;

/* Floats of the probabilities of one layer: sum over sequences of
 * n_heads T^2; poff[s] (n_seqs + 1 entries) gets each sequence's start. */
int64_t pq_attn_prob_floats(const pq_attn_shape *a, int64_t *poff);

/* In place on qkv [N, 3D] (rows q | k | v, after their Linear): q scaled
 * and rotated, k rotated; then per (sequence, head) P = softmax(q k^T)
 * stored at P + poff[s] + h T^2, and o[N, D] = P v. Errors: pq_sgemm's. */
pq_status pq_attn_fwd(const pq_attn_shape *a, float *qkv, float *P, const int64_t *poff, float *o);

/* Backward from do_[N, D], with the forward's qkv (as it left them) and P:
 * dqkv [N, 3D] gets the gradients of the q, k, v Linear outputs (before
 * the scale and rotation). scratch holds n_threads max_T^2 floats. Each
 * (sequence, head) writes its own slices: the same bits for any thread
 * count. Errors: pq_sgemm's. */
pq_status pq_attn_bwd(const pq_attn_shape *a, const float *qkv, const float *P, const int64_t *poff,
                      const float *do_, float *dqkv, float *scratch);

/* Split-half rotation of n_tokens rows (stride ld) of one head of hd dims:
 * y1 = x1 c - x2 s, y2 = x2 c + x1 s. inverse != 0 applies the transpose
 * (the backward of the rotation). */
void pq_rotary_apply_ref(float *x, int64_t n_tokens, int64_t ld, int hd, const float *cos_t,
                         const float *sin_t, int inverse);

#endif
