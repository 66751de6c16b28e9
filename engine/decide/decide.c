/* SPDX-License-Identifier: Apache-2.0 */
/* decide.c - the constrained search over the predicted front (decide.h). */
#include "decide/decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide/knapsack.h"

double pq_measured_drop_points(const pq_measured *m)
{
    return 100.0 * (m->ref_accuracy - m->accuracy);
}

double pq_measured_speedup(const pq_measured *m)
{
    return m->ref_tokens_per_s > 0 ? m->tokens_per_s / m->ref_tokens_per_s : 0.0;
}

bool pq_constraints_met(const pq_constraints *c, const pq_measured *m, char (*why)[256], int *n_why)
{
    int n = 0;
    if (c->max_size > 0 && m->bytes + c->size_slack > c->max_size) {
        if (why) snprintf(why[n], 256, "--max-size %lld bytes: %s takes %lld bytes (+ %lld kept free)",
                          (long long)c->max_size, m->label, (long long)m->bytes, (long long)c->size_slack);
        n++;
    }
    if (c->max_drop >= 0 && pq_measured_drop_points(m) > c->max_drop) {
        if (why) snprintf(why[n], 256, "--max-drop %g points: %s loses %.3f points (accuracy %.4f against %.4f)",
                          c->max_drop, m->label, pq_measured_drop_points(m), m->accuracy, m->ref_accuracy);
        n++;
    }
    if (c->min_speedup > 0 && pq_measured_speedup(m) < c->min_speedup) {
        if (why) snprintf(why[n], 256, "--min-speedup %g: %s runs %.3fx fp32's tokens/s", c->min_speedup, m->label,
                          pq_measured_speedup(m));
        n++;
    }
    if (n_why) *n_why = n;
    return n == 0;
}

bool pq_decision_on_front(const pq_decision *d, int i)
{
    const pq_measured *a = &d->m[i];
    for (int k = 0; k < d->n_m; k++) {
        const pq_measured *b = &d->m[k];
        if (k != i && b->bytes <= a->bytes && b->accuracy >= a->accuracy &&
            (b->bytes < a->bytes || b->accuracy > a->accuracy))
            return false;
    }
    return true;
}

typedef struct search {
    const pq_sens_table *t;
    const pq_constraints *c;
    pq_measure_fn fn;
    void *user;
    pq_decision *d;
    pq_front_pt *f;
    int n_f;
    int *front_m;        /* [n_f]: index into d->m, -1 not measured yet */
    int64_t overhead;    /* file bytes beyond the cells' bytes, the largest seen */
} search;

