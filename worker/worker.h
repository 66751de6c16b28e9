/* SPDX-License-Identifier: Apache-2.0 */
/* worker.h - what every rank does with its own units: run them (rank 0 too)
 * and, on ranks >= 1, send the results to rank 0 and obey its Shutdown. */
#ifndef PQ_WORKER_H
#define PQ_WORKER_H

#include <mpi.h>

#include "job.h"
#include "pq_err.h"

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

/* The rank that hashes the source for the source_sha256 attribute, so that
 * rank 0 (which writes the output) does not: the last rank when there are
 * several, -1 for a single rank (rank 0 hashes, as in a plain run). */
int pq_worker_hasher_rank(int n_ranks);

/* Every rank, before pq_sync_plan: assign the units to n_ranks ranks,
 * counting the hasher's hash and rank 0's writing as load so that every
 * rank finishes at about the same time, and set j->defer_source_hash when
 * another rank hashes. Deterministic: all ranks get the same plan. */
void pq_worker_assign(pq_job *j, int n_ranks);

/* The loop of a rank >= 1: run its units in plan order (reading the next
 * one's rows ahead), send each result, stop early on a Shutdown; the hasher
 * rank then hashes the source; end with a Done (carrying the hash from the
 * hasher) or an Error after a failure, then wait for rank 0's final Shutdown. Returns the run's final status as
 * rank 0 announced it (or a local MPI/protocol failure). Prints nothing. */
pq_status pq_worker_main(pq_job *j, MPI_Comm comm, int rank);

#endif
