/* SPDX-License-Identifier: Apache-2.0 */
/* config.h - the quantization configuration: defaults, JSON file, validation.
 *
 * Keys use the names users know from other quantizers: scheme, precision,
 * per_channel, symmetric, calibration_method, hardware_target,
 * optimize_memory, enable_fusion, threading; plus group_size, include,
 * exclude, nan_policy, float_dtype, threads, recipe, fallback_scheme,
 * allow_accuracy_drop (quantize's fallback, pipeline/fallback.h) and digest
 * (the source digest's hash, format/digest.h). */
#ifndef PQ_CONFIG_H
#define PQ_CONFIG_H

#include <stdbool.h>

#include "base/pq_err.h"
#include "format/digest.h"
#include "kernels/pq_kernels.h"
#include "quant/qspec.h"

#define PQ_MAX_PATTERNS 64

/* One tensor's recipe set over everything else (the fallback's steps,
 * pipeline/fallback.h): quantized with spec, or kept in float. */
typedef struct pq_tensor_override {
    char *name;                  /* owned; the Hugging Face name */
    bool quantized;
    pq_qspec spec;               /* when quantized */
    bool float16;                /* when kept in float */
} pq_tensor_override;

typedef struct pq_config {
    char scheme[16];             /* "dynamic" */
    int bits;                    /* 8 ("int8") or 4 ("int4") */
    bool per_channel;            /* false: one scale per tensor */
    int group_size;              /* 0: none; else 32..256 (implies per-row groups) */
    bool symmetric;
    char calibration_method[16]; /* minmax | entropy | percentile | mse */
    char hardware_target[16];    /* cpu | ref | avx2 | avx512 | cuda */
    bool optimize_memory;        /* release checkpoint pages after each tensor */
    bool enable_fusion;
    bool threading;
    int threads;                 /* 0: all cores (when threading) */
    pq_nan_policy nan_policy;
    bool float16;                /* float tensors stored as fp16 */
    double smoothquant_alpha;    /* 0: off; else SmoothQuant's alpha in (0, 1] (quant/smooth.h) */
    char method[8];              /* weight rounding: "rtn" | "gptq" (quant/gptq.h) */
    double gptq_damp;            /* GPTQ damping, fraction of the mean Hessian diagonal (0.01) */
    int gptq_block_size;         /* GPTQ lazy-update block, columns (128) */
    bool act_order;              /* GPTQ columns by descending Hessian diagonal, static groups */
    int n_include, n_exclude;
    char *include[PQ_MAX_PATTERNS]; /* owned; fnmatch patterns on HF names */
    char *exclude[PQ_MAX_PATTERNS];
    char *recipe;                /* owned; NULL: none. A recipe file (pipeline/recipe.h): per-tensor
                                  * precisions over these defaults. Not in the config JSON: the
                                  * file's /recipe records what it resolved to */
    char fallback_scheme[16];    /* "": none; else the scheme tried when the requested one fails
                                  * (calibration, or the accuracy budget) */
    double allow_accuracy_drop;  /* NaN: no budget; else the masked-LM accuracy the quantized
                                  * model may lose, a fraction in [0, 1] (0.01 = one point) */
    int n_overrides;
    pq_tensor_override *overrides; /* owned; applied after the recipe, last one wins */
    pq_digest_alg digest;        /* the source digest's hash: xxh3 (XXH3-128; default where built) | sha256 */
} pq_config;

/* Defaults: dynamic, int8, per-tensor, symmetric, minmax, cpu, optimize_memory,
 * enable_fusion, threading all true, nan_policy error, float32, method rtn
 * (GPTQ: damping 0.01, block 128, no act-order), digest pq_digest_default(). */
void pq_config_defaults(pq_config *c);
void pq_config_free(pq_config *c); /* frees patterns, the recipe path and the overrides; c stays usable */

/* Set (or replace) the override of tensor `name` (copied). */
pq_status pq_config_override(pq_config *c, const char *name, bool quantized, const pq_qspec *spec, bool float16);

/* Apply a JSON file over *c. Unknown keys or bad values: PQ_ERR_CONFIG naming
 * the file, the key and the allowed values; *c may be partly updated. */
pq_status pq_config_load_json(pq_config *c, const char *path);

/* Set one key from a string value (as a command-line option gives it), same
 * validation and messages as the JSON loader. */
pq_status pq_config_set(pq_config *c, const char *key, const char *value);

/* Add an include/exclude pattern (copied). */
pq_status pq_config_add_pattern(pq_config *c, bool include, const char *pattern);

/* Check cross-key consistency (group size with per-tensor etc.). */
pq_status pq_config_validate(const pq_config *c);

/* The weight quantization spec this config asks for. */
pq_qspec pq_config_qspec(const pq_config *c);

/* Canonical JSON of the resolved config (returns owned string, free()). */
char *pq_config_to_json(const pq_config *c);

/* The one kernel selector, for quantization and inference alike: fills *ops
 * with the context hardware target `target` asks for on this build and
 * machine. cpu = the best this CPU runs, or the context the environment
 * variable PQ_KERNELS names (read here, once per call, never inside kernels);
 * ref | avx2 | avx512 = that context. Errors: PQ_ERR_CONFIG for an unknown
 * target or PQ_KERNELS value (naming it and listing the choices);
 * PQ_ERR_HARDWARE for a context this build or CPU cannot run, and for cuda
 * (weight quantization and inference run on CPU kernels), listing what is
 * available. */
pq_status pq_hardware_select(const char *target, pq_ops *ops);

/* pq_hardware_select of c->hardware_target. */
pq_status pq_config_apply_hardware(const pq_config *c, pq_ops *ops);

#endif
