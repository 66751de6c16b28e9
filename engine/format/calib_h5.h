/* SPDX-License-Identifier: Apache-2.0 */
/* calib_h5.h - the calibration store: merged activation statistics in HDF5,
 * either as a file of their own (`proteus calibrate --out calib.h5`) or as
 * the /calibration group of a quantized model (docs/FORMAT.md).
 *
 * /calibration attrs: grid ("ieee754-binary32 sign|exponent|top 8 mantissa
 *   bits"), hist_mbits, num_layers, embed_dim, ffn_dim, model_sha256_tree
 *   (the model's tree digest, st_hash.h),
 *   model_path, datasets, n_sequences, n_skipped
 * /calibration/<site> attrs: layer, kind, dim, min, max (float32), count,
 *   n_nan, n_posinf, n_neginf, n_tokens; datasets chan_absmax float32 [dim],
 *   hist_bin uint32 [nnz] (fp32 bit pattern >> (23 - hist_mbits), ascending),
 *   hist_count uint64 [nnz] (non-zero counts only)
 * A standalone file also carries root attrs format="proteus.calibration",
 * format_version=4, created_by. Strings are fixed-length, every non-empty
 * dataset one chunk with the Fletcher-32 checksum, the file's format bounds
 * those of the model (docs/FORMAT.md). Object time stamps are off: equal
 * statistics give equal bytes. */
#ifndef PQ_CALIB_H5_H
#define PQ_CALIB_H5_H

#include "calib/calib_stats.h"
#include "format/h5model.h"
#include "base/pq_err.h"

#define PQ_CALIB_FORMAT_NAME "proteus.calibration"
#define PQ_CALIB_FORMAT_VERSION 4 /* 4: fixed-length strings, checksums (3:
                                   * model_sha256_tree; 2: plain model_sha256;
                                   * 1: a 12-bit mantissa grid) */

/* Write c (borrowed) to path: path.partial first, renamed when complete. */
pq_status pq_calib_h5_save(const char *path, const pq_calib *c, const char *created_by);

/* Add /calibration to a model being written (before pq_h5w_commit). */
pq_status pq_calib_h5_put(pq_h5w *w, const pq_calib *c);

/* Read the /calibration group of path (a calibration file or a quantized
 * model holding one). Every size, index and count is validated:
 * PQ_ERR_FORMAT naming the site and field otherwise. Returns owned *out. */
pq_status pq_calib_h5_load(const char *path, pq_calib **out);

#endif
