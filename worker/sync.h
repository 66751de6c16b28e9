/* SPDX-License-Identifier: Apache-2.0 */
/* sync.h - the collective agreements every rank takes part in before units
 * run: "did every rank succeed?" and "do we all have the same plan?". */
#ifndef PQ_SYNC_H
#define PQ_SYNC_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "pipeline/job.h"
#include "base/pq_err.h"

/* Collective. Every rank contributes its local status; all ranks return the
 * status of the lowest failing rank (PQ_OK if none). When that rank is not
 * rank 0, its detail line travels to rank 0 (as an Error message), so rank 0
 * can print it with pq_err_detail(), prefixed with "rank N: ". */
pq_status pq_sync_agree(MPI_Comm comm, pq_status local);

/* Complete *req without spinning: MPI_Test, then sleeps from 20 us doubling
 * up to max_sleep_ns, so a rank waiting for another (rank 0 evaluating, a
 * rank still computing) leaves the shared cores to it. PQ_ERR_MPI naming
 * `what` when a call fails. */
pq_status pq_sync_wait_quiet(MPI_Request *req, long max_sleep_ns, const char *what);

/* Threads per rank when the user left it to us: the node's cores shared by
 * the ranks on the node, so N ranks never run N x cores busy threads.
 * Collective. */
int pq_sync_threads_per_rank(MPI_Comm comm, int rank);

/* Collective. same[r] (n_ranks entries) tells whether rank r runs on rank
 * 0's machine, where it can write its codes into rank 0's OUT.partial
 * itself (the fault switch PQ_FAULT_REMOTE_RANKS counts the ranks it lists
 * as on other machines). Identical on every rank. */
pq_status pq_sync_coord_node(MPI_Comm comm, int n_ranks, bool *same);

/* A 64-bit FNV-1a hash of everything that must agree across ranks: the
 * resolved config (as JSON), the unit size, the rank count, and every tensor
 * (name, dtype, shape, action), unit (tensor, rows, assigned rank) and
 * source digest chunk (size, assigned rank). */
uint64_t pq_plan_hash(const pq_job *j, int n_ranks, int64_t unit_bytes);

/* Collective. Rank 0 broadcasts its Plan message; every other rank compares
 * it with its own and fails with PQ_ERR_MPI naming both hashes on mismatch.
 * The result is local: follow with pq_sync_agree. */
pq_status pq_sync_plan(MPI_Comm comm, const pq_job *j, int n_ranks, int64_t unit_bytes);

#endif
