/* SPDX-License-Identifier: Apache-2.0 */
/* report_model.h - what `proteus report` shows of a Proteus HDF5 model:
 * each tensor's recipe, bytes and weight SQNR, and /provenance, read through
 * the validating reader (format/h5model.h). */
#ifndef PQ_REPORT_MODEL_H
#define PQ_REPORT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"

/* The six Linears of an ESM-2 layer, in the order the report draws them. */
#define PQ_REPORT_N_LINEARS 6

/* "q", "k", "v", "o", "fc1", "fc2" for 0..5; "?" otherwise. */
const char *pq_report_linear_name(int i);
/* The index of a Linear's short name (q, k, v, o, fc1, fc2; "out", as
 * `evaluate --json` names o, is also taken); -1 when it is none. */
int pq_report_linear_index(const char *name);

typedef struct pq_report_tensor {
    char *name;          /* owned by the model */
    char recipe[96];     /* its /recipe entry ("int4 group 64 symmetric rtn", "fp16") */
    char precision[8];   /* "int8", "int4", "fp16" or "fp32" */
    int layer;           /* its layer for a per-layer Linear weight, else -1 */
    int linear;          /* 0..5 for a per-layer Linear weight, else -1 */
    bool quantized;
    int64_t n_elems;     /* elements of the logical tensor */
    int64_t bytes;       /* stored bytes: codes, scales, zero points; float data */
    double sqnr_db;      /* 10 log10(sum_sq / err_sq) from /metrics (+inf when exact);
                          * NaN when the tensor has no metrics */
} pq_report_tensor;

typedef struct pq_report_model {
    char *path;
    int format_version, num_layers, num_ranks;
    const char *source_digest_alg; /* "sha256" | "xxh3-128" (static) */
    int embed_dim, attention_heads, ffn_dim;
    char *architecture, *model_name, *source_sha256, *created_by, *config_json;
    int64_t file_bytes;          /* the file's size on disk */
    int64_t n_tensors;
    pq_report_tensor *t;         /* sorted by name */
    int64_t n_prov;
    char **prov_key, **prov_val; /* /provenance, sorted by key */
} pq_report_model;

/* Read the model at path: open and validate it (pq_h5r_open), verify every
 * dataset's checksum and every scale and zero point when verify (as
 * `inspect` does), read each tensor's metrics and every /provenance string.
 * Fills *m (pq_report_model_free it, also after a failure). PQ_ERR_IO when
 * the file cannot be read, PQ_ERR_FORMAT naming the file and the item when
 * it is not a valid Proteus model. */
pq_status pq_report_model_read(const char *path, bool verify, pq_report_model *m);
void pq_report_model_free(pq_report_model *m);

/* The /provenance value of key, borrowed from m; NULL when absent. */
const char *pq_report_model_prov(const pq_report_model *m, const char *key);

#endif
