/* SPDX-License-Identifier: Apache-2.0 */
/* linear_grad.h - a Linear layer y = x W^T + b (W [out, in] row-major) and
 * its backward, the matrix products on the BLAS (model/blas.h). */
#ifndef PQ_LINEAR_GRAD_H
#define PQ_LINEAR_GRAD_H

#include <stdint.h>

#include "base/pq_err.h"

/* y[n, out] = x[n, in] W^T + b (b may be NULL), on n_threads; the same
 * bits for any thread count. Errors: pq_sgemm's. */
pq_status pq_linear_fwd(const float *x, int64_t n, int64_t in, const float *W, const float *b, int64_t out,
                        float *y, int n_threads);

/* Backward from dy[n, out]: dW[out, in] += dy^T x (reduction over the n
 * rows); db[out] += column sums of dy in row order (db may be NULL); dx[n,
 * in] = dy W, added into dx when accumulate != 0 (dx NULL: not wanted).
 * On n_threads, the same bits for any thread count. Errors: pq_sgemm's. */
pq_status pq_linear_bwd(const float *dy, const float *x, int64_t n, int64_t in, const float *W, int64_t out,
                        float *dW, float *db, float *dx, int accumulate, int n_threads);

#endif
