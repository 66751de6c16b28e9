/* SPDX-License-Identifier: Apache-2.0 */
/* compare_ref.c - the reference's per-sequence results kept across
 * comparisons (compare_ref.h). */
#include "eval/compare_ref.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    pq_eval_mlm mlm;
    pq_eval_calib cal;
    int64_t n_tokens;
    bool masked;               /* mlm and cal set */
    size_t logits_at, pool_at; /* offsets into the value store */
} entry;

struct pq_eval_ref {
    pq_esm2_model *model;
    int64_t *slot;       /* [n_slots]: entry of input index i, or -1 */
    int64_t n_slots;
    entry *e;
    int64_t n, cap;
    float *v;            /* logits and pools of every entry */
    size_t v_len, v_cap;
};

pq_status pq_eval_ref_new(pq_eval_ref **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
}

void pq_eval_ref_free(pq_eval_ref *c)
{
    if (!c) return;
    pq_esm2_model_free(c->model);
    free(c->slot);
    free(c->e);
    free(c->v);
    free(c);
}

pq_esm2_model *pq_eval_ref_model(pq_eval_ref *c)
{
    return c->model;
}

void pq_eval_ref_set_model(pq_eval_ref *c, pq_esm2_model *m)
{
    c->model = m;
}

bool pq_eval_ref_get(const pq_eval_ref *c, int64_t index, pq_eval_ref_seq *out)
{
    if (index < 0 || index >= c->n_slots || c->slot[index] < 0) return false;
    const entry *e = &c->e[c->slot[index]];
    if (!e->masked) return false;
    *out = (pq_eval_ref_seq){.mlm = e->mlm, .cal = e->cal, .n_tokens = e->n_tokens,
                             .logits = c->v + e->logits_at, .pool = c->v + e->pool_at};
    return true;
}

static bool grow(void **p, size_t elem, size_t need, size_t *cap)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

pq_status pq_eval_ref_put(pq_eval_ref *c, int64_t index, const float *logits, int64_t T, int V, const float *pool,
                          int64_t D)
{
    if (index < 0) return pq_err(PQ_ERR_INTERNAL, "reference cache: sequence index %lld", (long long)index);
    if (index < c->n_slots && c->slot[index] >= 0) return PQ_OK;
    size_t slot_cap = (size_t)c->n_slots, e_cap = (size_t)c->cap, nv = (size_t)(T * V + D);
    if (!grow((void **)&c->slot, sizeof *c->slot, (size_t)index + 1, &slot_cap) ||
        !grow((void **)&c->e, sizeof *c->e, (size_t)c->n + 1, &e_cap) ||
        !grow((void **)&c->v, sizeof *c->v, c->v_len + nv, &c->v_cap))
        return pq_err(PQ_ERR_RESOURCE, "out of memory for the reference's results");
    for (int64_t i = c->n_slots; i < (int64_t)slot_cap; i++) c->slot[i] = -1;
    c->n_slots = (int64_t)slot_cap;
    c->cap = (int64_t)e_cap;
    entry *e = &c->e[c->n];
    *e = (entry){.n_tokens = T, .logits_at = c->v_len, .pool_at = c->v_len + (size_t)(T * V)};
    memcpy(c->v + e->logits_at, logits, (size_t)(T * V) * sizeof *c->v);
    memcpy(c->v + e->pool_at, pool, (size_t)D * sizeof *c->v);
    c->v_len += nv;
    c->slot[index] = c->n++;
    return PQ_OK;
}

void pq_eval_ref_put_masked(pq_eval_ref *c, int64_t index, const pq_eval_mlm *mlm, const pq_eval_calib *cal)
{
    if (index < 0 || index >= c->n_slots || c->slot[index] < 0) return;
    entry *e = &c->e[c->slot[index]];
    if (e->masked) return;
    e->mlm = *mlm;
    e->cal = *cal;
    e->masked = true;
}
