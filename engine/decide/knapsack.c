/* SPDX-License-Identifier: Apache-2.0 */
/* knapsack.c - multiple-choice knapsack over a sensitivity table (knapsack.h). */
#include "decide/knapsack.h"

#include <stdlib.h>
#include <string.h>

double pq_knapsack_cost(const pq_sens_cell *c)
{
    return c->kl > 0 ? c->kl : 0.0;
}

/* The DP over budget steps: best[c] the least cost within c steps,
 * pick[i * (R + 1) + c] the candidate of Linear i there. */
typedef struct dp {
    int R;
    int64_t step, base;
    double *best;
    unsigned char *pick;
    int *w;          /* [n_linears * n_cands] steps of each cell's extra bytes */
} dp;

static void dp_free(dp *d)
{
    free(d->best);
    free(d->pick);
    free(d->w);
}

static pq_status dp_run(const pq_sens_table *t, int64_t span, int R, dp *d)
{
    int n = t->n_linears, m = t->n_cands;
    memset(d, 0, sizeof *d);
    d->R = R;
    d->best = malloc((size_t)(R + 1) * sizeof *d->best);
    double *next = malloc((size_t)(R + 1) * sizeof *next);
    d->pick = malloc((size_t)n * (size_t)(R + 1));
    d->w = malloc((size_t)n * (size_t)m * sizeof *d->w);
    if (!d->best || !next || !d->pick || !d->w) {
        free(next);
        dp_free(d);
        return pq_err(PQ_ERR_RESOURCE, "out of memory for the knapsack");
    }
    d->step = span / R + (span % R != 0);
    if (d->step < 1) d->step = 1;
    for (int i = 0; i < n; i++) {
        int64_t mn = pq_sens_at(t, i, 0)->bytes;
        for (int j = 1; j < m; j++)
            if (pq_sens_at(t, i, j)->bytes < mn) mn = pq_sens_at(t, i, j)->bytes;
        d->base += mn;
        for (int j = 0; j < m; j++) {
            int64_t x = pq_sens_at(t, i, j)->bytes - mn, s = x / d->step + (x % d->step != 0);
            d->w[i * m + j] = s > R ? R + 1 : (int)s;
        }
    }
    for (int c = 0; c <= R; c++) d->best[c] = 0;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c <= R; c++) {
            double b = -1;
            int pj = 0;
            for (int j = 0; j < m; j++) {
                int wj = d->w[i * m + j];
                if (wj > c) continue;
                double v = d->best[c - wj] + pq_knapsack_cost(pq_sens_at(t, i, j));
                /* ties: fewer bytes, then the first candidate */
                if (b < 0 || v < b || (v == b && pq_sens_at(t, i, j)->bytes < pq_sens_at(t, i, pj)->bytes)) {
                    b = v;
                    pj = j;
                }
            }
            next[c] = b; /* >= 0 always: the smallest candidate has 0 steps */
            d->pick[(size_t)i * (size_t)(R + 1) + (size_t)c] = (unsigned char)pj;
        }
        memcpy(d->best, next, (size_t)(R + 1) * sizeof *next);
    }
    free(next);
    return PQ_OK;
}

static void dp_choice(const pq_sens_table *t, const dp *d, int c, int *choice, int64_t *bytes, double *cost)
{
    *bytes = 0;
    *cost = 0;
    for (int i = t->n_linears - 1; i >= 0; i--) {
        int j = d->pick[(size_t)i * (size_t)(d->R + 1) + (size_t)c];
        choice[i] = j;
        c -= d->w[i * t->n_cands + j];
    }
    for (int i = 0; i < t->n_linears; i++) {
        *bytes += pq_sens_at(t, i, choice[i])->bytes;
        *cost += pq_knapsack_cost(pq_sens_at(t, i, choice[i]));
    }
}

static int64_t span_of(const pq_sens_table *t)
{
    int64_t s = 0;
    for (int i = 0; i < t->n_linears; i++) {
        int64_t mn = pq_sens_at(t, i, 0)->bytes, mx = mn;
        for (int j = 1; j < t->n_cands; j++) {
            int64_t b = pq_sens_at(t, i, j)->bytes;
            if (b < mn) mn = b;
            if (b > mx) mx = b;
        }
        s += mx - mn;
    }
    return s;
}

pq_status pq_knapsack_solve(const pq_sens_table *t, int64_t budget, int resolution, int *choice, int64_t *bytes,
                            double *cost)
{
    dp d;
    int64_t span = span_of(t), base = 0;
    for (int i = 0; i < t->n_linears; i++) {
        int64_t mn = pq_sens_at(t, i, 0)->bytes;
        for (int j = 1; j < t->n_cands; j++)
            if (pq_sens_at(t, i, j)->bytes < mn) mn = pq_sens_at(t, i, j)->bytes;
        base += mn;
    }
    if (budget < base)
        return pq_err(PQ_ERR_ACCURACY, "a budget of %lld bytes for the Linears: the smallest choice takes %lld",
                      (long long)budget, (long long)base);
    pq_status st = dp_run(t, span > 0 ? span : 1, resolution, &d);
    if (st) return st;
    /* whole steps within the room: rounded-up weights then never exceed it */
    int64_t room = budget - base, c = room / d.step;
    dp_choice(t, &d, c > resolution ? resolution : (int)c, choice, bytes, cost);
    dp_free(&d);
    return PQ_OK;
}

void pq_front_free(pq_front_pt *pts, int n)
{
    for (int i = 0; pts && i < n; i++) free(pts[i].choice);
    free(pts);
}

pq_status pq_knapsack_front(const pq_sens_table *t, int resolution, pq_front_pt **pts, int *n)
{
    dp d;
    *pts = NULL;
    *n = 0;
    int64_t span = span_of(t);
    pq_status st = dp_run(t, span > 0 ? span : 1, resolution, &d);
    if (st) return st;
    pq_front_pt *out = calloc((size_t)resolution + 1, sizeof *out);
    int *ch = malloc((size_t)t->n_linears * sizeof *ch);
    int k = 0;
    if (!out || !ch) st = pq_err(PQ_ERR_RESOURCE, "out of memory for the front");
    for (int c = 0; !st && c <= resolution; c++) {
        int64_t b;
        double cost;
        dp_choice(t, &d, c, ch, &b, &cost);
        if (k && cost >= out[k - 1].cost) continue;
        if (!(out[k].choice = malloc((size_t)t->n_linears * sizeof *ch))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory for the front");
            break;
        }
        memcpy(out[k].choice, ch, (size_t)t->n_linears * sizeof *ch);
        out[k].bytes = b;
        out[k++].cost = cost;
    }
    free(ch);
    dp_free(&d);
    if (st) {
        pq_front_free(out, k);
        return st;
    }
    *pts = out;
    *n = k;
    return PQ_OK;
}
