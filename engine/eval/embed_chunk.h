/* SPDX-License-Identifier: Apache-2.0 */
/* embed_chunk.h - one chunk of records through the embedding forward, its
 * results encoded as the bytes that travel to rank 0 and into the journal
 * (pipeline/journal.h: one block per chunk), and the HDF5 output assembled
 * from the journal
 * (eval/embed_h5.h) once every chunk is in. Never prints. */
#ifndef PQ_EVAL_EMBED_CHUNK_H
#define PQ_EVAL_EMBED_CHUNK_H

#include <stdbool.h>
#include <stdint.h>

#include "eval/embed.h"
#include "eval/infer_buf.h"
#include "pipeline/journal.h"

typedef struct pq_embed_want {
    const int *layers;    /* resolved layer indices */
    int n_layers;
    bool per_tok;         /* /layer_<i>/tokens */
    bool bos;             /* /layer_<i>/bos: the <cls> row */
    bool contacts;        /* /contacts from the contact head */
    int64_t batch_tokens; /* tokens per forward batch */
} pq_embed_want;

/* Run recs[0..n) through m and append, per record in order: the id, the
 * residues n_res, then per layer the mean [D], the bos row [D] (bos) and
 * the residue rows [n_res, D] (per_tok), then the contact map
 * [n_res, n_res] (contacts). A record's bytes do not depend on the other
 * records of its batch. */
pq_status pq_embed_chunk_run(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n,
                             const pq_embed_want *w, pq_buf *out);

/* Write OUT (through OUT.partial, eval/embed_h5.h) from the journal's
 * blocks (chunks) in order; *n_seq and *n_res: the sequences and residues
 * written. */
pq_status pq_embed_chunk_assemble(pq_journal *j, const char *out, const pq_esm2_config *cfg,
                                  const pq_embed_want *w, int64_t *n_seq, int64_t *n_res);

#endif
