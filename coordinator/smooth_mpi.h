/* SPDX-License-Identifier: Apache-2.0 */
/* smooth_mpi.h - SmoothQuant in `proteus quantize` over the ranks: the
 * calibration statistics (the static run's, else collected like the static
 * scheme collects them), the factors computed on rank 0 and broadcast, so
 * every rank smooths its units' rows with the same bits. */
#ifndef PQ_SMOOTH_MPI_H
#define PQ_SMOOTH_MPI_H

#include <mpi.h>

#include "base/pq_err.h"
#include "calib/calib_static.h"
#include "pipeline/job.h"
#include "quant/smooth.h"

/* Collective, after pq_calib_static_prepare (static: `calib` is rank 0's
 * armed run, NULL elsewhere; dynamic: NULL, and the statistics come from
 * `store`, `data` or the bundled sample, as the static scheme's do).
 * Sets the job's smoothing on every rank and, with `calib`, the smoothed
 * sites' act qparams. Returns owned *out (pq_smooth_free after the job is
 * destroyed). Failures are agreed: every rank returns the same status. */
pq_status pq_smooth_mpi_prepare(MPI_Comm comm, pq_job *job, const char *model, const char *store,
                                const char *data, pq_calib_static_run *calib, pq_smooth **out);

#endif
