/* SPDX-License-Identifier: Apache-2.0 */
/* embed.h - the embedding loop: per-sequence (and per-residue) ESM-2
 * representations of a set of sequences, batch by batch, handed to a sink
 * (eval/embed_h5.h writes them to HDF5; a Python binding can take arrays).
 * Never prints. */
#ifndef PQ_EVAL_EMBED_H
#define PQ_EVAL_EMBED_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "model/esm2_model.h"
#include "model/fasta.h"

#define PQ_EVAL_MAX_LAYERS 64

/* Layer indices as a user gives them (0 = embeddings, L = after the final
 * LayerNorm, negative counting from L + 1) resolved for a model of L layers
 * into resolved[0..n). PQ_ERR_CONFIG naming the index when one is outside
 * -(L+1)..L or two name the same layer. */
pq_status pq_eval_embed_layers(const int *req, int n, int L, int *resolved);

/* Called for every sequence `seq` (record index) and requested layer
 * `layer_index` (position in the request): mean[D], the mean over its
 * n_res residues (<cls> and <eos> excluded), and rows[n_res, D], the
 * residues' rows. Both borrowed for the call. Non-PQ_OK stops the loop
 * with that status. */
typedef pq_status (*pq_eval_embed_sink)(void *user, int64_t seq, int layer_index, const float *mean,
                                        const float *rows, int64_t n_res, int64_t D);

typedef struct pq_eval_embed_opts {
    const int *layers;     /* resolved layer indices (pq_eval_embed_layers) */
    int n_layers;          /* 1..PQ_EVAL_MAX_LAYERS */
    int64_t batch_tokens;  /* tokens per forward batch (at least 3) */
} pq_eval_embed_opts;

/* Called with every forward batch: the packed batch (np sequences, the
 * first at recs[pk->first]) and the forward's outputs, borrowed. */
struct pq_packed;
typedef pq_status (*pq_eval_batch_fn)(void *user, const struct pq_packed *pk, int64_t np,
                                      const pq_esm2_outputs *out);

/* Run m over recs[0..n_recs) in batches of at most batch_tokens tokens,
 * asking for the representations of layers[0..n_layers) (resolved) and,
 * when contacts, the contact maps, and hand every batch to fn. */
pq_status pq_eval_embed_batches(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs, const int *layers,
                                int n_layers, bool contacts, int64_t batch_tokens, pq_eval_batch_fn fn, void *user);

/* Run m (borrowed) over recs[0..n_recs) and hand every sequence's
 * representations to sink, in record order. */
pq_status pq_eval_embed(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs,
                        const pq_eval_embed_opts *o, pq_eval_embed_sink sink, void *user);

#endif
