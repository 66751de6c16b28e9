/* SPDX-License-Identifier: Apache-2.0 */
/* compare.h - a (quantized) model against its reference on one FASTA file,
 * both run on the same packed batches: masked-LM quality of both (accuracy,
 * perplexity, confidence and its calibration error), logits
 * KL(reference || model), cosine and top-1 disagreement per residue
 * position, cosine of mean-pooled final embeddings, per-Linear output SQNR
 * (each Linear of the model applied to the very input the reference Linear
 * sees), sizes, memory, speed and hardware utilization. The loop of
 * `proteus evaluate`; never prints.
 *
 * The FASTA is streamed in chunks (eval/infer_chunk.h); each sequence gives
 * one record of sums (pq_eval_seq) and the report adds the records in input
 * order, so every number but the timings is the same however the chunks
 * are run: one process (pq_eval_compare) or shared over MPI ranks
 * (coordinator/eval_mpi.h, with pq_eval_run_* and pq_eval_report_*). */
#ifndef PQ_EVAL_COMPARE_H
#define PQ_EVAL_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "eval/compare_ref.h"
#include "eval/eval_metrics.h"
#include "eval/infer_buf.h"
#include "eval/utilization.h"
#include "model/esm2_model.h"
#include "model/fasta.h"

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
    int64_t chunk_residues;                /* residues per chunk (0: PQ_EVAL_CHUNK_RESIDUES); never
                                              changes a number */
    bool no_peak;                          /* skip the kernel peak probe (utilization peak NaN) */
    pq_eval_ref *ref_cache;                /* borrowed, NULL: none. The reference's results kept across
                                              runs of the same fasta, max_seqs, max_length, batch_tokens,
                                              seed, mask_frac and reference (eval/compare_ref.h): taken
                                              when held, else run and kept; every number the same */
    bool no_sqnr;                          /* skip the per-Linear SQNR (zero in the report): with a
                                              filled ref_cache the reference is not run at all */
    bool sqnr_only;                        /* the per-Linear SQNR alone (the reference's unmasked pass);
                                              every other sum of the report zero */
} pq_eval_compare_opts;

#define PQ_EVAL_CHUNK_RESIDUES 16384

/* One model's side of the comparison. */
typedef struct pq_eval_side {
    pq_eval_mlm mlm;          /* masked pass tallies */
    double seconds;           /* masked pass forward time */
    int64_t file_bytes;       /* -1 when the path is not a file (a checkpoint folder) */
    int64_t weight_bytes, linear_weight_bytes; /* in memory (pq_esm2_model_weight_bytes) */
    double rss_load_mib;      /* peak RSS growth while it loaded */
    pq_eval_calib cal;        /* confidence and calibration at the masked positions */
    double cpu_seconds;       /* process CPU time over its masked forwards (all threads) */
    int64_t n_forwards;       /* masked-pass forwards (batches) */
} pq_eval_side;

/* The quantized model's masked pass against the CPU: ops on its main
 * kernel per second (achieved), that kernel's measured peak on the same
 * threads (summed over ranks), their ratio, CPU time / (wall x threads),
 * and Linear weight bytes (as held in memory) x forwards / wall: each
 * forward streams every Linear weight at least once, so a lower bound. */
typedef struct pq_eval_util {
    char kernel[64];
    double ops;               /* operations on the kernel, the whole masked pass */
    double peak_gops, achieved_gops, fraction, threads_busy, memory_gbps;
    int threads;              /* of all ranks together */
} pq_eval_util;

typedef struct pq_eval_report {
    int64_t n_sequences, n_tokens;
    int64_t n_positions;      /* residue positions of the unmasked pass (KL, cosine) */
    int num_layers;
    pq_eval_side ref, q;
    double kl_mean, kl_max, logits_cosine_mean, embedding_cosine_mean;
    double peak_rss_mib;      /* of the process, both models loaded */
    pq_eval_sqnr *sqnr;       /* owned: [(num_layers + 1) * PQ_EVAL_N_SITES], row l site i at
                                 l * PQ_EVAL_N_SITES + i; row num_layers holds only lm_dense */
    int64_t n_disagree;       /* residue positions whose top-1 prediction differs (unmasked pass) */
    double kl_sum, lcos_sum, ecos_sum; /* the sums behind the means */
    pq_eval_util util;
    int n_ranks;
} pq_eval_report;

/* Fractions of the report (NaN when nothing was counted): 1 - accuracy of
 * one side, and n_disagree / n_positions. */
double pq_eval_top1_error(const pq_eval_side *s);
double pq_eval_disagreement(const pq_eval_report *r);

/* Run the comparison in this process into *out (pq_eval_report_free it,
 * also after a failure). PQ_ERR_CONFIG when the two models' architectures
 * differ (both named); the readers' errors for bad files; PQ_ERR_FORMAT for
 * a FASTA without a usable record. */
pq_status pq_eval_compare(const pq_eval_compare_opts *o, pq_eval_report *out);
void pq_eval_report_free(pq_eval_report *r);

/* One sequence's part of every sum in the report, in the order
 * pq_eval_report_add adds it. */
typedef struct pq_eval_seq {
    int64_t n_tokens, n_positions, n_disagree;
    double kl_sum, kl_max, lcos_sum, ecos;
    pq_eval_mlm mlm[2];       /* reference, quantized */
    pq_eval_calib cal[2];
} pq_eval_seq;

/* Both models loaded, and the scratch of the loop. */
typedef struct pq_eval_run pq_eval_run;

/* Load o->reference and o->model (o borrowed for the run's life).
 * PQ_ERR_CONFIG when their architectures differ (both named); the readers'
 * errors for bad files. Owned *out (pq_eval_run_free). */
pq_status pq_eval_run_open(const pq_eval_compare_opts *o, pq_eval_run **out);
void pq_eval_run_free(pq_eval_run *r); /* NULL is fine */
int pq_eval_run_num_layers(const pq_eval_run *r);

/* Run recs[0..n) (consecutive records of the input; record i is masked by
 * its input position recs[i].index) through both models and append one
 * pq_eval_seq and its (num_layers + 1) * PQ_EVAL_N_SITES SQNR sums per
 * record to out. */
pq_status pq_eval_run_chunk(pq_eval_run *r, const pq_fasta_record *recs, int64_t n, pq_buf *out);

/* This process's own figures into rep: timings of the masked pass, load
 * RSS, peak RSS, weight and file bytes. */
void pq_eval_run_local(const pq_eval_run *r, pq_eval_report *rep);

/* The utilization probe of the quantized model (pq_eval_util_measure) on
 * the run's threads; with o->no_peak the kernel alone, peak NaN. */
pq_status pq_eval_run_probe(pq_eval_run *r, pq_eval_util_probe *u);
int pq_eval_run_threads(const pq_eval_run *r);

/* An empty report for num_layers layers (pq_eval_report_free it). */
pq_status pq_eval_report_init(pq_eval_report *rep, int num_layers);
/* Add a chunk's records (pq_eval_run_chunk's bytes); PQ_ERR_FORMAT for bytes
 * that are not such records. */
pq_status pq_eval_report_add(pq_eval_report *rep, const void *bytes, size_t len);
/* The means, and the utilization from the probe u (its peak summed over
 * the ranks), the side timings and u_threads, the threads of all ranks. */
void pq_eval_report_finish(pq_eval_report *rep, const pq_eval_util_probe *u, int u_threads);

/* The SQNR of Linear site `site` of layer `layer` (num_layers: the head). */
double pq_eval_report_sqnr_db(const pq_eval_report *r, int layer, int site);

#endif
