/* SPDX-License-Identifier: Apache-2.0 */
/* score_chunk.h - one chunk of records through the masked-LM loop
 * (eval/score.h), its per-sequence tallies encoded as the bytes that travel
 * to rank 0 and into the journal (pipeline/journal.h), and the tallies
 * read back from the journal and written as HDF5:
 *   /ids        [n_seq] record ids (strings)
 *   /lengths    [n_seq] residues scored (after cropping)
 *   /n_masked   [n_seq] masked positions
 *   /n_correct  [n_seq] of them predicted (argmax over all logits)
 *   /nll        [n_seq] sum of -log p(true token) over them (float64)
 * root attributes seed, mask_frac. Never prints. */
#ifndef PQ_EVAL_SCORE_CHUNK_H
#define PQ_EVAL_SCORE_CHUNK_H

#include "eval/infer_buf.h"
#include "eval/score.h"
#include "pipeline/journal.h"

/* Append, per record of recs[0..n) in order: id, residues, n_masked,
 * n_correct (int64) and nll (float64). *n_tokens: the tokens run. */
pq_status pq_score_chunk_run(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n,
                             const pq_eval_score_opts *o, pq_buf *out, int64_t *n_tokens);

typedef struct pq_score_table {
    int64_t n;
    char **ids;
    int64_t *lengths;
    pq_eval_mlm *mlm;
} pq_score_table;

/* Every record of the journal's blocks (chunks), in order, into *t
 * (pq_score_table_free). */
pq_status pq_score_chunk_read(pq_journal *j, pq_score_table *t);
void pq_score_table_free(pq_score_table *t);

/* Write t as OUT (through OUT.partial). */
pq_status pq_score_table_write(const pq_score_table *t, const pq_eval_score_opts *o, const char *out);

#endif
