/* SPDX-License-Identifier: Apache-2.0 */
/* train_data.h - what a training step sees, as a function of the seed, the
 * step and the data only: the order of the sequences, their crops and
 * ESM-2's masking.
 *
 * Sequence position k of the run (step t covers positions t B .. t B + B-1
 * for B sequences a step) is record perm_e[k mod n] of epoch e = k / n,
 * perm_e a Fisher-Yates shuffle drawn from (seed, e). A record longer than
 * max_residues is cropped to a window whose start is drawn from (seed, k).
 * Masking (Devlin et al.; ESM-2): each residue is a target with probability
 * 0.15 (at least one per sequence: the residue with the smallest draw);
 * a target is shown as <mask> with probability 0.8, as a random standard
 * residue (ids 4..23) with 0.1, unchanged with 0.1. Every draw is a
 * counter-based hash (splitmix64 chain) of (seed, step, k, residue, stream),
 * so a micro-batch does not depend on which rank or thread builds it. */
#ifndef PQ_TRAIN_DATA_H
#define PQ_TRAIN_DATA_H

#include <stdint.h>

#include "base/pq_err.h"
#include "model/fasta.h"
#include "train/esm2_grad.h"

typedef struct pq_train_data {
    const pq_fasta_record *recs; /* borrowed */
    int64_t n_recs;
    uint64_t seed;
    int64_t max_residues;
    /* cache: the permutation of one epoch */
    int64_t *perm;
    int64_t perm_epoch;
} pq_train_data;

/* Set up over recs (borrowed; they must outlive d). */
pq_status pq_train_data_init(pq_train_data *d, const pq_fasta_record *recs, int64_t n_recs, uint64_t seed,
                             int64_t max_residues);
void pq_train_data_fini(pq_train_data *d);

/* Uniform in [0, 1) from (seed, a, b, c, stream). */
double pq_train_uniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t stream);

/* A micro-batch: arrays owned, tb points into them. */
typedef struct pq_train_mb {
    pq_train_batch tb;
    int64_t *offsets, *tgt_pos;
    int32_t *ids, *tgt_id;
} pq_train_mb;

/* Build the sequences at positions [k0, k0 + n) of step `step` (0-based)
 * into *mb (its arrays reallocated). Errors: PQ_ERR_RESOURCE. */
pq_status pq_train_data_batch(pq_train_data *d, int64_t step, int64_t k0, int64_t n, pq_train_mb *mb);
void pq_train_mb_free(pq_train_mb *mb);

#endif
