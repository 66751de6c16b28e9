/* SPDX-License-Identifier: Apache-2.0 */
/* job.h - one quantization job, split so that a single process and an MPI
 * run share every step: open + plan (all ranks), run units (any rank), and
 * the writer side (rank 0): float tensors, unit results, metrics, commit. */
#ifndef PQ_JOB_H
#define PQ_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/config.h"
#include "format/esm2.h"
#include "format/h5model.h"
#include "pipeline/plan.h"
#include "base/pq_err.h"
#include "format/safetensors.h"
#include "format/st_hash.h"

/* Per-tensor outcome, for the summary table and get_quantization_stats. */
typedef struct pq_tensor_stats {
    const char *name;          /* borrowed from the checkpoint */
    pq_tensor_action action;
    int ndim;
    int64_t shape[PQ_MAX_DIMS];
    uint64_t bytes_before;     /* as stored in the checkpoint */
    uint64_t bytes_after;      /* as stored in the output */
    pq_qmetrics metrics;       /* quantized tensors only */
} pq_tensor_stats;

typedef struct pq_job_stats {
    int n_tensors, n_quantized, n_float, n_dropped;
    uint64_t bytes_before, bytes_after;
    double min_sqnr_db, mean_sqnr_db;  /* over quantized tensors */
    double seconds_total, seconds_quantize;
    pq_tensor_stats *tensors;          /* n_tensors entries, plan order */
} pq_job_stats;

/* The result of one work unit, in the exact layout of the output datasets. */
typedef struct pq_unit_result {
    int32_t unit_id;
    int64_t n_rows;
    int64_t code_bytes;        /* n_rows * code_row_bytes */
    void *codes;
    int64_t n_scales;          /* n_rows * n_groups, or 1 for per-tensor */
    float *scale;
    int32_t *zero_point;       /* NULL when symmetric */
    double *row_sum_sq, *row_err_sq;
    float *row_max_err;
    int64_t n_nonfinite;
    bool kept_float;           /* nan_policy keep: the tensor stays float */
} pq_unit_result;

typedef struct pq_progress {
    const char *phase;         /* "quantize", "write", "done" */
    int units_done, units_total;
    double bytes_done, bytes_total;
    double elapsed_s;
    const char *tensor;        /* last tensor finished, or NULL */
    double sqnr_db;
} pq_progress;

typedef void (*pq_progress_fn)(void *user, const pq_progress *ev);

/* Seconds this process spent in each phase of a job (for --verbose and the
 * benchmark): filled by the job functions and by the MPI loops. */
typedef struct pq_job_phases {
    double open;     /* pq_job_open: map, detect, plan */
    double hash;     /* this process's chunks of the source's tree digest */
    double setup;    /* creating the output and its datasets (floats apart) */
    double floats;   /* reading and writing the float tensors */
    double units;    /* running this process's own units */
    double xfer;     /* MPI: sending results (worker) or receiving them (rank 0) */
    double write;    /* writing unit results into the output */
    double metrics;  /* rank 0: tensors' metrics written while others still work */
    double commit;   /* the rest of the metrics, provenance, close, fsync, rename */
} pq_job_phases;

typedef struct pq_job {
    pq_config *cfg;            /* borrowed */
    char *model_path;
    pq_st_model *model;
    pq_esm2_config arch;
    pq_plan *plan;
    /* writer side (rank 0 only) */
    pq_h5w *writer;
    char *out_path;
    double *row_sum_sq, *row_err_sq;   /* per tensor: rows of results gathered */
    float *row_max_err;
    int64_t *tensor_row_base;          /* offset of each tensor in the row arrays */
    int64_t *tensor_nonfinite;
    int64_t *tensor_rows_done;         /* per tensor: rows of results put */
    int n_ended;                       /* tensors before this one have their metrics written */
    bool *tensor_kept_float;
    pq_job_stats stats;
    int units_done;
    double bytes_done, t_start;
    pq_progress_fn progress;
    void *progress_user;
    pq_job_phases t;
    /* Set before pq_job_begin_output when the source digest is gathered
     * chunk by chunk (an MPI run: pq_job_hash_own on every rank, leaves to
     * rank 0 with pq_job_put_leaf): begin then skips hashing the whole
     * source, and pq_job_finish_output combines the leaves. */
    bool defer_source_hash;
    int hash_threads;                  /* threads for hashing chunks (>= 1) */
    uint8_t *hash_leaves;              /* plan->n_hash x PQ_HASH_LEAF_BYTES, chunk order */
    bool *hash_have;                   /* per chunk: leaf known */
    char source_hash[65];              /* hex tree digest, "" until known */
    /* Called by pq_job_finish_output before the commit (the static scheme
     * adds act qparams and /calibration here); NULL = nothing. */
    pq_status (*before_commit)(void *user, struct pq_job *j);
    void *before_commit_user;
} pq_job;

