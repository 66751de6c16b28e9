/* SPDX-License-Identifier: Apache-2.0 */
/* safetensors.h - memory-mapped Hugging Face safetensors checkpoints.
 *
 * Opens a single .safetensors file, a sharded checkpoint through its
 * model.safetensors.index.json, or a directory holding either. PyTorch
 * checkpoints (fair-esm .pt, pytorch_model.bin, sharded .bin through
 * pytorch_model.bin.index.json) open here too, read by format/pt_ckpt.h into
 * the same table: their tensors are byte ranges of the zip file. Every header
 * length, offset, shape, dtype and name is validated at open; errors are
 * PQ_ERR_FORMAT / PQ_ERR_IO with a detail naming the file and the tensor. */
#ifndef PQ_SAFETENSORS_H
#define PQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/pq_err.h"

typedef struct pq_st_tensor {
    char *name;                 /* owned by the model */
    pq_dtype dtype;
    int ndim;                   /* 0..PQ_MAX_DIMS */
    int64_t shape[PQ_MAX_DIMS];
    int64_t n_elems;
    int file_idx;               /* which shard */
    uint64_t offset;            /* absolute byte offset of the data in its file */
    size_t n_bytes;
} pq_st_tensor;

typedef struct pq_st_model pq_st_model;

/* Open and validate. `path` is a .safetensors file, an index .json, or a
 * directory containing model.safetensors or model.safetensors.index.json.
 * Returns owned *out (free with pq_st_close). Tensors are sorted by name. */
pq_status pq_st_open(const char *path, pq_st_model **out);
void pq_st_close(pq_st_model *m); /* NULL is fine */

int64_t pq_st_count(const pq_st_model *m);
const pq_st_tensor *pq_st_get(const pq_st_model *m, int64_t i);
/* NULL if absent. Binary search over sorted names. */
const pq_st_tensor *pq_st_find(const pq_st_model *m, const char *name);
/* Path of shard `file_idx` (borrowed). */
const char *pq_st_file_path(const pq_st_model *m, int file_idx);
int pq_st_file_count(const pq_st_model *m);
/* "PyTorch" when the checkpoint's files are torch.save checkpoints (read by
 * format/pt_ckpt.h, their names mapped to Hugging Face's), else
 * "safetensors". */
const char *pq_st_kind(const pq_st_model *m);
/* Sum of all shard file sizes in bytes. */
uint64_t pq_st_total_bytes(const pq_st_model *m);

/* Raw mapped bytes of a tensor (little-endian, possibly unaligned). */
const void *pq_st_data(const pq_st_model *m, const pq_st_tensor *t);

/* Read rows [row0, row0+n_rows) of the tensor viewed as 2-D
 * [shape[0], n_elems/shape[0]] (a 1-D tensor is one row... of shape [1, n];
 * a 0-D tensor is [1,1]) converted to fp32 into dst. Float dtypes only
 * (else PQ_ERR_FORMAT). */
pq_status pq_st_read_rows_f32(const pq_st_model *m, const pq_st_tensor *t,
                              int64_t row0, int64_t n_rows, float *dst);

/* Tell the kernel the tensor's pages are no longer needed (madvise
 * MADV_DONTNEED on the 2 MiB blocks of the mapping the tensor touches) so
 * streaming a large checkpoint keeps the resident set small. Neighbours'
 * pages in those blocks fault back in when used. Safe to call more than
 * once. */
void pq_st_release(const pq_st_model *m, const pq_st_tensor *t);

/* Bytes [off, off + len) of file file_idx dropped from the page cache:
 * this process's whole pages of them unmapped (a neighbour's partial page
 * may still be read), then the file's clean pages of them that no process
 * maps released (posix_fadvise DONTNEED). A hint: a file that cannot be
 * opened again is left as it is. */
void pq_st_drop_range(const pq_st_model *m, int file_idx, uint64_t off, uint64_t len);

/* Ask the kernel to start reading rows [row0, row0+n_rows) of a tensor into
 * the page cache (madvise MADV_WILLNEED), so that a cold checkpoint streams at
 * disk speed instead of one page fault at a time. A hint; never fails. */
void pq_st_prefetch(const pq_st_model *m, const pq_st_tensor *t, int64_t row0, int64_t n_rows);

/* The whole mapped content of shard `file_idx` (borrowed, read-only) and its
 * size in *n_bytes; NULL (and 0) for an index out of range. The tree digest
 * of the checkpoint (st_hash.h) hashes it. */
const void *pq_st_file_map(const pq_st_model *m, int file_idx, size_t *n_bytes);

#endif
