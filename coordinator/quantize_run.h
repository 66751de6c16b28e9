/* SPDX-License-Identifier: Apache-2.0 */
/* quantize_run.h - one quantization job over the MPI ranks of a run
 * (mpirun, srun, or a plain start, which is an MPI singleton: the same code
 * path), from MPI_Init to MPI_Finalize.
 *
 * Every rank opens the checkpoint and builds the same plan; rank 0
 * broadcasts a hash of it that the others verify. Every rank runs its own
 * work items through the one runner (worker/runner.h); rank 0 also writes
 * every result as it arrives and commits the file at the end. */
#ifndef PQ_QUANTIZE_RUN_H
#define PQ_QUANTIZE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/config.h"
#include "pipeline/stats.h"

struct pq_fb_attempt;

typedef struct pq_quantize_request {
    const char *model, *out;
    const char *config_file;      /* NULL: none; never overwritten by out */
    const char *calib_data, *calib_store; /* static scheme; NULL: the bundled sample */
    const char *monitor;          /* ZeroMQ endpoint for progress events, or NULL */
    double monitor_wait;          /* seconds to wait for a first subscriber */
    int64_t unit_bytes;
    bool resume;                  /* go on from OUT.journal (journal.h) */
    const char *command_line;     /* recorded as provenance (without --resume) */
    /* The fallback (cfg's fallback_scheme / allow_accuracy_drop,
     * coordinator/fallback_run.h): */
    const char *eval_data;        /* held-out FASTA; NULL: the bundled eval sample */
    int64_t eval_max_seqs;        /* its first N sequences; 0: all */
    bool keep_best;               /* no attempt meets the budget: write the best one still */
    int max_attempts;             /* 0: until every Linear is float */
    /* Rank 0 only, all optional: */
    pq_progress_fn progress;      /* progress events (terminal, log) */
    /* a fallback attempt measured or failed (a: pipeline/fallback.h), budget NaN: none */
    void (*attempt)(void *user, const struct pq_fb_attempt *a, double budget);
    /* the finished job: its statistics and every rank's peak RSS in MiB */
    void (*report)(void *user, const pq_job_stats *s, const double *rss_mib, int n_ranks);
    /* print a failure; returns the process exit status */
    int (*fail)(int status);
    void *user;
} pq_quantize_request;

/* Run the job on every rank of MPI_COMM_WORLD (initialises and finalises
 * MPI); with a fallback asked for (pq_fallback_wanted), its attempts.
 * Returns the process exit status: 0, or the failure's
 * (pq_status_exit_code), printed on rank 0 by q->fail. A rank that never
 * answers the stop after a failure takes the run down (MPI_Abort). */
int pq_quantize_run(pq_config *cfg, const pq_quantize_request *q);

#endif
