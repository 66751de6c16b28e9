/* SPDX-License-Identifier: Apache-2.0 */
/* sens_mpi.h - the sensitivity units of `proteus optimize` over MPI ranks,
 * rank 0 included: unit u (decide/sens.h, Linear-major) runs on rank
 * u mod N, and the cells are combined by a sum in which every cell has one
 * non-zero contributor (x + 0 is exact), so every rank ends with the same
 * table, the same bytes as one rank measuring everything.
 *
 * Not the unit runner (worker/runner.h): its items are a quantize plan's
 * units, run by the job one per thread in a batch, their quantized rows
 * delivered to rank 0's output, stolen through claims on plan units. A
 * sensitivity unit is one forward of the rank's one in-memory model, with
 * one weight overwritten and put back: two cannot run at once in a
 * process, each already uses every thread, and its three numbers go to
 * every rank. Units are Linear-major, so u mod N gives each rank units of
 * every layer: the split stays even though a unit of layer l costs the
 * layers from l on (decide/sens.h). */
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
