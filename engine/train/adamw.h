/* SPDX-License-Identifier: Apache-2.0 */
/* adamw.h - the AdamW update (Loshchilov & Hutter), with the operation
 * order of torch.optim.AdamW (single-tensor path), and the learning-rate
 * schedule of a training run. */
#ifndef PQ_ADAMW_H
#define PQ_ADAMW_H

#include <stdint.h>

typedef struct pq_adamw {
    double beta1, beta2, eps;
} pq_adamw;

/* One step (step counts from 1) on n elements, in place on p, m, v with the
 * gradient g:
 *   p = p * (1 - lr wd); m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g^2;
 *   p = p - lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
 * with the scalars computed in double and applied in fp32, as torch does. */
void pq_adamw_update(const pq_adamw *h, int64_t step, double lr, double wd, float *p, const float *g, float *m,
                     float *v, int64_t n);

/* Learning rate of step (from 1) of n_steps: linear warm-up from lr/warmup to
 * lr over the first warmup steps, then cosine decay to lr * min_frac at the
 * last step. */
double pq_lr_at(double lr, int64_t warmup, int64_t n_steps, double min_frac, int64_t step);

#endif
