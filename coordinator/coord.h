/* SPDX-License-Identifier: Apache-2.0 */
/* coord.h - rank 0's part of a run: its own units through the runner
 * (runner.h), every other rank's results gathered as they arrive, checked
 * and written, and everyone stopped on the first failure. */
#ifndef PQ_COORD_H
#define PQ_COORD_H

#include <mpi.h>
#include <stdbool.h>

#include "worker/claims.h"
#include "pipeline/job.h"
#include "base/pq_err.h"

/* Called after each unit's rows were written (any rank's unit), with the
 * unit, the rank that computed it, and its SQNR in dB. */
typedef void (*pq_coord_unit_fn)(void *user, const pq_unit *u, int rank, double sqnr_db);

typedef struct pq_coord_opts {
    double stop_grace_s;          /* after a failure, how long workers get to answer */
    pq_status initial_error;      /* rank 0 failed before the loop (its detail is recorded):
                                   * stop everyone and only drain */
    pq_coord_unit_fn on_unit;     /* optional */
    void *user;
    const bool *same_node;        /* per rank: on rank 0's machine, sent the output
                                   * layout so it writes its own codes; NULL: none */
    pq_claims *claims;            /* units ranks on this machine may take over; NULL: none */
} pq_coord_opts;

/* Run the quantize phase on rank 0 of comm (n_ranks ranks; j's output begun).
 * Returns PQ_OK when every unit was written. On failure the detail names the
 * failing rank and unit; *unresponsive is set when some worker did not
 * answer the stop within stop_grace_s (the caller then MPI_Aborts); *stop_sent
 * (false on entry) when the early Shutdown went out. Every worker has sent
 * its final message on return unless *unresponsive. */
pq_status pq_coord_run(pq_job *j, MPI_Comm comm, int n_ranks, const pq_coord_opts *o,
                       bool *unresponsive, bool *stop_sent);

/* Send the Shutdown (status st) to every worker unless *sent (an early
 * one went out during pq_coord_run); sets *sent. */
pq_status pq_coord_shutdown(MPI_Comm comm, int n_ranks, pq_status st, bool *sent);

#endif
