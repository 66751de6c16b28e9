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

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "pipeline/config.h"
#include "pipeline/stats.h"

/* Calibration statistics (calib/calib_stats.h inside the library): opaque
 * here, held through the calls below. */
typedef struct pq_calib pq_calib;

typedef struct pq_manager pq_manager;

/* A configuration with the defaults on the heap (NULL when out of memory),
 * for callers that do not see pq_config's layout; pq_config_delete frees
 * it and its patterns (NULL is fine). */
pq_config *pq_config_new(void);
void pq_config_delete(pq_config *c);

/* PQ_OK when this build and machine run hardware target `target` (cpu |
 * ref | avx2 | avx512 | cuda), else pq_hardware_select's error saying why
 * and what is available. */
pq_status pq_hardware_check(const char *target);

/* Copy the config (patterns included) into a new manager. */
pq_status pq_manager_create(const pq_config *cfg, pq_manager **out);
void pq_manager_destroy(pq_manager *m); /* NULL is fine */

/* Progress callback for the next quantize_model (called from the caller's
 * thread after each unit). */
void pq_manager_set_progress(pq_manager *m, pq_progress_fn fn, void *user);

/* Where the statistics of the next quantize_model come from (the static
 * scheme, SmoothQuant, GPTQ): a calibration store (pq_calibration_save,
 * `proteus calibrate`; not for GPTQ) or a FASTA file of calibration
 * sequences (copied paths; both NULL: the bundled sample). PQ_ERR_CONFIG
 * when both are given. */
pq_status pq_manager_set_calibration(pq_manager *m, const char *store, const char *data);

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

/* The statistics as one JSON object (owned *out, pq_free): n_tensors,
 * n_quantized, n_float, n_dropped, bytes_before, bytes_after, min_sqnr_db,
 * mean_sqnr_db, seconds_total, seconds_quantize, and tensors: per tensor
 * name, action (float | quantized | dropped), shape, bytes_before,
 * bytes_after and, when quantized, sqnr_db, rel_l2, max_abs_err,
 * n_nonfinite. Infinite values are the strings "inf" / "-inf". */
pq_status pq_stats_json(const pq_job_stats *s, char **out);

void pq_free(void *p); /* strings the library returns; NULL is fine */

/* The /provenance string `key` of the Proteus model file at path (owned
 * *out, pq_free; docs/FORMAT.md), e.g. "fallback_trail". The reader's
 * errors; PQ_ERR_FORMAT when the file has no such key. */
pq_status pq_model_provenance(const char *path, const char *key, char **out);

/* Calibration statistics (api_calib.c): exact histograms at every Linear
 * input, the same bits as `proteus calibrate` on any number of ranks.
 * pq_calibrate collects them on the first max_seqs (0: all) usable
 * sequences of `fasta` with the config's kernels and threads (owned *out,
 * pq_calibration_free). PQ_ERR_CALIBRATION when no usable sequence remains;
 * the readers' errors for bad files. */
pq_status pq_calibrate(const pq_config *cfg, const char *model, const char *fasta, int64_t max_seqs,
                       pq_calib **out);

/* Add the statistics of new data to c, as `calibrate --update` does (model
 * NULL: the model c records). PQ_ERR_CALIBRATION when the model is not the
 * one c was collected on. On failure c may hold part of the new counts:
 * reload it. */
pq_status pq_calibration_update(pq_calib *c, const pq_config *cfg, const char *model, const char *fasta,
                                int64_t max_seqs);

/* Merge add into c (same model digest, else PQ_ERR_CALIBRATION naming
 * `what`); add's counts are consumed. */
pq_status pq_calibration_merge(pq_calib *c, pq_calib *add, const char *what);

pq_status pq_calibration_load(const char *path, pq_calib **out);
/* Check and write c as a calibration store (path.partial, then renamed). */
pq_status pq_calibration_save(const pq_calib *c, const char *path);

/* Write c's ranges by `method` (minmax | percentile | entropy | mse) in
 * `format`: json, tensorrt, onnxruntime (calib/calib_export.h) or hdf5 (the
 * store itself); percentile for the percentile method (99.99). Nothing
 * appears at path unless complete. PQ_ERR_CONFIG for an unknown format or
 * method. */
pq_status pq_calibration_export(const pq_calib *c, const char *format, const char *method, bool symmetric,
                                double percentile, const char *path);

/* The json export as a string (owned *out, pq_free). */
pq_status pq_calibration_json(const pq_calib *c, const char *method, bool symmetric, char **out);
void pq_calibration_free(pq_calib *c); /* NULL is fine */

/* A quantized model against its float reference on a FASTA file
 * (api_eval.c): the comparison of `proteus evaluate` (masking seed `seed`,
 * 15 %, sequences cropped to 500 residues, first max_seqs; 0: all), with
 * the config's kernels, threads and fusion. Accuracies are fractions, the
 * drop is in percentage points. PQ_ERR_CONFIG when the architectures
 * differ; the readers' errors for bad files. */
