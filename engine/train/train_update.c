/* SPDX-License-Identifier: Apache-2.0 */
/* train_update.c - the chunked update of a training step (train_update.h). */
#include "train/train_update.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pq_config.h"
#include "train/fake_quant.h"

/* The QAT site of tensor t, or -1. */
static int site_of(const pq_qat *q, const pq_train_tensor *t)
{
    for (int i = 0; q && i < q->n_sites; i++)
        if (q->site[i].w_off == t->off) return i;
    return -1;
}

pq_status pq_train_chunks_create(pq_trainer *tr)
{
    const pq_train_params *p = tr->p;
    int64_t n = 0, cap = 0, s_run = 0;
    pq_train_chunk *c = NULL;
    for (int pass = 0; pass < 2; pass++) {
        n = 0;
        s_run = 0;
        for (int i = 0; i < p->n_tensors; i++) {
            const pq_train_tensor *t = &p->t[i];
            int si = site_of(tr->q, t);
            int64_t ng = si >= 0 ? tr->q->site[si].n_groups : 0;
            int64_t rows = PQ_TRAIN_CHUNK / t->cols > 0 ? PQ_TRAIN_CHUNK / t->cols : 1;
            for (int64_t r0 = 0; r0 < t->rows; r0 += rows, n++) {
                int64_t r1 = r0 + rows < t->rows ? r0 + rows : t->rows;
                if (!c) continue;
                c[n] = (pq_train_chunk){.tensor = i, .site = si, .off = t->off + r0 * t->cols,
                                        .n = (r1 - r0) * t->cols, .r0 = r0, .r1 = r1, .s_off = s_run,
                                        .n_s = (r1 - r0) * ng};
                /* the steps lie in layout order: the chunks' runs of them
                 * are contiguous */
                if (si >= 0 && s_run != tr->q->site[si].s_off + r0 * ng) {
                    free(c);
                    return pq_err(PQ_ERR_INTERNAL, "training chunks: the steps are not in layout order");
                }
                s_run += c[n].n_s;
            }
        }
        if (!c) {
            cap = n;
            if (!(c = calloc((size_t)cap, sizeof *c)) || !(tr->chunk_sq = calloc((size_t)cap, sizeof(double)))) {
                free(c);
                return pq_err(PQ_ERR_RESOURCE, "out of memory");
            }
        }
    }
    tr->chunk = c;
    tr->n_chunks = n;
    return PQ_OK;
}

void pq_trainer_shard(const pq_trainer *tr, int rank, int n_ranks, int64_t *c0, int64_t *c1)
{
    int64_t nf = tr->p->n_floats, lo = nf * rank / n_ranks, hi = nf * (rank + 1) / n_ranks;
    int64_t a = 0;
    while (a < tr->n_chunks && tr->chunk[a].off < lo) a++;
    int64_t b = a;
    while (b < tr->n_chunks && tr->chunk[b].off < hi) b++;
    *c0 = a;
    *c1 = b;
}

void pq_trainer_shard_span(const pq_trainer *tr, int64_t c0, int64_t c1, int64_t *f0, int64_t *f1, int64_t *s0,
                           int64_t *s1)
{
    const pq_train_chunk *c = tr->chunk;
    int64_t nc = tr->n_chunks, ns = nc ? c[nc - 1].s_off + c[nc - 1].n_s : 0;
    *f0 = c0 < nc ? c[c0].off : tr->p->n_floats;
    *s0 = c0 < nc ? c[c0].s_off : ns;
    *f1 = c1 > c0 ? c[c1 - 1].off + c[c1 - 1].n : *f0;
    *s1 = c1 > c0 ? c[c1 - 1].s_off + c[c1 - 1].n_s : *s0;
}

pq_status pq_trainer_check_loss(const pq_trainer *tr, double loss)
{
    if (isfinite(loss)) return PQ_OK;
    return pq_err(PQ_ERR_ACCURACY, "step %lld: the loss is %s", (long long)tr->step + 1,
                  isnan(loss) ? "NaN" : "Inf");
}

void pq_trainer_grad_part(pq_trainer *tr, int64_t c0, int64_t c1)
{
    const pq_qat *q = tr->q;
    const float *w = tr->p->data;
    float *g = tr->grad;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 4) num_threads(tr->o.n_threads) if (tr->o.n_threads > 1)
#endif
    for (int64_t k = c0; k < c1; k++) {
        const pq_train_chunk *c = &tr->chunk[k];
        double sq = 0.0;
        if (c->site >= 0) {
            const pq_qat_site *s = &q->site[c->site];
            memset(tr->dscale + c->s_off, 0, (size_t)c->n_s * sizeof(float));
            pq_fq_weight_bwd_ref(w + s->w_off, g + s->w_off, c->r0, c->r1, s->cols, s->gs, q->scale + s->s_off,
                                 q->zp ? q->zp + s->s_off : NULL, q->qmin, q->qmax, g + s->w_off,
                                 tr->dscale + s->s_off);
        }
        for (int64_t i = c->off; i < c->off + c->n; i++) sq += (double)g[i] * g[i];
        for (int64_t i = c->s_off; i < c->s_off + c->n_s; i++) sq += (double)tr->dscale[i] * tr->dscale[i];
        tr->chunk_sq[k] = sq;
    }
}

