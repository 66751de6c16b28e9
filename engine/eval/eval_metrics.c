/* SPDX-License-Identifier: Apache-2.0 */
/* eval_metrics.c - output comparison metrics for quantized models. */
#include "eval/eval_metrics.h"

#include <math.h>

double pq_eval_kl(const float *ref, const float *q, int V)
{
    double mr = ref[0], mq = q[0];
    for (int v = 1; v < V; v++) {
        if (ref[v] > mr) mr = ref[v];
        if (q[v] > mq) mq = q[v];
    }
    double sr = 0.0, sq = 0.0;
    for (int v = 0; v < V; v++) {
        sr += exp((double)ref[v] - mr);
        sq += exp((double)q[v] - mq);
    }
    double lzr = mr + log(sr), lzq = mq + log(sq), kl = 0.0;
    for (int v = 0; v < V; v++) {
        double lp = (double)ref[v] - lzr, lq = (double)q[v] - lzq;
        kl += exp(lp) * (lp - lq);
    }
    return kl < 0.0 ? 0.0 : kl; /* rounding can leave -1e-17 for equal rows */
}

double pq_eval_cosine(const float *a, const float *b, int64_t n)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0.0 && bb == 0.0) return 1.0;
    if (aa == 0.0 || bb == 0.0) return 0.0;
    double c = ab / (sqrt(aa) * sqrt(bb));
    return c > 1.0 ? 1.0 : c;
}

void pq_eval_sqnr_add(pq_eval_sqnr *s, const float *ref, const float *test, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double d = (double)ref[i] - test[i];
        s->sig += (double)ref[i] * ref[i];
        s->err += d * d;
    }
}

double pq_eval_sqnr_db(const pq_eval_sqnr *s)
{
    if (s->err == 0.0) return INFINITY;
    return 10.0 * log10(s->sig / s->err);
}

void pq_eval_mean_pool(const float *rows, int64_t T, int64_t D, float *out)
{
    for (int64_t j = 0; j < D; j++) {
        double acc = 0.0;
        for (int64_t t = 1; t < T - 1; t++) acc += rows[t * D + j];
        out[j] = (float)(acc / (double)(T - 2));
    }
}

int pq_eval_argmax(const float *row, int V)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > row[best]) best = v;
    return best;
}

int pq_eval_ece_bin(double p)
{
    int b = (int)ceil(p * PQ_EVAL_ECE_BINS) - 1;
    return b < 0 ? 0 : b >= PQ_EVAL_ECE_BINS ? PQ_EVAL_ECE_BINS - 1 : b;
}

void pq_eval_calib_add_one(pq_eval_calib *c, double p, bool correct)
{
    int b = pq_eval_ece_bin(p);
    c->n++;
    c->conf += p;
    c->bin_n[b]++;
    c->bin_correct[b] += correct;
    c->bin_conf[b] += p;
}

void pq_eval_calib_add(pq_eval_calib *c, const float *logits, const int32_t *orig, int64_t N, int V)
{
    for (int64_t t = 0; t < N; t++) {
        if (orig[t] < 0) continue;
        const float *lg = logits + t * V;
        int best = pq_eval_argmax(lg, V);
        double se = 0.0;
        for (int v = 0; v < V; v++) se += exp((double)lg[v] - lg[best]);
        pq_eval_calib_add_one(c, 1.0 / se, best == orig[t]);
    }
}

void pq_eval_calib_merge(pq_eval_calib *into, const pq_eval_calib *c)
{
    into->n += c->n;
    into->conf += c->conf;
    for (int b = 0; b < PQ_EVAL_ECE_BINS; b++) {
        into->bin_n[b] += c->bin_n[b];
        into->bin_correct[b] += c->bin_correct[b];
        into->bin_conf[b] += c->bin_conf[b];
    }
}

double pq_eval_calib_confidence(const pq_eval_calib *c)
{
    return c->conf / (double)c->n;
}

double pq_eval_calib_ece(const pq_eval_calib *c)
{
    if (!c->n) return NAN;
    double e = 0.0;
    for (int b = 0; b < PQ_EVAL_ECE_BINS; b++) e += fabs((double)c->bin_correct[b] - c->bin_conf[b]);
    return e / (double)c->n;
}

void pq_eval_mlm_add(pq_eval_mlm *s, const float *logits, const int32_t *orig, int64_t N, int V)
{
    for (int64_t t = 0; t < N; t++) {
        if (orig[t] < 0) continue;
        const float *lg = logits + t * V;
        int best = 0;
        double mx = lg[0];
        for (int v = 1; v < V; v++)
            if (lg[v] > mx) { mx = lg[v]; best = v; }
        /* log-sum-exp around the max: no overflow for large logits */
        double se = 0.0;
        for (int v = 0; v < V; v++) se += exp((double)lg[v] - mx);
        s->nll += -((double)lg[orig[t]] - mx - log(se));
        s->n_masked++;
        s->n_correct += (best == orig[t]);
    }
}

double pq_eval_mlm_accuracy(const pq_eval_mlm *s)
{
    return (double)s->n_correct / (double)s->n_masked;
}

double pq_eval_mlm_perplexity(const pq_eval_mlm *s)
{
    return exp(s->nll / (double)s->n_masked);
}
