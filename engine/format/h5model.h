/* SPDX-License-Identifier: Apache-2.0 */
/* h5model.h - the consolidated Proteus HDF5 model (docs/FORMAT.md, version 5):
 * a streaming writer (OUT.partial, renamed when complete) and a validating
 * reader. */
#ifndef PQ_H5MODEL_H
#define PQ_H5MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/dtype.h"
#include "format/digest.h"
#include "format/esm2.h"
#include "base/pq_err.h"
#include "quant/qspec.h"
#include "quant/qtensor.h"

#define PQ_FORMAT_NAME "proteus.quantized"
#define PQ_FORMAT_VERSION 5
/* The oldest version the reader accepts: versions 1 and 2 keep their strings
 * in HDF5's unchecked global heap and carry no checksums; they are refused
 * with a word to quantize again. Version 3 is version 4 without the /recipe
 * table (each tensor's own attributes say the same), version 4 is version 5
 * with a SHA-256 source digest under source_sha256_tree: both are read. */
#define PQ_FORMAT_VERSION_MIN 3

/* Root attributes and /config. Strings are borrowed by the writer (copied
 * into the file); owned by the reader object when read back. */
typedef struct pq_h5_meta {
    const char *architecture;   /* "esm2_t6_8M_UR50D" or "esm2_custom" */
    const char *model_name;     /* basename of the source checkpoint */
    const char *source_sha256;  /* hex: the source's tree digest in
                                 * source_digest_alg (source_digest_tree;
                                 * source_sha256_tree before version 5); a
                                 * plain SHA-256 (source_sha256) where the
                                 * chunk size is 0 */
    pq_digest_alg source_digest_alg; /* its hash (zero: SHA-256) */
    int64_t source_hash_chunk_bytes; /* the digest's chunk size; 0: plain
                                 * SHA-256 (a version-1 digest, reader only) */
    int format_version;         /* reader only: the file's version */
    const char *created_by;     /* "proteus 0.1.0" */
    const char *config_json;    /* the resolved quantization config */
    int num_ranks;
    pq_esm2_config cfg;         /* written as /config attrs */
} pq_h5_meta;

typedef struct pq_h5w pq_h5w;

/* Create final_path + ".partial" (truncating a stale one). Returns owned *out.
 * Writes source_digest_algorithm, source_digest_tree and
 * source_hash_chunk_bytes from meta (a chunk size of 0, i.e. a version-1
 * plain hash read back, is kept as source_sha256); with meta->source_sha256
 * NULL, pq_h5w_set_source_digest writes them before the commit instead (the
 * digest is gathered from several ranks). */
pq_status pq_h5w_create(const char *final_path, const pq_h5_meta *meta, pq_h5w **out);
pq_status pq_h5w_set_source_digest(pq_h5w *w, pq_digest_alg alg, const char *hex, int64_t chunk_bytes);

/* /tensors/<name>/data as float32, or float16 (RNE) when as_fp16. */
pq_status pq_h5w_put_float(pq_h5w *w, const char *name, int ndim, const int64_t *shape,
                           const float *data, bool as_fp16);

/* Quantized tensors are written in row blocks: begin creates qweight, scale
 * (and zero_point when asymmetric) with their full shapes, their file space
 * allocated at once, and the attrs bits, scheme, granularity, group_size,
 * symmetric, method; rows() writes a block (codes: code_row_bytes * n_rows
 * bytes; scale/zp: the block's rows, or the single tensor-wide value,
 * written when row0 == 0); end() records the metrics under /metrics/<name>.
 *
 * codes NULL in rows() means another process on this machine has already
 * written the block's codes into the .partial file at
 * pq_h5w_codes_offset() + row0 * code_row_bytes (HDF5 never touches the
 * codes' bytes itself: they are written with pwrite, so no HDF5 cache can
 * hold stale copies of them). */
pq_status pq_h5w_quant_begin(pq_h5w *w, const char *name, const pq_qspec *spec,
                             int64_t rows, int64_t cols, const char *scheme,
                             const char *method);
pq_status pq_h5w_quant_rows(pq_h5w *w, const char *name, int64_t row0, int64_t n_rows,
                            const void *codes, const float *scale, const int32_t *zp);
pq_status pq_h5w_quant_end(pq_h5w *w, const char *name, const pq_qmetrics *m);

/* File offset of a begun tensor's qweight bytes (row-major, code_row_bytes
 * per row); 0 for an empty tensor. */
pq_status pq_h5w_codes_offset(pq_h5w *w, const char *name, uint64_t *offset);

/* The .partial file's path (valid until commit or abort). */
const char *pq_h5w_partial_path(const pq_h5w *w);

/* Convenience: begin + one rows() for the whole tensor + end. */
pq_status pq_h5w_put_qtensor(pq_h5w *w, const char *name, const pq_qtensor *qt,
                             const char *scheme, const char *method);

/* Static input (activation) quantization of a tensor already written:
 * act_scale float32 [1] and, when zp is not NULL, act_zero_point int32 [1]. */
pq_status pq_h5w_put_act_qparams(pq_h5w *w, const char *name, float scale,
                                 const int32_t *zp);

/* /provenance attrs (string values). */
pq_status pq_h5w_provenance(pq_h5w *w, const char *key, const char *value);