pq_status pq_trainer_clip_coef(const pq_trainer *tr, double *coef)
{
    double sq = 0.0;
    *coef = 1.0;
    for (int64_t k = 0; k < tr->n_chunks; k++) {
        if (!isfinite(tr->chunk_sq[k])) {
            char name[256];
            const pq_train_tensor *t = &tr->p->t[tr->chunk[k].tensor];
            pq_esm2_name(t->role, t->layer, name, sizeof name);
            return pq_err(PQ_ERR_ACCURACY, "step %lld: the gradient of %s overflowed (NaN or Inf)",
                          (long long)tr->step + 1, name);
        }
        sq += tr->chunk_sq[k];
    }
    double asq = 0.0;
    for (int i = 0; tr->q && i < tr->q->n_act; i++) {
        double d = tr->dscale[tr->q->act_off + i];
        asq += d * d;
    }
    if (!isfinite(asq))
        return pq_err(PQ_ERR_ACCURACY, "step %lld: the gradient of the static input steps overflowed (NaN or Inf)",
                      (long long)tr->step + 1);
    sq += asq;
    double norm = sqrt(sq);
    if (!isfinite(norm))
        return pq_err(PQ_ERR_ACCURACY, "step %lld: the gradient norm overflowed", (long long)tr->step + 1);
    if (tr->o.clip > 0 && tr->o.clip / (norm + 1e-6) < 1.0) *coef = tr->o.clip / (norm + 1e-6);
    return PQ_OK;
}

/* Weight decay applies to the 2-D weights, not to biases and LayerNorms. */
static double decay_of(const pq_train_tensor *t, double wd)
{
    return t->cols > 1 ? wd : 0.0;
}

void pq_trainer_update_part(pq_trainer *tr, int64_t c0, int64_t c1, double coef)
{
    int64_t t = tr->step + 1;
    double lr = pq_lr_at(tr->o.lr, tr->o.warmup, tr->o.steps, tr->o.min_lr_frac, t);
    float cf = (float)coef;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 4) num_threads(tr->o.n_threads) if (tr->o.n_threads > 1)
#endif
    for (int64_t k = c0; k < c1; k++) {
        const pq_train_chunk *c = &tr->chunk[k];
        float *g = tr->grad + c->off, *ds = tr->dscale ? tr->dscale + c->s_off : NULL;
        if (coef < 1.0) {
            for (int64_t i = 0; i < c->n; i++) g[i] *= cf;
            for (int64_t i = 0; i < c->n_s; i++) ds[i] *= cf;
        }
        pq_adamw_update(&tr->o.adam, t, lr, decay_of(&tr->p->t[c->tensor], tr->o.weight_decay),
                        tr->p->data + c->off, g, tr->m + c->off, tr->v + c->off, c->n);
        if (!c->n_s) continue;
        float *sc = tr->q->scale + c->s_off;
        pq_adamw_update(&tr->o.adam, t, lr, 0.0, sc, ds, tr->sm + c->s_off, tr->sv + c->s_off, c->n_s);
        for (int64_t i = 0; i < c->n_s; i++)
            if (!(sc[i] >= PQ_SCALE_EPS)) sc[i] = PQ_SCALE_EPS;
    }
}

void pq_trainer_update_act(pq_trainer *tr, double coef)
{
    if (!tr->q || !tr->q->n_act) return;
    int64_t t = tr->step + 1, o = tr->q->act_off, n = tr->q->n_act;
    double lr = pq_lr_at(tr->o.lr, tr->o.warmup, tr->o.steps, tr->o.min_lr_frac, t);
    float *ds = tr->dscale + o, *sc = tr->q->scale + o;
    if (coef < 1.0)
        for (int64_t i = 0; i < n; i++) ds[i] *= (float)coef;
    pq_adamw_update(&tr->o.adam, t, lr, 0.0, sc, ds, tr->sm + o, tr->sv + o, n);
    for (int64_t i = 0; i < n; i++)
        if (!(sc[i] >= PQ_SCALE_EPS)) sc[i] = PQ_SCALE_EPS;
}

pq_status pq_trainer_end_step(pq_trainer *tr, double loss)
{
    char name[256];
    int64_t t = tr->step + 1;
    if (pq_train_first_nonfinite(tr->p, tr->p->data, name, sizeof name))
        return pq_err(PQ_ERR_ACCURACY, "step %lld: weight %s overflowed (NaN or Inf) in the update", (long long)t,
                      name);
    if (tr->step < tr->curve_cap) tr->curve[tr->step] = loss;
    tr->step = t;
    return PQ_OK;
}
