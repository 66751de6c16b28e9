/* SPDX-License-Identifier: Apache-2.0 */
/* proteus.h - the public library API of Proteus.
 *
 *   pq_config cfg;  pq_config_defaults(&cfg);  pq_config_set(&cfg, "precision", "int4");
 *   pq_manager *m;  pq_manager_create(&cfg, &m);
 *   pq_quantize_model(m, "model.safetensors", "model.q.h5");
 *   const pq_job_stats *s;  pq_get_quantization_stats(m, &s);
 *   pq_export(m, "model.q.h5", "copy.h5", "hdf5");
 *   pq_manager_destroy(m);  pq_config_free(&cfg);
 *
 * Every function returns a pq_status; on failure pq_err_detail() holds one
 * line naming the thing and the cause. The library never exits or prints
 * errors itself. */
#ifndef PROTEUS_H
#define PROTEUS_H

#include "base/pq_err.h"
#include "pipeline/config.h"
#include "pipeline/stats.h"

typedef struct pq_manager pq_manager;

/* Copy the config (patterns included) into a new manager. */
pq_status pq_manager_create(const pq_config *cfg, pq_manager **out);
void pq_manager_destroy(pq_manager *m); /* NULL is fine */

/* Progress callback for the next quantize_model (called from the caller's
 * thread after each unit). */
void pq_manager_set_progress(pq_manager *m, pq_progress_fn fn, void *user);

/* Quantize the checkpoint at model_path (safetensors file, index.json or
 * directory) into one consolidated HDF5 file at out_path, on this process.
 * Nothing appears at out_path unless the whole run succeeds.
 * scheme "static": first calibrates on the bundled sample (the first 128
 * sequences of the bundled proteins/calib_sample.fasta: in $PROTEUS_DATA_DIR
 * when set, else the installed share/proteus, else the source tree's data/)
 * and stores act_scale (and act_zero_point when asymmetric) for every quantized
 * Linear, with the statistics as /calibration, as `proteus quantize
 * --scheme static` does without data. PQ_ERR_CALIBRATION when the sample is
 * not found or gives no usable statistics. */
pq_status pq_quantize_model(pq_manager *m, const char *model_path, const char *out_path);

/* Statistics of the last successful quantize_model (borrowed; valid until
 * the next quantize_model or destroy). PQ_ERR_CONFIG when none ran. */
pq_status pq_get_quantization_stats(const pq_manager *m, const pq_job_stats **out);

/* Export the Proteus model file in_path (docs/FORMAT.md, "Exports"), as
 * `proteus export` does. format "hdf5": every tensor read, validated and
 * written to a fresh consolidated file at out_path. "safetensors": a Hugging
 * Face model folder at out_path (config.json, model.safetensors with the
 * weights dequantized, tokenizer files) that EsmForMaskedLM.from_pretrained
 * loads. "compressed-tensors": the same folder with the quantized Linears
 * as integer codes (int-quantized, or pack-quantized when any has 4 bits)
 * and config.json's quantization_config. Float tensors of the folders are
 * fp16 when the manager's config has float_dtype fp16, else fp32. Nothing
 * appears at out_path unless the whole export succeeds; a folder out_path
 * must be absent or empty. PQ_ERR_CONFIG for an unknown format or a model
 * the format cannot express, PQ_ERR_IO / PQ_ERR_FORMAT for the files. */
pq_status pq_export(pq_manager *m, const char *in_path, const char *out_path, const char *format);

#endif
