/* SPDX-License-Identifier: Apache-2.0 */
/* gelu_grad.c - erf GELU forward and backward, scalar, blocks in parallel. */
#include "train/gelu_grad.h"

#include <math.h>
#include <stddef.h>

#include "pq_config.h"

#define BLOCK 4096

/* One pass over fixed blocks: y = gelu(u) when y is given; du = dy *
 * gelu'(u) when dy is given. */
static void gelu_pass(const float *u, const float *dy, int64_t n, float *du, float *y, int n_threads)
{
    (void)n_threads;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    int64_t nb = (n + BLOCK - 1) / BLOCK;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
#endif
    for (int64_t k = 0; k < nb; k++) {
        int64_t i1 = (k + 1) * BLOCK < n ? (k + 1) * BLOCK : n;
        for (int64_t i = k * BLOCK; i < i1; i++) {
            float x = u[i], e = erff(x / 1.41421356f);
            if (y) y[i] = (x * 0.5f) * (1.0f + e);
            if (dy) du[i] = dy[i] * (0.5f * (1.0f + e) + x * expf(-0.5f * x * x) * inv_sqrt_2pi);
        }
    }
}

void pq_gelu_fwd(const float *u, int64_t n, float *y, int n_threads)
{
    gelu_pass(u, NULL, n, NULL, y, n_threads);
}

void pq_gelu_bwd(const float *u, const float *dy, int64_t n, float *du, float *y, int n_threads)
{
    gelu_pass(u, dy, n, du, y, n_threads);
}