static pq_status measure(search *s, const int *choice, const char *label, int *idx)
{
    pq_decision *d = s->d;
    pq_measured *nm = realloc(d->m, (size_t)(d->n_m + 1) * sizeof *nm);
    if (!nm) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    d->m = nm;
    pq_measured *m = &d->m[d->n_m];
    memset(m, 0, sizeof *m);
    if (!(m->choice = malloc((size_t)s->t->n_linears * sizeof *m->choice)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    memcpy(m->choice, choice, (size_t)s->t->n_linears * sizeof *choice);
    snprintf(m->label, sizeof m->label, "%s", label);
    d->n_m++;
    pq_status st = s->fn(s->user, s->t, m);
    if (st) return st;
    int64_t cells = 0;
    for (int i = 0; i < s->t->n_linears; i++) cells += pq_sens_at(s->t, i, choice[i])->bytes;
    if (m->bytes - cells > s->overhead) s->overhead = m->bytes - cells;
    *idx = d->n_m - 1;
    return PQ_OK;
}

static pq_status measure_front(search *s, int k, const pq_measured **out)
{
    for (int i = 0; s->front_m[k] < 0 && i < s->d->n_m; i++) /* the same choice measured already */
        if (!memcmp(s->d->m[i].choice, s->f[k].choice, (size_t)s->t->n_linears * sizeof(int))) s->front_m[k] = i;
    if (s->front_m[k] < 0) {
        char label[64];
        snprintf(label, sizeof label, "front %d/%d", k + 1, s->n_f);
        pq_status st = measure(s, s->f[k].choice, label, &s->front_m[k]);
        if (st) return st;
    }
    *out = &s->d->m[s->front_m[k]];
    return PQ_OK;
}

static pq_status measure_uniform(search *s)
{
    int *ch = malloc((size_t)s->t->n_linears * sizeof *ch);
    if (!ch) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = PQ_OK;
    for (int j = 0; !st && j < s->t->n_cands; j++) {
        if (s->t->cands[j].precision >= 32) continue;
        char label[64], cl[32];
        int idx;
        pq_cand_label(&s->t->cands[j], cl, sizeof cl);
        snprintf(label, sizeof label, "uniform %s", cl);
        for (int i = 0; i < s->t->n_linears; i++) ch[i] = j;
        st = measure(s, ch, label, &idx);
    }
    free(ch);
    return st;
}

/* The largest front index whose file fits max_size, -1 for none. */
static pq_status fit_size(search *s, int hi, int *out)
{
    int k = hi;
    while (k >= 0 && s->f[k].bytes + s->overhead + s->c->size_slack > s->c->max_size) k--;
    while (k >= 0) {
        const pq_measured *m;
        pq_status st = measure_front(s, k, &m);
        if (st) return st;
        if (m->bytes + s->c->size_slack <= s->c->max_size) break;
        k--;
        while (k >= 0 && s->f[k].bytes + s->overhead + s->c->size_slack > s->c->max_size) k--;
    }
    *out = k;
    return PQ_OK;
}

/* Bisection in [lo, hi] for the boundary of a predicate monotone along the
 * front: speed (true at small indices: the largest true one) or drop (true
 * at large indices: the smallest true one). -1 when none. */
static pq_status bisect(search *s, int lo, int hi, bool speed, int *out)
{
    const pq_measured *m;
    pq_status st;
    int found = -1;
    while (lo <= hi) {
        int mid = speed ? lo + (hi - lo + 1) / 2 : lo + (hi - lo) / 2;
        if ((st = measure_front(s, mid, &m))) return st;
        bool ok = speed ? pq_measured_speedup(m) >= s->c->min_speedup
                        : pq_measured_drop_points(m) <= s->c->max_drop;
        if (ok) {
            found = mid;
            if (speed) lo = mid + 1;
            else hi = mid - 1;
        } else if (speed) hi = mid - 1;
        else lo = mid + 1;
    }
    *out = found;
    return PQ_OK;
}

/* Better for the objective: fewer bytes with --max-drop, else more accurate
 * (then lower KL), or with by_kl lower KL (then more accurate). */
static bool better(const pq_constraints *c, const pq_measured *a, const pq_measured *b)
{
    if (c->max_drop >= 0) return a->bytes < b->bytes || (a->bytes == b->bytes && a->accuracy > b->accuracy);
    double ka = a->kl, kb = b->kl, aa = a->accuracy, ab = b->accuracy;
    if (c->by_kl) { /* lower KL first: swap the roles, negated */
        ka = -a->accuracy, kb = -b->accuracy;
        aa = -a->kl, ab = -b->kl;
    }
    if (aa != ab) return aa > ab;
    return ka < kb || (ka == kb && a->bytes < b->bytes);
}

static void choose(search *s)
{
    pq_decision *d = s->d;
    int fewest = 4;
    d->chosen = d->best = -1;
    for (int i = 0; i < d->n_m; i++) {
        int n;
        pq_constraints_met(s->c, &d->m[i], NULL, &n);
        if (n < fewest || (n == fewest && better(s->c, &d->m[i], &d->m[d->best]))) {
            fewest = n;
            d->best = i;
        }
    }
    if (d->best < 0) return;
    if (fewest == 0) d->chosen = d->best;
    else pq_constraints_met(s->c, &d->m[d->best], d->unmet, &d->n_unmet);
}

pq_status pq_decide(const pq_sens_table *t, const pq_constraints *c, int resolution, pq_measure_fn fn, void *user,
                    pq_decision *out)
{
    memset(out, 0, sizeof *out);
    out->chosen = out->best = -1;
    if (c->max_size <= 0 && c->max_drop < 0 && c->min_speedup <= 0)
        return pq_err(PQ_ERR_CONFIG, "no constraint: give --max-size, --max-drop or --min-speedup");
    search s = {.t = t, .c = c, .fn = fn, .user = user, .d = out};
    pq_status st = pq_knapsack_front(t, resolution, &s.f, &s.n_f);
    if (!st && !(s.front_m = malloc((size_t)s.n_f * sizeof *s.front_m))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int k = 0; !st && k < s.n_f; k++) s.front_m[k] = -1;
    if (!st) st = measure_uniform(&s);
    int hi = s.n_f - 1, k = hi;
    if (!st && c->max_size > 0) st = fit_size(&s, hi, &hi);
    if (!st && hi >= 0 && c->min_speedup > 0) st = bisect(&s, 0, hi, true, &hi);
    if (!st && hi >= 0 && c->max_drop >= 0) st = bisect(&s, 0, hi, false, &k);
    else k = hi;
    const pq_measured *m;
    if (!st && k >= 0) st = measure_front(&s, k, &m);
    if (!st) choose(&s);
    pq_front_free(s.f, s.n_f);
    free(s.front_m);
    return st;
}

void pq_decision_free(pq_decision *d)
{
    if (!d) return;
    for (int i = 0; i < d->n_m; i++) free(d->m[i].choice);
    free(d->m);
    memset(d, 0, sizeof *d);
    d->chosen = d->best = -1;
}
