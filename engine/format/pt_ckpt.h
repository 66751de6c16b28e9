/* SPDX-License-Identifier: Apache-2.0 */
/* pt_ckpt.h - the tensor table of a PyTorch checkpoint (a fair-esm .pt, a
 * pytorch_model.bin or one of its shards), in torch.save's zip format or its
 * legacy format (PyTorch before 1.6, or _use_new_zipfile_serialization=False).
 *
 * The state dict is the top-level dict, or its "model" / "state_dict" entry
 * when it has one (fair-esm's {"model": ..., "args"/"cfg": ...}); every value
 * in it must be a contiguous tensor built by torch._utils._rebuild_tensor_v2
 * over a storage of the file (a stored zip entry, or a storage of the legacy
 * format's data area). Each tensor's bytes are a range of the file, so the
 * table has the same form as a safetensors file's (pq_st_tensor) and the
 * bytes are read in place. Nothing in the pickle is executed (pt_pickle.h). */
#ifndef PQ_PT_CKPT_H
#define PQ_PT_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "format/safetensors.h"

/* True when map[0..n) is a zip file (torch.save's format since 1.6). */
bool pq_pt_is_zip(const unsigned char *map, size_t n);

/* True when `path` ends in a PyTorch checkpoint extension (.pt .pth .bin
 * .ckpt) and map starts with a pickle protocol opcode: presumably the legacy
 * torch.save format (pq_pt_read checks its magic number). */
bool pq_pt_is_legacy(const char *path, const unsigned char *map, size_t n);

/* The tensors of the checkpoint map[0..n) (zip or legacy; named `fname`, shard
 * `file_idx`) with the names they have in the file: *out (owned, each name
 * owned; free with pq_pt_free_tensors) holds *n_out of them, in file order. */
pq_status pq_pt_read(const char *fname, const unsigned char *map, size_t n, int file_idx, pq_st_tensor **out,
                     int64_t *n_out);
void pq_pt_free_tensors(pq_st_tensor *t, int64_t n);

/* Rename a table to the Hugging Face ESM names: when no name starts with
 * "esm.", names are fair-esm's (fair-esm's own upgrade strips a leading
 * "encoder.sentence_encoder." or "encoder.") and each known one becomes its
 * Hugging Face name (transformers' convert_esm.py correspondence: q_proj ->
 * attention.self.query, rot_emb.inv_freq -> rotary_embeddings.inv_freq,
 * lm_head.weight -> lm_head.decoder.weight, ...). Unknown names stay as
 * they are, so that errors name what the file holds. Then a
 * lm_head.decoder.weight that is the embedding's own bytes (tied: one
 * storage, as fair-esm and transformers save it) is dropped from the table,
 * as a tied checkpoint is in safetensors; *n shrinks by one. */
pq_status pq_pt_map_names(pq_st_tensor *t, int64_t *n);

#endif
