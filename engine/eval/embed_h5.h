/* SPDX-License-Identifier: Apache-2.0 */
/* embed_h5.h - the HDF5 file of `proteus embed`, written through
 * OUT.partial and renamed when complete:
 *   /ids                  [n_seq] record ids (strings)
 *   /lengths              [n_seq] residues embedded (after cropping)
 *   /layer_<i>/mean       [n_seq, D] mean over the residues (cls/eos excluded)
 *   /layer_<i>/tokens     [sum(lengths), D] per-residue rows (per_token)
 *   /offsets              [n_seq + 1] row offsets into tokens (per_token)
 *   /layer_<i>/bos, /contacts, /contact_offsets (pq_embed_h5_extra)
 * root attributes num_layers, embed_dim, attention_heads. */
#ifndef PQ_EVAL_EMBED_H5_H
#define PQ_EVAL_EMBED_H5_H

#include <stdbool.h>

#include "eval/embed.h"

typedef struct pq_embed_h5 pq_embed_h5;

/* Create OUT.partial with the ids, lengths (and offsets) of recs[0..n_recs)
 * (borrowed) and empty datasets for layers[0..n_layers) (resolved indices)
 * of a model of architecture cfg. PQ_ERR_IO naming the file and the step. */
pq_status pq_embed_h5_create(const char *out, const pq_fasta_record *recs, int64_t n_recs, const int *layers,
                             int n_layers, const pq_esm2_config *cfg, bool per_token, pq_embed_h5 **w);

/* A pq_eval_embed_sink; user is the pq_embed_h5. */
pq_status pq_embed_h5_sink(void *user, int64_t seq, int layer_index, const float *mean, const float *rows,
                           int64_t n_res, int64_t D);

/* Optional datasets, each in a slot: slot i (a position in the layers)
 * /layer_<layer>/<name> [rows, D] (the bos rows), and slot n_layers
 * /contacts [off[n_seq]] (each sequence's [n_res, n_res] map, row-major,
 * at off[s]) with /contact_offsets [n_seq + 1]. extra_write puts n rows
 * (n values for /contacts) from row0. */
pq_status pq_embed_h5_extra(pq_embed_h5 *w, int slot, const char *name, int layer, int64_t rows, int64_t D);
pq_status pq_embed_h5_contacts(pq_embed_h5 *w, int slot, const int64_t *off, int64_t n_seq);
pq_status pq_embed_h5_extra_write(pq_embed_h5 *w, int slot, int64_t row0, int64_t n, const float *data);

/* Close the file and rename it to OUT. */
pq_status pq_embed_h5_finish(pq_embed_h5 *w);

/* Free w (NULL is fine); removes OUT.partial unless finished. */
void pq_embed_h5_destroy(pq_embed_h5 *w);

#endif
