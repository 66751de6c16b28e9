/* SPDX-License-Identifier: Apache-2.0 */
/* train_mpi.h - data-parallel training steps over MPI ranks.
 *
 * Every rank holds the whole trainer (same model, options, data). A step's
 * micro-batch mb is computed whole by rank mb mod N. The update is sharded
 * over the fixed chunks of train/train_update.h: rank r owns the chunks
 * starting in its n_floats / N share of the parameters. For each
 * micro-batch in order, its owner scatters the gradient's shards and every
 * rank adds its shard into the step's sum (from zero, as pq_trainer_step
 * does on one process: every float summed over the micro-batches in their
 * order, whatever N). Each rank runs the LSQ backward of its chunks, the
 * per-chunk squared norms are gathered (the global norm summed in chunk
 * order), each rank clips and applies AdamW to its chunks, and the updated
 * weights and steps are gathered on every rank. So the weights after any
 * number of steps are the same bits for any N and thread count; the AdamW
 * moments of a chunk live on its owner until pq_train_mpi_gather_state. */
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

/* Collective: the AdamW moments of every chunk (weights and steps) onto
 * rank 0, so that its trainer holds the whole training state (before it
 * writes a checkpoint). */
pq_status pq_train_mpi_gather_state(MPI_Comm comm, pq_trainer *tr);

/* Collective: wait for every rank without keeping a core busy (a rank done
 * early sleeps while the others compute on the cores they share). */
pq_status pq_train_mpi_wait_all(MPI_Comm comm);

#endif
