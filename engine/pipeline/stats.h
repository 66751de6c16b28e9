/* SPDX-License-Identifier: Apache-2.0 */
/* stats.h - what a quantization job reports: per-tensor outcomes, totals,
 * and progress events. Plain values, part of the public API (proteus.h). */
#ifndef PQ_STATS_H
#define PQ_STATS_H

#include <stdint.h>

#include "base/dtype.h"
#include "quant/qmetrics.h"

typedef enum pq_tensor_action {
    PQ_ACT_FLOAT = 0,  /* stored as float (fp32 or fp16) */
    PQ_ACT_QUANT,      /* stored as integer codes + scales */
    PQ_ACT_DROP        /* legacy extras (position_ids, ...) not stored */
} pq_tensor_action;

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
 * benchmark). */
typedef enum pq_phase {
    PQ_PHASE_OPEN = 0, /* opening the checkpoint: map, detect, plan */
    PQ_PHASE_HASH,     /* this process's chunks of the source's tree digest */
    PQ_PHASE_SETUP,    /* creating the output and its datasets (floats apart) */
    PQ_PHASE_FLOATS,   /* reading and writing the float tensors */
    PQ_PHASE_UNITS,    /* running this process's own units */
    PQ_PHASE_XFER,     /* MPI: sending results (worker) or receiving them (rank 0) */
    PQ_PHASE_WRITE,    /* writing unit results into the output */
    PQ_PHASE_METRICS,  /* rank 0: tensors' metrics written while others still work */
    PQ_PHASE_COMMIT,   /* the rest of the metrics, provenance, close, fsync, rename */
    PQ__PHASE_COUNT
} pq_phase;

#endif
