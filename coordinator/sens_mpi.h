/* SPDX-License-Identifier: Apache-2.0 */
/* sens_mpi.h - the sensitivity units of `proteus optimize` over MPI ranks,
 * rank 0 included: unit u (decide/sens.h, Linear-major) runs on rank
 * u mod N, and the cells are combined by a sum in which every cell has one
 * non-zero contributor (x + 0 is exact), so every rank ends with the same
 * table, the same bytes as one rank measuring everything. */
#ifndef PQ_SENS_MPI_H
#define PQ_SENS_MPI_H

#include <mpi.h>
#include <stdbool.h>

#include "decide/sens.h"

/* Collective. Measure this rank's units of t (laid out by pq_sens_layout)
 * and fill every cell's d_loss, kl and estimate on every rank. progress:
 * rank 0 prints a line per unit it measured to stderr. A failure on any rank
 * is returned on every rank (its detail on the rank that met it). */
pq_status pq_sens_mpi_run(MPI_Comm comm, pq_sens *s, pq_sens_table *t, bool progress);

#endif
