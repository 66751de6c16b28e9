/* SPDX-License-Identifier: Apache-2.0 */
/* runner.h - the one loop that runs a process's work items and delivers
 * the results, on every rank and in the library alike.
 *
 * A rank's items are its chunks of the source digest (when the job gathers
 * the digest from chunks), then its units in plan order, then the units it
 * may take over from other ranks (the pick function, claims.h). They run a
 * batch at a time (unit_batch.h: one item per thread; width 1 is a batch of
 * one unit). Each finished item goes to a sink on the calling thread: rank
 * 0's sink writes it into the output, a worker's ships it to rank 0, the
 * library's puts it directly. Between batches the sink may look at its
 * messages and stop the loop. */
#ifndef PQ_RUNNER_H
#define PQ_RUNNER_H

#include <stdbool.h>

#include "base/pq_err.h"
#include "pipeline/job.h"
#include "worker/unit_batch.h"

typedef struct pq_sink {
    /* A finished unit: the sink takes r's buffers (and frees them, now or
     * once sent). A failure stops the runner. */
    pq_status (*unit)(void *user, const pq_unit *u, pq_unit_result *r);
    /* A hashed digest chunk (its leaf is in the job, marked known); NULL:
     * nothing to do. */
    pq_status (*chunk)(void *user, int64_t chunk);
    /* After each batch (e.g. send the leaves gathered); NULL: nothing. */
    pq_status (*flush)(void *user);
    /* Before each batch: look at messages; *stop ends the loop without a
     * failure. NULL: never stop. */
    pq_status (*poll)(void *user, bool *stop);
    void *user;
} pq_sink;

typedef struct pq_run_counts {
    int units;     /* units delivered to the sink */
    int chunks;    /* digest chunks hashed */
    int taken;     /* units taken over from other ranks */
    int failed_unit; /* the unit of the failure returned, -1 for none or a chunk */
} pq_run_counts;

/* Run every item of `rank` (pick as in pq_batch_fill, NULL: the plan's
 * order), delivering each to sink s. Stops at the first failure of an item
 * (a unit's message names the rank, the unit and its rows; n->failed_unit
 * is -1 for a chunk's) or of the sink, and returns it; *n says what was
 * done. The fault switch PQ_FAULT_KILL_RANK
 * kills the rank after its first unit is delivered (tests). */
pq_status pq_run_units(pq_job *j, int rank, pq_pick_fn pick, void *pick_user, const pq_sink *s, pq_run_counts *n);

/* The library's run on one process: every unit of the job, put straight
 * into its output (begun), with the quantize phase's time recorded. */
pq_status pq_run_local(pq_job *j);

#endif