typedef struct pq_eval_summary {
    int64_t n_sequences, n_tokens, n_masked;
    double accuracy_reference, accuracy_quantized, accuracy_drop_points;
    double perplexity_reference, perplexity_quantized;
    double logits_kl_mean, logits_kl_max, logits_cosine_mean, embedding_cosine_mean;
    int64_t file_bytes_reference, file_bytes_quantized; /* -1: not a file */
    int64_t weight_bytes_reference, weight_bytes_quantized;
    /* confidence (mean top-1 probability at masked positions), its expected
     * calibration error (15 equal-width bins), masked-LM top-1 error (1 -
     * accuracy), and the fraction of residue positions where the two
     * models' top predictions differ */
    double confidence_reference, confidence_quantized, ece_reference, ece_quantized;
    double top1_error_reference, top1_error_quantized, top1_disagreement;
    /* the quantized model's masked pass against the CPU (`proteus evaluate
     * --help`): operations per second on its main kernel, that kernel's
     * measured peak, their ratio, CPU time / (wall x threads), Linear weight
     * bytes streamed per second (GB/s) */
    double achieved_gops, peak_gops, utilization_fraction, threads_busy, memory_gbps;
    char utilization_kernel[64];
} pq_eval_summary;
pq_status pq_evaluate(const pq_config *cfg, const char *model, const char *reference, const char *fasta,
                      int64_t max_seqs, uint64_t seed, pq_eval_summary *out);

/* A loaded model (api_infer.c): a Proteus HDF5 file (quantized Linears run
 * on the integer kernels) or a float checkpoint (safetensors file, index
 * or folder). cfg (NULL: defaults) gives the kernels (hardware_target),
 * threads and fusion; mode how quantized Linears run: 0 auto (the integer
 * kernels chosen per tensor), 1 dequant (fp32 on the dequantized weights),
 * 2 weight-only. Owned *out (pq_model_close). */
typedef struct pq_model pq_model;
pq_status pq_model_open(const char *path, const pq_config *cfg, int mode, pq_model **out);
void pq_model_close(pq_model *pm); /* NULL is fine */
typedef struct pq_model_arch {
    int num_layers, embed_dim, attention_heads, ffn_dim, vocab_size;
    float layer_norm_eps;
    bool has_contact_head, has_decoder; /* has_decoder false: tied to the embeddings */
} pq_model_arch;
void pq_model_info(const pq_model *pm, pq_model_arch *out);

/* Rows of floats per sequence: sequence s owns rows offsets[s] ..
 * offsets[s + 1] of data [offsets[n_seqs], width]. */
typedef struct pq_array {
    int64_t n_seqs, width;
    int64_t *offsets; /* owned, [n_seqs + 1] */
    float *data;      /* owned */
} pq_array;
void pq_array_free(pq_array *a); /* frees the members; NULL is fine */

/* The logits of every record of `fasta` (residues cropped at 1022): one
 * row of `vocab` per token, <cls> and <eos> included, as fair-esm's
 * model(tokens)["logits"]. */
pq_status pq_model_logits(pq_model *pm, const char *fasta, pq_array *out);

/* The representation after layer `layer` (0 = embeddings, L = after the
 * final LayerNorm, negative counts from L + 1) of every record: *mean one
 * row per sequence (mean over its residues), and when rows is not NULL
 * one row per residue. PQ_ERR_CONFIG for a layer outside the model. */
pq_status pq_model_embed(pq_model *pm, const char *fasta, int layer, pq_array *mean, pq_array *rows);

/* The tensors of a Proteus HDF5 model file (api_tensors.c), sorted by
 * name, for readers that rebuild the model elsewhere (another framework):
 * each as fp32 (quantized ones dequantized, w = (q - zero_point) * scale,
 * as the engine's dequant mode), and an int8 tensor's codes and scales. */
typedef struct pq_tensors pq_tensors;
pq_status pq_tensors_open(const char *path, pq_tensors **out);
void pq_tensors_close(pq_tensors *t); /* NULL is fine */
int64_t pq_tensors_count(const pq_tensors *t);

typedef struct pq_tensor_info {
    const char *name;     /* borrowed from t */
    int ndim;
    int64_t shape[8];     /* logical shape ([out, in] when quantized) */
    int bits;             /* 0: float; 8 or 4 */
    int granularity;      /* 0 tensor, 1 channel, 2 group (quantized only) */
    int group_size;
    bool symmetric;
    int64_t n_scales;     /* scales (and zero points) stored */
} pq_tensor_info;
/* Tensor i (0 .. count - 1); PQ_ERR_CONFIG when out of range. */
pq_status pq_tensor_info_at(const pq_tensors *t, int64_t i, pq_tensor_info *out);
/* Tensor i as fp32 into dst (the product of its shape). */
pq_status pq_tensor_read_f32(pq_tensors *t, int64_t i, float *dst);
/* An 8-bit tensor's codes int8 [out, in] and its n_scales scales (and
 * zero points, 0 when symmetric). PQ_ERR_CONFIG for a float or 4-bit one. */
pq_status pq_tensor_read_int8(pq_tensors *t, int64_t i, int8_t *codes, float *scale, int32_t *zero_point);

#endif
