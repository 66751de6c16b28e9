/* SPDX-License-Identifier: Apache-2.0 */
/* gelu_grad.h - the exact (erf) GELU of ESM-2 and its derivative. */
#ifndef PQ_GELU_GRAD_H
#define PQ_GELU_GRAD_H

#include <stdint.h>

/* y[i] = (u[i] * 0.5) * (1 + erf(u[i] / 1.41421356)) for n elements; y may
 * equal u. Parallel over n_threads in fixed blocks. */
void pq_gelu_fwd(const float *u, int64_t n, float *y, int n_threads);

/* From the pre-activation u and the upstream gradient: du[i] = dy[i] *
 * gelu'(u[i]) with gelu'(u) = 0.5 (1 + erf(u/sqrt 2)) + u exp(-u^2/2) /
 * sqrt(2 pi); when y is not NULL it also gets gelu(u) (the backward's
 * recomputation of the activation). du may equal dy. */
void pq_gelu_bwd(const float *u, const float *dy, int64_t n, float *du, float *y, int n_threads);

#endif
