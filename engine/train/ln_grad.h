/* SPDX-License-Identifier: Apache-2.0 */
/* ln_grad.h - LayerNorm forward that keeps its statistics, and its backward
 * (docs/esm2.md 3.2: biased variance, eps inside the square root). */
#ifndef PQ_LN_GRAD_H
#define PQ_LN_GRAD_H

#include <stdint.h>

/* y = (x - mean) * rstd * w + b over each of n_rows rows of width d; the
 * row's mean and rstd = 1/sqrt(var + eps) go to mean[r], rstd[r] (mean and
 * variance accumulated in double). y must not alias x. Rows in parallel
 * over n_threads. */
void pq_ln_fwd(const float *x, int64_t n_rows, int64_t d, const float *w, const float *b, float eps,
               float *y, float *mean, float *rstd, int n_threads);

/* Backward of pq_ln_fwd: from dy and the forward's x, mean, rstd,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, xhat =
 * (x - mean) * rstd. accumulate != 0 adds into dx, else overwrites it.
 * dw[j] += sum_r dy[r,j] xhat[r,j] and db[j] += sum_r dy[r,j], summed in
 * row order (the same bits for any thread count). */
void pq_ln_bwd(const float *dy, const float *x, const float *mean, const float *rstd, int64_t n_rows,
               int64_t d, const float *w, float *dx, int accumulate, float *dw, float *db, int n_threads);

#endif
