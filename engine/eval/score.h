/* SPDX-License-Identifier: Apache-2.0 */
/* score.h - the masked-LM loop: a model's masked-language-model tallies on
 * a set of sequences under the deterministic masking of model/batch.h
 * (pq_mask_sequence), batch by batch. Never prints. */
#ifndef PQ_EVAL_SCORE_H
#define PQ_EVAL_SCORE_H

#include <stdint.h>

#include "base/pq_err.h"
#include "eval/eval_metrics.h"
#include "model/batch.h"
#include "model/esm2_model.h"
#include "model/fasta.h"

/* Mask the n_seqs sequences of the packed batch p in place (sequence s is
 * record p->first + s, drawn with (seed, that index)), and put the true id
 * of each masked position, -1 elsewhere, into *orig, grown to the batch's
 * tokens (owned by the caller, free()). PQ_ERR_RESOURCE when out of memory. */
pq_status pq_eval_mask_batch(pq_packed *p, int64_t n_seqs, uint64_t seed, double frac, int32_t **orig);

typedef struct pq_eval_score_opts {
    uint64_t seed;        /* masking seed */
    double mask_frac;     /* masking probability, in (0, 1) */
    int64_t batch_tokens; /* tokens per forward batch (at least 3) */
} pq_eval_score_opts;

/* Run m (borrowed) on the masked recs[0..n_recs) (record i masked by its
 * input position recs[i].index) and add each sequence's
 * tallies into per_seq[i] (zeroed by the caller); *n_tokens: the tokens run.
 * The numbers do not depend on batch_tokens or the thread count. */
pq_status pq_eval_score(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs,
                        const pq_eval_score_opts *o, pq_eval_mlm *per_seq, int64_t *n_tokens);

#endif
