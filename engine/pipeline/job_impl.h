/* SPDX-License-Identifier: Apache-2.0 */
/* job_impl.h - the job's fields, private to engine/pipeline (job.c, the read
 * side; output.c, the writer side). */
#ifndef PQ_JOB_IMPL_H
#define PQ_JOB_IMPL_H

#include "pipeline/job.h"
#include "pipeline/journal.h"
#include "quant/gptq.h"
#include "quant/rtn.h"

/* The writer side (rank 0 only): the output file and the per-row metrics
 * gathered from every unit's result. */
typedef struct pq_output {
    pq_h5w *writer;
    char *path;
    double *row_sum_sq, *row_err_sq;   /* per tensor: rows of results gathered */
    float *row_max_err;
    int64_t *tensor_row_base;          /* offset of each tensor in the row arrays */
    int64_t *tensor_nonfinite;
    int64_t *tensor_rows_done;         /* per tensor: rows of results put */
    int n_ended;                       /* tensors before this one have their metrics written */
    int units_done;
    double bytes_done;
    pq_progress_fn progress;
    void *progress_user;
    pq_before_commit_fn before_commit;
    void *before_commit_user;
    pq_journal *journal;               /* borrowed; NULL: no resume journal */
    pq_status leaf_err;                /* a digest leaf that differs from the journal's */
    int journaled;                     /* units appended to it by this run */
    int codes_fd;                      /* OUT.partial read back for the journal; 0: not open */
    bool keep_partial;                 /* a failed run's OUT.partial stays (its journal names its codes) */
} pq_output;

struct pq_job {
    pq_config *cfg;            /* borrowed */
    char *model_path;
    pq_st_model *model;
    pq_esm2_config arch;
    pq_plan *plan;
    int threads;               /* units' rows and hashing (>= 1) */
    pq_ops ops;                /* the kernel context hardware_target selected */
    bool *tensor_kept_float;
    const pq_smooth *smooth;   /* borrowed, NULL = none: SmoothQuant applied to rows as read */
    const pq_gptq_factor **gptq; /* per tensor, borrowed; NULL (or a NULL entry): RTN */
    /* The source digest gathered chunk by chunk (an MPI run: each rank
     * hashes its chunks, rank 0 gets the leaves): begin then skips hashing
     * the whole source, and finish combines the leaves. */
    bool defer_source_hash;
    uint8_t *hash_leaves;      /* plan->n_hash x PQ_HASH_LEAF_BYTES, chunk order */
    bool *hash_have;           /* per chunk: leaf known */
    bool *done;                /* per unit: in the resume journal (not run); NULL: none */
    int32_t *src_users;        /* per digest chunk: its readers not yet over here; NULL: no drop */
    double t_start;
    double phase[PQ__PHASE_COUNT];
    pq_job_stats stats;
    pq_output out;
};

/* Free the writer side (aborting an uncommitted output). */
void pq_job_output_free(pq_job *j);

/* Unit u of plan tensor pt (a half-precision or unaligned source, RTN per
 * channel or per group) converted to fp32 and quantized a block of rows at
 * a time over the job's threads, into rows' buffers (rows->n_nonfinite set):
 * the same bytes as converting the unit whole (unit_blocks.c). */
pq_status pq_unit_quantize_blocks(pq_job *j, const pq_unit *u, const pq_plan_tensor *pt, pq_rtn_rows *rows);

#endif
