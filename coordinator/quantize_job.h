/* SPDX-License-Identifier: Apache-2.0 */
/* quantize_job.h - one quantization job on every rank of a run that is
 * already up: the plain `quantize` (quantize_run.c) and each attempt of the
 * fallback (fallback_run.c) run it. */
#ifndef PQ_QUANTIZE_JOB_H
#define PQ_QUANTIZE_JOB_H

#include <mpi.h>
#include <stdbool.h>

#include "coordinator/monitor.h"
#include "coordinator/quantize_run.h"
#include "pipeline/fallback.h"
#include "pipeline/job.h"

/* Progress fan-out on rank 0: the caller's view and the monitor. */
typedef struct pq_qrun_progress {
    const pq_quantize_request *q;
    pq_monitor *mon;
    const pq_job *job;
    int n_ranks;
    pq_progress last;         /* counters of the latest progress event */
    const pq_journal *journal; /* rank 0's, borrowed */
    bool disarm_at_unit;      /* rank 0's watcher leaves OUT.partial once the journal holds a unit */
} pq_qrun_progress;

/* The run the jobs share. */
typedef struct pq_qrun {
    const pq_quantize_request *q;
    MPI_Comm comm;            /* MPI_ERRORS_RETURN */
    int rank, n_ranks;
    bool guarded;             /* rank 0's watcher runs (cleanup.h) */
    bool attempts;            /* the fallback's: a failed job leaves no journal (no --resume) */
    double t_init;            /* MPI_Init's seconds (the -v phases) */
    pq_monitor *mon;          /* rank 0: opened by the first job */
    pq_qrun_progress prog;
    const char *armed_too;    /* rank 0: a finished file the watcher removes too if rank 0 dies */
} pq_qrun;

/* Every rank: quantize cfg (borrowed; it must outlive *keep) into `out`
 * (--out, or an attempt's file beside it) and commit it. fb (NULL: none)
 * gets the plan's snapshot (pq_fallback_snapshot) on every rank. On success
 * with keep, rank 0's committed job is returned owned in *keep
 * (pq_job_destroy; its statistics), NULL elsewhere. Returns the status of
 * the lowest failing rank, the same on every rank (OUT.partial removed); a
 * rank that never answers the stop takes the run down (MPI_Abort). */
pq_status pq_qrun_job(pq_qrun *x, pq_config *cfg, const char *out, pq_fallback *fb, pq_job **keep);

/* Every rank: the fallback's attempts into q->out (fallback_run.c). The
 * written file's job, rank 0, in *written (owned), also when --keep-best
 * wrote the best attempt and PQ_ERR_ACCURACY is returned. */
pq_status pq_fallback_run(pq_qrun *x, pq_config *cfg, pq_job **written);

#endif
