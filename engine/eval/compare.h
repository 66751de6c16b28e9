/* SPDX-License-Identifier: Apache-2.0 */
/* compare.h - a (quantized) model against its reference on one FASTA file,
 * both run on the same packed batches: masked-LM quality of both, logits
 * KL(reference || model) and cosine per residue position, cosine of
 * mean-pooled final embeddings, per-Linear output SQNR (each Linear of the
 * model applied to the very input the reference Linear sees), sizes, memory
 * and speed. The loop of `proteus evaluate`; never prints. */
#ifndef PQ_EVAL_COMPARE_H
#define PQ_EVAL_COMPARE_H

#include <stdint.h>

#include "base/pq_err.h"
#include "eval/eval_metrics.h"
#include "model/esm2_model.h"

/* Linear sites per layer, in report order: q, k, v, out, fc1, fc2; the LM
 * head's dense (lm_dense) is the last site, on the row after the layers. */
#define PQ_EVAL_N_SITES 7
const char *pq_eval_site_name(int site);

typedef struct pq_eval_compare_opts {
    const char *model, *reference, *fasta; /* borrowed paths */
    int64_t max_seqs;                      /* first N sequences (0: all) */
    int64_t max_length;                    /* residues per sequence, longer ones cropped */
    int64_t batch_tokens;                  /* tokens per forward batch (at least 3) */
    uint64_t seed;                         /* masking seed */
    double mask_frac;                      /* masking probability, in (0, 1) */
    pq_esm2_model_opts model_opts, reference_opts;
} pq_eval_compare_opts;

/* One model's side of the comparison. */
typedef struct pq_eval_side {
    pq_eval_mlm mlm;          /* masked pass tallies */
    double seconds;           /* masked pass forward time */
    int64_t file_bytes;       /* -1 when the path is not a file (a checkpoint folder) */
    int64_t weight_bytes, linear_weight_bytes; /* in memory (pq_esm2_model_weight_bytes) */
    double rss_load_mib;      /* peak RSS growth while it loaded */
} pq_eval_side;

typedef struct pq_eval_report {
    int64_t n_sequences, n_tokens;
    int64_t n_positions;      /* residue positions of the unmasked pass (KL, cosine) */
    int num_layers;
    pq_eval_side ref, q;
    double kl_mean, kl_max, logits_cosine_mean, embedding_cosine_mean;
    double peak_rss_mib;      /* of the process, both models loaded */
    pq_eval_sqnr *sqnr;       /* owned: [(num_layers + 1) * PQ_EVAL_N_SITES], row l site i at
                                 l * PQ_EVAL_N_SITES + i; row num_layers holds only lm_dense */
} pq_eval_report;

/* Run the comparison into *out (pq_eval_report_free it, also after a
 * failure). PQ_ERR_CONFIG when the two models' architectures differ (both
 * named); the readers' errors for bad files. */
pq_status pq_eval_compare(const pq_eval_compare_opts *o, pq_eval_report *out);
void pq_eval_report_free(pq_eval_report *r);

/* The SQNR of Linear site `site` of layer `layer` (num_layers: the head). */
double pq_eval_report_sqnr_db(const pq_eval_report *r, int layer, int site);

#endif