/* Once every dataset is created: reserve the file's blocks up to its end of
 * allocation, so that a full disk fails the run now rather than at the end,
 * and the codes' writes (by every rank on this machine) skip the file
 * system's delayed allocation. PQ_ERR_IO when the device lacks the space;
 * a file system that cannot preallocate is not an error. */
pq_status pq_h5w_preallocate(pq_h5w *w);

/* Ask the kernel to start writing the file's dirty pages to disk now (a
 * hint, never fails), so that the commit's fsync has less left to wait for.
 * HDF5's own caches are not flushed. */
void pq_h5w_start_writeback(pq_h5w *w);

/* Close and atomically rename .partial to the final path; frees w. */
pq_status pq_h5w_commit(pq_h5w *w);
/* Close and delete the .partial file; frees w. NULL is fine. */
void pq_h5w_abort(pq_h5w *w);
/* Close and keep the .partial file as it is (a stopped run whose resume
 * journal names its codes); frees w. NULL is fine. */
void pq_h5w_close_keep(pq_h5w *w);

/* A tensor's entry in the /recipe table: "fp32" or "fp16" for a float
 * tensor, else "int<bits> <granularity>[ <group_size>] symmetric|asymmetric
 * <method>" (an empty method reads "rtn"), e.g. "int4 group 64 symmetric
 * gptq". The writer records it for every tensor it writes. */
void pq_h5_recipe_text(char *buf, size_t n, bool quantized, const pq_qspec *s, const char *method, bool fp16);

/* ---- reader ---- */

typedef struct pq_h5r_entry {
    char *name;
    bool quantized;
    int ndim;
    int64_t shape[PQ_MAX_DIMS];  /* logical [out, in] for quantized tensors */
    pq_dtype stored_dtype;       /* F32/F16 for float, I8/U8 for codes */
    pq_qspec spec;               /* quantized only */
    char scheme[32], method[32]; /* quantized only */
    bool has_metrics;
    bool has_act_scale;          /* static activation quantization present */
    char recipe[96];             /* pq_h5_recipe_text of the tensor (checked against
                                  * /recipe from format version 4) */
} pq_h5r_entry;

typedef struct pq_h5r pq_h5r;

/* Open and validate format name/version, /config and every tensor group
 * (dtypes, shapes and Fletcher-32 filter of qweight/scale/zero_point
 * consistent with the attrs). PQ_ERR_FORMAT naming the dataset otherwise.
 * Reads verify each dataset's Fletcher-32 checksum (PQ_ERR_FORMAT naming the
 * dataset when it does not match) and the scales and zero points. */
pq_status pq_h5r_open(const char *path, pq_h5r **out);
/* Skip (verify false) or restore the data checksum check of later reads;
 * the metadata's checksums are always verified. */
pq_status pq_h5r_set_verify(pq_h5r *r, bool verify);
/* OpenMP threads that check the checksum of a large chunk of codes (<= 0,
 * the default: the OpenMP default). */
void pq_h5r_set_threads(pq_h5r *r, int n_threads);
/* NULL is fine. Invalidates every pointer obtained from r. */
void pq_h5r_close(pq_h5r *r);

/* Borrowed from r. Entries are sorted by name (strcmp); get() returns NULL
 * out of range, find() NULL when absent. */
const pq_h5_meta *pq_h5r_meta(const pq_h5r *r);
int64_t pq_h5r_count(const pq_h5r *r);
const pq_h5r_entry *pq_h5r_get(const pq_h5r *r, int64_t i);
const pq_h5r_entry *pq_h5r_find(const pq_h5r *r, const char *name);

/* Float tensor (converted to fp32), or a quantized one dequantized; dst
 * holds the product of e->shape. */
pq_status pq_h5r_read_f32(pq_h5r *r, const pq_h5r_entry *e, float *dst);
/* Quantized tensor into a freshly allocated qtensor (pq_qtensor_free), with
 * its metrics when recorded. On failure qt is left empty. */
pq_status pq_h5r_read_qtensor(pq_h5r *r, const pq_h5r_entry *e, pq_qtensor *qt);
/* The same, except that the codes may be a read-only mapping of the file
 * (qt->codes_map; pq_qtensor_free unmaps it), checked before it returns:
 * no copy of them is made. Where mapping fails (a file system without mmap)
 * they are read as pq_h5r_read_qtensor reads them. The codes must not be
 * written. */
pq_status pq_h5r_map_qtensor(pq_h5r *r, const pq_h5r_entry *e, pq_qtensor *qt);
/* /metrics/<name>; PQ_ERR_FORMAT when none was recorded. */
pq_status pq_h5r_read_metrics(pq_h5r *r, const char *name, pq_qmetrics *m);
/* Static input qparams of quantized tensor `name` in the file at path
 * (h5act.c): act_scale into *scale and act_zero_point into *zp (0 when
 * absent); *found = false (PQ_OK) when the tensor stores no act_scale. */
pq_status pq_h5_read_act_qparams(const char *path, const char *name, float *scale, int32_t *zp,
                                 bool *found);
/* Read every tensor's datasets once (their checksums verified, scales and
 * zero points checked) and its metrics: the whole file's check, for
 * inspect. The first failure is returned, naming the dataset. */
pq_status pq_h5r_verify_data(pq_h5r *r);
/* Read a /provenance attr; returns owned string in *value (free()) or NULL. */
pq_status pq_h5r_provenance(pq_h5r *r, const char *key, char **value);

#endif
