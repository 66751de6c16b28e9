/* SPDX-License-Identifier: Apache-2.0 */
/* train_mpi.h - data-parallel training steps over MPI ranks.
 *
 * Every rank holds the whole trainer (same model, options, data). A step's
 * micro-batch mb is computed whole by rank mb mod N; then, in micro-batch
 * order, its owner broadcasts the gradient and every rank adds it into the
 * step's sum (from zero, as pq_trainer_step does on one process), so every
 * rank applies the same update to the same bits: the weights after any
 * number of steps are the same for any N and thread count. */
#ifndef PQ_TRAIN_MPI_H
#define PQ_TRAIN_MPI_H

#include <mpi.h>

#include "base/pq_err.h"
#include "train/trainer.h"

/* Collective over comm: one step of tr (the same trainer state on every
 * rank). *loss: the step's mean loss. A failure on any rank (a NaN loss
 * names its step and tensor) is agreed (worker/sync.h): every rank returns
 * it, the detail reaching rank 0. */
pq_status pq_train_mpi_step(MPI_Comm comm, pq_trainer *tr, double *loss);

#endif
