/* SPDX-License-Identifier: Apache-2.0 */
/* mlm_loss.c - cross-entropy of the masked positions, scalar, in row order. */
#include "train/mlm_loss.h"

#include <math.h>

double pq_mlm_loss(const float *logits, int64_t n, int64_t V, const int32_t *tgt, float weight,
                   float *dlogits)
{
    double total = 0.0;
    for (int64_t r = 0; r < n; r++) {
        const float *z = logits + r * V;
        float *dz = dlogits + r * V;
        float mx = z[0];
        for (int64_t j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < V; j++) sum += exp((double)z[j] - mx);
        double lse = mx + log(sum);
        total += lse - z[tgt[r]];
        for (int64_t j = 0; j < V; j++) {
            double p = exp((double)z[j] - lse);
            dz[j] = (float)(weight * (p - (j == tgt[r] ? 1.0 : 0.0)));
        }
    }
    return total;
}

/* log-sum-exp of a row, in double */
static double lse_row(const float *z, int64_t V)
{
    float mx = z[0];
    for (int64_t j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    double sum = 0.0;
    for (int64_t j = 0; j < V; j++) sum += exp((double)z[j] - mx);
    return mx + log(sum);
}

double pq_kd_loss(const float *logits, const float *teacher, int64_t n, int64_t V, float weight,
                  float *dlogits)
{
    double total = 0.0;
    for (int64_t r = 0; r < n; r++) {
        const float *z = logits + r * V, *t = teacher + r * V;
        double ls = lse_row(z, V), lt = lse_row(t, V);
        for (int64_t j = 0; j < V; j++) {
            double lpt = (double)t[j] - lt, lps = (double)z[j] - ls, pt = exp(lpt);
            total += pt * (lpt - lps);
            dlogits[r * V + j] = (float)(weight * (exp(lps) - pt));
        }
    }
    return total;
}
