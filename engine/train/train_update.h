/* SPDX-License-Identifier: Apache-2.0 */
/* train_update.h - the update of a training step (the LSQ backward,
 * clipping of the global gradient norm, AdamW) over a fixed decomposition
 * of the parameters into chunks, so that processes can each update a
 * contiguous run of chunks and still produce the bits one process does.
 *
 * A chunk is whole rows of one tensor, about PQ_TRAIN_CHUNK floats (one
 * row when a row is longer), together with the LSQ steps of those rows:
 * the chunks depend on the model's shapes only. Each chunk's squared
 * gradient norm is a double summed in index order (its weights, then its
 * steps); the global norm is the sum of the chunks' in chunk order. Every
 * other operation of the update is elementwise. So the update of chunks
 * [c0, c1) on one process and of the others elsewhere, the per-chunk
 * norms exchanged, gives the bits of pq_trainer_finish_step. */
#ifndef PQ_TRAIN_UPDATE_H
#define PQ_TRAIN_UPDATE_H

#include <stdint.h>

#include "base/pq_err.h"
#include "train/trainer.h"

#define PQ_TRAIN_CHUNK 16384

typedef struct pq_train_chunk {
    int tensor;          /* index in p->t */
    int site;            /* index in q->site, -1 when not fake-quantized */
    int64_t off, n;      /* its floats in p's layout */
    int64_t r0, r1;      /* its rows of the tensor */
    int64_t s_off, n_s;  /* its steps in q->scale (n_s = 0 without) */
} pq_train_chunk;

/* The chunks of tr's layout into tr->chunk, tr->n_chunks, tr->chunk_sq.
 * Errors: PQ_ERR_RESOURCE. */
pq_status pq_train_chunks_create(pq_trainer *tr);

/* The chunks [*c0, *c1) process rank of n_ranks updates (those starting in
 * its n_floats / n_ranks share of the layout; possibly none), and their
 * floats [*f0, *f1) and steps [*s0, *s1). */
void pq_trainer_shard(const pq_trainer *tr, int rank, int n_ranks, int64_t *c0, int64_t *c1);
void pq_trainer_shard_span(const pq_trainer *tr, int64_t c0, int64_t c1, int64_t *f0, int64_t *f1, int64_t *s0,
                           int64_t *s1);

/* PQ_ERR_ACCURACY naming step tr->step + 1 when the step's loss is not
 * finite. */
pq_status pq_trainer_check_loss(const pq_trainer *tr, double loss);

/* Chunks [c0, c1) of tr->grad (the step's summed gradient with respect to
 * the weights the forward saw): the LSQ backward (tr->dscale of their
 * steps) and tr->chunk_sq of each. */
void pq_trainer_grad_part(pq_trainer *tr, int64_t c0, int64_t c1);

/* From tr->chunk_sq of every chunk, then the input steps' gradient: the
 * clipping coefficient. PQ_ERR_ACCURACY
 * naming the step and the first tensor whose gradient is NaN or Inf. */
pq_status pq_trainer_clip_coef(const pq_trainer *tr, double *coef);

/* Chunks [c0, c1): gradients times coef, AdamW on their weights and steps
 * (steps kept >= PQ_SCALE_EPS). */
void pq_trainer_update_part(pq_trainer *tr, int64_t c0, int64_t c1, double coef);

/* The input steps of static activations (every process alike): times
 * coef, AdamW, kept >= PQ_SCALE_EPS. No-op without them. */
void pq_trainer_update_act(pq_trainer *tr, double coef);

/* Once every chunk's weights are in tr->p->data: PQ_ERR_ACCURACY naming
 * the first tensor that is not finite, else the loss on the curve and
 * step + 1. */
pq_status pq_trainer_end_step(pq_trainer *tr, double loss);

#endif
