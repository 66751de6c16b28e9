/* SPDX-License-Identifier: Apache-2.0 */
/* calib_mpi.h - distributed calibration: every rank runs its shard of the
 * calibration sequences (by sequence id, calib_run.h), then the statistics
 * are reduced exactly: min/max/per-channel absmax by MPI_MIN/MPI_MAX, counts
 * and histogram bins as uint64 MPI_SUM. The result is the same bits for any
 * number of ranks. */
#ifndef PQ_CALIB_MPI_H
#define PQ_CALIB_MPI_H

#include <mpi.h>

#include "calib_run.h"
#include "calib_static.h"
#include "job.h"
#include "calib_stats.h"
#include "pq_err.h"

/* Reduce c onto rank 0 (collective; other ranks keep their partial c). */
pq_status pq_calib_mpi_reduce(MPI_Comm comm, pq_calib *c);

/* Every rank agrees on the worst status (collective): a local failure on any
 * rank becomes the same status everywhere, with the detail kept locally. */
pq_status pq_calib_mpi_agree(MPI_Comm comm, pq_status local);

/* Collective: load the model, read `data` (all ranks), run this rank's
 * shard and reduce. Rank 0 receives the merged statistics (with provenance:
 * model sha256 and path, dataset hash, counts) in *out; others get NULL.
 * n_threads: forward threads per rank (0 = the node's cores / ranks on the
 * node). */
pq_status pq_calib_mpi_collect(MPI_Comm comm, const char *model, const char *data,
                               const pq_calib_data_opts *o, int n_threads, pq_calib **out);

/* The static scheme in `proteus quantize`: statistics from a store
 * (store != NULL: its model sha256 must match), else from calibration data
 * (data, or the bundled sample with PQ_CALIB_DEFAULT_SEQS sequences when
 * NULL, announced on stdout). Collective. On rank 0 arms
 * job->before_commit to write act qparams and /calibration; *ctx (owned,
 * pq_calib_static_done) must outlive the job's finish. */
typedef struct pq_calib_static_run pq_calib_static_run;
pq_status pq_calib_static_prepare(MPI_Comm comm, pq_job *job, const char *model,
                                  const char *store, const char *data, pq_calib_static_run **ctx);
void pq_calib_static_done(pq_calib_static_run *ctx); /* NULL is fine */

#endif
