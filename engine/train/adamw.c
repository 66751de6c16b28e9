/* SPDX-License-Identifier: Apache-2.0 */
/* adamw.c - AdamW and the warm-up + cosine schedule, scalar. */
#include "train/adamw.h"

#include <math.h>

void pq_adamw_update(const pq_adamw *h, int64_t step, double lr, double wd, float *p, const float *g, float *m,
                     float *v, int64_t n)
{
    float decay = (float)(1.0 - lr * wd), b1 = (float)h->beta1, b2 = (float)h->beta2;
    float a1 = (float)(1.0 - h->beta1), a2 = (float)(1.0 - h->beta2);
    double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)h->eps;
    for (int64_t i = 0; i < n; i++) {
        float pi = wd != 0.0 ? p[i] * decay : p[i];
        float mi = m[i] * b1 + a1 * g[i];
        float vi = v[i] * b2 + a2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + -step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

double pq_lr_at(double lr, int64_t warmup, int64_t n_steps, double min_frac, int64_t step)
{
    if (warmup > 0 && step <= warmup) return lr * (double)step / (double)warmup;
    int64_t span = n_steps - warmup;
    if (span <= 1) return lr;
    double t = (double)(step - warmup - 1) / (double)(span - 1);
    if (t > 1.0) t = 1.0;
    return lr * (min_frac + (1.0 - min_frac) * 0.5 * (1.0 + cos(M_PI * t)));
}
