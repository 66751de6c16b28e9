/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_comm.h - the ranks' side of GPTQ (gptq_run.h) over MPI: the exact
 * Hessian sum, a unit result from its rank to every rank, the status
 * agreement. */
#ifndef PQ_GPTQ_COMM_H
#define PQ_GPTQ_COMM_H

#include <mpi.h>

#include "worker/gptq_run.h"

/* The comm of rank `rank` of n_ranks over *comm (borrowed; must outlive
 * its use). */
pq_gptq_comm pq_gptq_comm_mpi(MPI_Comm *comm, int rank, int n_ranks);

#endif
