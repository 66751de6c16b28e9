/* SPDX-License-Identifier: Apache-2.0 */
/* ln_grad.c - LayerNorm forward with saved statistics and its backward;
 * scalar code, rows in parallel with OpenMP. */
#include "train/ln_grad.h"

#include <math.h>

#include "pq_config.h"

void pq_ln_fwd(const float *x, int64_t n_rows, int64_t d, const float *w, const float *b, float eps,
               float *y, float *mean, float *rstd, int n_threads)
{
    (void)n_threads;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
#endif
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * d;
        double s = 0.0, s2 = 0.0;
        for (int64_t j = 0; j < d; j++) s += xr[j];
        double mu = s / (double)d;
        for (int64_t j = 0; j < d; j++) {
            double t = xr[j] - mu;
            s2 += t * t;
        }
        float m = (float)mu, rs = (float)(1.0 / sqrt(s2 / (double)d + (double)eps));
        mean[r] = m;
        rstd[r] = rs;
        float *yr = y + r * d;
        for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
    }
}

void pq_ln_bwd(const float *dy, const float *x, const float *mean, const float *rstd, int64_t n_rows,
               int64_t d, const float *w, float *dx, int accumulate, float *dw, float *db, int n_threads)
{
    (void)n_threads;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
#endif
    for (int64_t r = 0; r < n_rows; r++) {
        const float *dyr = dy + r * d, *xr = x + r * d;
        float m = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0;
        for (int64_t j = 0; j < d; j++) {
            float g = dyr[j] * w[j], xh = (xr[j] - m) * rs;
            sg += g;
            sgx += (double)g * xh;
        }
        float mg = (float)(sg / (double)d), mgx = (float)(sgx / (double)d);
        float *dxr = dx + r * d;
        for (int64_t j = 0; j < d; j++) {
            float xh = (xr[j] - m) * rs;
            float v = rs * (dyr[j] * w[j] - mg - xh * mgx);
            dxr[j] = accumulate ? dxr[j] + v : v;
        }
    }
    for (int64_t r = 0; r < n_rows; r++) {
        const float *dyr = dy + r * d, *xr = x + r * d;
        float m = mean[r], rs = rstd[r];
        for (int64_t j = 0; j < d; j++) {
            dw[j] += dyr[j] * ((xr[j] - m) * rs);
            db[j] += dyr[j];
        }
    }
}
