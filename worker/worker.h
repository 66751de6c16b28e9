/* SPDX-License-Identifier: Apache-2.0 */
/* worker.h - what every rank does with its own units: run them (rank 0 too)
 * and, on ranks >= 1, send the results to rank 0 and obey its Shutdown. */
#ifndef PQ_WORKER_H
#define PQ_WORKER_H

#include <mpi.h>
#include <stdbool.h>

#include "worker/claims.h"
#include "pipeline/job.h"
#include "base/pq_err.h"

/* Run unit u of j on this rank into *r (owned buffers: pq_unit_result_free).
 * On failure the detail names the rank, the unit and its tensor rows. */
pq_status pq_worker_run_unit(pq_job *j, const pq_unit *u, int rank, pq_unit_result *r);

/* Called after a unit of this rank finished, for the test-only fault
 * injection that kills a rank mid-run. */
void pq_worker_after_unit(int rank);

/* Bytes of each raw buffer of a result, in send order (codes, scale,
 * zero_point (0 when symmetric), row_sum_sq, row_err_sq, row_max_err), as
 * the plan dictates for unit u. Returns the number of buffers (6). */
int pq_worker_result_sizes(const pq_job *j, const pq_unit *u, size_t sizes[6]);

/* Every rank, before pq_sync_plan: assign the units and the chunks of the
 * source's tree digest to n_ranks ranks (same_node[r]: rank r writes its own
 * codes, pq_sync_coord_node; NULL: none does), counting rank 0's writing as load
 * so that every rank finishes at about the same time, and set
 * j->defer_source_hash (the digest is gathered from the ranks' leaves).
 * Deterministic: all ranks get the same plan. */
void pq_worker_assign(pq_job *j, int n_ranks, const bool *same_node);

/* Source digest chunks hashed between two looks at the messages: one per
 * hashing thread, at most a HashLeaves message's worth (PQ_WIRE_MAX_LEAVES). */
int pq_worker_hash_batch(const pq_job *j);

/* The loop of a rank >= 1: hash its chunks of the source and send their
 * leaves (HashLeaves), then run its units in plan order (reading the next
 * one's rows ahead) and the units it can take over from other ranks
 * (claims; NULL: its own only), sending each result, checking for an early
 * Shutdown between steps; end with a Done or an Error after a failure, then
 * wait for rank 0's final Shutdown. Once rank 0's OutputLayout has come
 * (ranks on its machine), the codes go straight into `partial` (OUT.partial;
 * NULL: never) and only the rest of each result is sent. Returns the run's
 * final status as rank 0 announced it (or a local MPI/protocol failure).
 * Prints nothing but --verbose lines. */
pq_status pq_worker_main(pq_job *j, MPI_Comm comm, int rank, const char *partial, pq_claims *claims);

#endif