/* Open the checkpoint, recognise the architecture, apply the hardware target
 * and threads, and build the plan. Returns owned *out. */
pq_status pq_job_open(pq_config *cfg, const char *model_path, int64_t unit_bytes,
                      pq_job **out);
void pq_job_destroy(pq_job *j); /* aborts an uncommitted output */

/* Run one unit: read its rows, quantize them. *r is filled with owned buffers
 * (pq_unit_result_free). */
pq_status pq_job_run_unit(pq_job *j, const pq_unit *u, pq_unit_result *r);
void pq_unit_result_free(pq_unit_result *r);

/* Start reading a unit's rows from disk ahead of time (call for the next
 * unit before running the current one). */
void pq_job_prefetch_unit(pq_job *j, const pq_unit *u);

/* The source checkpoint's tree digest (st_hash.h; the source_sha256_tree
 * attribute), all chunks hashed here by j->hash_threads threads, timed into
 * j->t.hash. Any process may run it. */
pq_status pq_job_hash_source(pq_job *j, char hex[65]);

/* Hash up to max_chunks of the chunks the plan gives `rank` that are not
 * hashed yet (in parallel with j->hash_threads threads) into
 * j->hash_leaves; their indices go to chunks[0..*n_done) (room for
 * max_chunks), *n_done 0 when none is left. Timed into j->t.hash.
 * PQ_TEST_FAIL_HASH=<rank> (test-only) makes that rank's first chunk fail
 * with PQ_ERR_IO. */
pq_status pq_job_hash_own(pq_job *j, int rank, int max_chunks, int64_t *chunks, int *n_done);

/* Hash chunk `chunk` for `rank` into its place in j->hash_leaves, without
 * marking it known: thread-safe, for several chunks at once (unit_batch.h).
 * PQ_TEST_FAIL_HASH as pq_job_hash_own. */
pq_status pq_job_hash_chunk(pq_job *j, int rank, int64_t chunk);

/* Cut the source digest into chunks of chunk_bytes instead of
 * PQ_HASH_CHUNK_BYTES (tests: many chunks from a small model); call before
 * the ranks' assignment. */
pq_status pq_job_set_hash_chunks(pq_job *j, int64_t chunk_bytes);

/* Rank 0: record the leaf of `chunk` hashed by rank `src`. PQ_ERR_PROTO
 * when the chunk is out of range, not src's in the plan, or already known. */
pq_status pq_job_put_leaf(pq_job *j, int src, int64_t chunk, const uint8_t leaf[PQ_HASH_LEAF_BYTES]);

/* Writer side. begin: create OUT.partial, write float tensors and create the
 * quantized datasets. put: write a unit's rows (any order); r->codes NULL
 * when the rank that ran the unit wrote its codes into OUT.partial itself
 * (pq_job_codes_offsets). finish: metrics, provenance, commit (rename). */
pq_status pq_job_begin_output(pq_job *j, const char *out_path, int num_ranks,
                              const char *command_line);
pq_status pq_job_put_result(pq_job *j, const pq_unit *u, const pq_unit_result *r);

/* After begin: the file offset of every plan tensor's codes in OUT.partial
 * (0 for tensors that are not quantized), into offsets[plan->n_tensors]. */
pq_status pq_job_codes_offsets(pq_job *j, uint64_t *offsets);

/* Rank 0, between units: write the metrics of the next quantized tensor in
 * plan order if all its rows are in (*did then true), so that less is left
 * for the commit. Plan order, whatever the timing, keeps the file's layout
 * the same for any number of ranks. */
pq_status pq_job_end_next(pq_job *j, bool *did);
pq_status pq_job_finish_output(pq_job *j);

/* Single-process run of every unit in plan order. */
pq_status pq_job_run_all(pq_job *j);

#endif
