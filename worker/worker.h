/* SPDX-License-Identifier: Apache-2.0 */
/* worker.h - what a rank >= 1 does: run its work items (runner.h), ship the
 * results to rank 0 and obey its Shutdown. */
#ifndef PQ_WORKER_H
#define PQ_WORKER_H

#include <mpi.h>

#include "base/pq_err.h"
#include "pipeline/job.h"
#include "worker/claims.h"

/* The loop of a rank >= 1: its chunks of the source digest (leaves to rank
 * 0 in HashLeaves messages), then its units in plan order and the units it
 * can take over from other ranks (claims; NULL: its own only), each result
 * sent to rank 0, looking for an early Shutdown between batches; end with a
 * Done or an Error after a failure, then wait for rank 0's final Shutdown.
 * Once rank 0's OutputLayout has come (ranks on its machine), the codes go
 * straight into `partial` (OUT.partial; NULL: never) and only the rest of
 * each result is sent. Returns the run's final status as rank 0 announced
 * it (or a local MPI/protocol failure). Prints nothing but --verbose lines. */
pq_status pq_worker_main(pq_job *j, MPI_Comm comm, int rank, const char *partial, pq_claims *claims);

#endif
