/* SPDX-License-Identifier: Apache-2.0 */
/* compare_ref.h - the reference's side of a comparison kept across runs
 * (eval/compare.h, pq_eval_compare_opts.ref_cache): the reference model,
 * loaded once, and per evaluated sequence (by input index) its masked-pass
 * tallies and calibration, its unmasked logits and its mean-pooled final
 * embedding. A run against the same FASTA, settings and reference takes
 * these instead of running the reference again, with the same numbers:
 * quantize's fallback compares every attempt with it (one reference pass
 * per run). Memory: 4 x (vocabulary x tokens + embed_dim x sequences)
 * bytes. */
#ifndef PQ_EVAL_COMPARE_REF_H
#define PQ_EVAL_COMPARE_REF_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "eval/eval_metrics.h"
#include "model/esm2_model.h"

/* One sequence's reference results; logits [n_tokens x vocabulary] and
 * pool [embed_dim] point into the cache. */
typedef struct pq_eval_ref_seq {
    pq_eval_mlm mlm;
    pq_eval_calib cal;
    int64_t n_tokens;
    const float *logits, *pool;
} pq_eval_ref_seq;

typedef struct pq_eval_ref pq_eval_ref;

/* An empty cache. */
pq_status pq_eval_ref_new(pq_eval_ref **out);
void pq_eval_ref_free(pq_eval_ref *c); /* NULL is fine; frees the model too */

/* The reference model held by the cache, NULL until pq_eval_ref_set_model. */
pq_esm2_model *pq_eval_ref_model(pq_eval_ref *c);
void pq_eval_ref_set_model(pq_eval_ref *c, pq_esm2_model *m); /* the cache owns m */

/* Sequence `index` into *out; false when the cache does not hold both of
 * its passes. */
bool pq_eval_ref_get(const pq_eval_ref *c, int64_t index, pq_eval_ref_seq *out);

/* Keep sequence `index`'s unmasked pass (copies logits [T x V] and pool
 * [D]), then its masked pass; a sequence already held is left as it is. */
pq_status pq_eval_ref_put(pq_eval_ref *c, int64_t index, const float *logits, int64_t T, int V, const float *pool,
                          int64_t D);
void pq_eval_ref_put_masked(pq_eval_ref *c, int64_t index, const pq_eval_mlm *mlm, const pq_eval_calib *cal);

#endif
