/* SPDX-License-Identifier: Apache-2.0 */
/* batch.h - packing FASTA records into packed forward batches by a token
 * budget, and the deterministic masking used by masked-LM scoring. */
#ifndef PQ_BATCH_H
#define PQ_BATCH_H

#include <stdint.h>

#include "model/esm2_model.h"
#include "model/fasta.h"
#include "base/pq_err.h"

typedef struct pq_packed {
    pq_esm2_batch batch;   /* points into the arrays below */
    int64_t first;         /* index of the first record in the batch */
    int64_t *offsets;      /* owned, [n_seqs + 1] */
    int32_t *ids;          /* owned, [n_tokens] (a copy: callers may mask it) */
} pq_packed;

/* Pack records [start, ...) while the total stays within max_tokens (at
 * least one record always). Returns the number packed in *n_packed; the
 * arrays of *p are (re)allocated and owned by p (pq_packed_free). */
pq_status pq_pack_records(const pq_fasta_record *recs, int64_t n_recs, int64_t start,
                          int64_t max_tokens, pq_packed *p, int64_t *n_packed);
void pq_packed_free(pq_packed *p);

/* Uniform in [0, 1) from (seed, sequence index, residue position): a
 * splitmix64 chain, the same on every machine and thread count. */
double pq_mask_uniform(uint64_t seed, uint64_t seq_index, uint64_t pos);

/* Mask residues of ids[0..n_ids) (<cls> ... <eos>) in place: residue i
 * (0-based) is masked when pq_mask_uniform(seed, seq_index, i) < frac; when
 * none qualifies the residue with the smallest draw is masked. The original
 * id of every masked position goes to orig (same length as ids, -1 for
 * unmasked). Returns the number masked. */
int64_t pq_mask_sequence(int32_t *ids, int64_t n_ids, uint64_t seed, uint64_t seq_index, double frac,
                         int32_t *orig);

#endif
