/* SPDX-License-Identifier: Apache-2.0 */
/* calib_mpi.h - distributed calibration: every rank runs its shard of the
 * calibration sequences (by sequence id, calib_run.h), or, with pipeline
 * stages, its range of layers on the activations of its replica's shard
 * streamed from the previous stage; then the statistics
 * are reduced exactly: min/max/per-channel absmax by MPI_MIN/MPI_MAX, counts
 * and histogram bins as uint64 MPI_SUM. The result is the same bits for any
 * number of ranks. */
#ifndef PQ_CALIB_MPI_H
#define PQ_CALIB_MPI_H

#include <mpi.h>

#include "calib/calib_run.h"
#include "calib/calib_static.h"
#include "pipeline/job.h"
#include "calib/calib_stats.h"
#include "base/pq_err.h"

/* Reduce c onto rank 0 (collective; other ranks keep their partial c). */
pq_status pq_calib_mpi_reduce(MPI_Comm comm, pq_calib *c);

/* Every rank agrees on the worst status (collective): a local failure on any
 * rank becomes the same status everywhere, with the detail kept locally. */
pq_status pq_calib_mpi_agree(MPI_Comm comm, pq_status local);

/* Layers [*layer_begin, *layer_end) of pipeline stage `stage` of n_stages
 * over num_layers layers: contiguous, sizes differing by at most one
 * (begin = stage * L / P). */
void pq_calib_stage_layers(int num_layers, int n_stages, int stage, int *layer_begin, int *layer_end);

/* Collective: load the model, read `data` (all ranks), run this rank's
 * shard and reduce. Rank 0 receives the merged statistics (with provenance:
 * model sha256 and path, dataset hash, counts) in *out; others get NULL.
 * n_threads: forward threads per rank (0 = the node's cores / ranks on the
 * node). n_stages (P, 0 or 1 = none): the N ranks form N / P data-parallel
 * replicas of P pipeline stages, rank = replica * P + stage; replica d runs
 * the sequences pq_calib_plan gives rank d of N / P, in micro-batches that
 * travel stage to stage. PQ_ERR_CONFIG (on every rank) when P does not
 * divide N or exceeds the model's layers. The statistics are the same bits
 * for any N and P. */
pq_status pq_calib_mpi_collect(MPI_Comm comm, const char *model, const char *data,
                               const pq_calib_data_opts *o, int n_threads, int n_stages,
                               pq_calib **out);

/* The static scheme in `proteus quantize`: statistics from a store
 * (store != NULL: its model sha256 must match), else from calibration data
 * (data, or the bundled sample with PQ_CALIB_DEFAULT_SEQS sequences when
 * NULL, announced on stdout). Collective. On rank 0 arms
 * job->before_commit to write act qparams and /calibration
 * (pq_calib_static_arm); *ctx (owned, pq_calib_static_done) must outlive
 * the job's finish. */
pq_status pq_calib_static_prepare(MPI_Comm comm, pq_job *job, const char *model,
                                  const char *store, const char *data, pq_calib_static_run **ctx);

#endif
