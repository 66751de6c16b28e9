/* SPDX-License-Identifier: Apache-2.0 */
/* trainer.c - the training state and step of ESM-2 masked-LM training. */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pq_cpu.h"
#include "train/train_update.h"

pq_train_opts pq_train_defaults(void)
{
    return (pq_train_opts){.steps = 100, .batch_size = 8, .micro_size = 4, .max_residues = 512, .seed = 0,
                           .lr = 1e-4, .min_lr_frac = 0.1, .weight_decay = 0.01, .clip = 1.0, .warmup = -1,
                           .adam = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
                           .spec = {.bits = 4, .gran = PQ_GRAN_CHANNEL, .symmetric = true}};
}

pq_status pq_trainer_create(pq_train_params *p, const pq_fasta_record *recs, int64_t n_recs,
                            const pq_train_opts *o, pq_trainer **out)
{
    *out = NULL;
    pq_status st = PQ_OK;
    if (o->steps < 0 || o->batch_size <= 0 || o->micro_size <= 0 || o->lr <= 0 || !isfinite(o->lr)) {
        pq_train_params_free(p);
        return pq_err(PQ_ERR_CONFIG, "batch size, micro-batch size and learning rate must be positive, steps "
                      "not negative");
    }
    pq_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        pq_train_params_free(p);
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    }
    tr->o = *o;
    if (tr->o.warmup < 0) tr->o.warmup = o->steps / 10;
    if (tr->o.n_threads <= 0) tr->o.n_threads = pq_cpu_count();
    tr->p = p;
    size_t nb = (size_t)p->n_floats * sizeof(float);
    tr->m = calloc(1, nb);
    tr->v = calloc(1, nb);
    tr->grad = malloc(nb);
    tr->curve_cap = o->steps;
    tr->curve = calloc((size_t)(o->steps ? o->steps : 1), sizeof(double));
    if (!tr->m || !tr->v || !tr->grad || !tr->curve) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto fail; }
    if (o->qat) {
        if ((st = pq_qat_create(p, p->data, &o->spec, o->act_static, &tr->q)) != PQ_OK) goto fail;
        size_t ns = (size_t)tr->q->n_scales * sizeof(float);
        tr->sm = calloc(1, ns);
        tr->sv = calloc(1, ns);
        tr->dscale = malloc(ns);
        tr->w_hat = malloc(nb);
        if (!tr->sm || !tr->sv || !tr->dscale || !tr->w_hat) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto fail;
        }
    }
    if ((st = pq_train_chunks_create(tr)) != PQ_OK) goto fail;
    if ((st = pq_train_data_init(&tr->data, recs, n_recs, o->seed, o->max_residues)) != PQ_OK) goto fail;
    if ((st = pq_train_ws_create(p, tr->o.n_threads, &tr->ws)) != PQ_OK) goto fail;
    pq_train_ws_set_act_int8(tr->ws, o->qat && o->act_int8 && !o->act_static);
    if (tr->q && tr->q->n_act) pq_train_ws_set_act_static(tr->ws, tr->q->scale + tr->q->act_off, NULL);
    if (o->distill) {
        if (!(tr->w_teacher = malloc(nb))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto fail; }
        memcpy(tr->w_teacher, p->data, nb);
        if ((st = pq_train_ws_create(p, tr->o.n_threads, &tr->ws_t)) != PQ_OK) goto fail;
    }
    *out = tr;
    return PQ_OK;
fail:
    pq_trainer_free(tr);
    return st;
}

void pq_trainer_free(pq_trainer *tr)
{
    if (!tr) return;
    pq_train_ws_free(tr->ws);
    pq_train_ws_free(tr->ws_t);
    free(tr->w_teacher);
    free(tr->t_logits);
    pq_train_mb_free(&tr->mb);
    pq_train_data_fini(&tr->data);
    pq_qat_free(tr->q);
    pq_train_params_free(tr->p);
    free(tr->m); free(tr->v); free(tr->sm); free(tr->sv);
    free(tr->grad); free(tr->dscale); free(tr->w_hat); free(tr->curve);
    free(tr->chunk); free(tr->chunk_sq);
    free(tr);
}

int64_t pq_trainer_n_micro(const pq_trainer *tr)
{
    return (tr->o.batch_size + tr->o.micro_size - 1) / tr->o.micro_size;
}

int64_t pq_trainer_grad_floats(const pq_trainer *tr)
{
    return tr->p->n_floats + (tr->q ? tr->q->n_act : 0);
}

void pq_trainer_sum_act(pq_trainer *tr, const float *(*tail)(void *user, int64_t mb), void *user)
{
    if (!tr->q || !tr->q->n_act) return;
    float *ds = tr->dscale + tr->q->act_off;
    memset(ds, 0, (size_t)tr->q->n_act * sizeof(float));
    for (int64_t mb = 0; mb < pq_trainer_n_micro(tr); mb++) {
        const float *t = tail(user, mb);
        for (int i = 0; i < tr->q->n_act; i++) ds[i] += t[i];
    }
}

static void micro_range(const pq_trainer *tr, int64_t mb, int64_t *k0, int64_t *n)
{
    int64_t first = mb * tr->o.micro_size, end = first + tr->o.micro_size;
    if (end > tr->o.batch_size) end = tr->o.batch_size;
    *k0 = tr->step * tr->o.batch_size + first;
    *n = end - first;
}

/* Distillation: every residue of the micro-batch is a target (its input
 * still masked as drawn). */
static void distill_targets(pq_train_mb *mb)
{
    int64_t n_t = 0;
    for (int64_t s = 0; s < mb->tb.b.n_seqs; s++)
        for (int64_t t = mb->offsets[s] + 1; t < mb->offsets[s + 1] - 1; t++) {
            mb->tgt_pos[n_t] = t;
            mb->tgt_id[n_t++] = mb->ids[t];
        }
    mb->tb.n_targets = n_t;
}

/* The micro-batch mb of the current step into tr->mb. */
static pq_status build_micro(pq_trainer *tr, int64_t mb)
{
    int64_t k0, n;
    micro_range(tr, mb, &k0, &n);
    pq_status st = pq_train_data_batch(&tr->data, tr->step, k0, n, &tr->mb);
    if (st == PQ_OK && tr->o.distill) distill_targets(&tr->mb);
    return st;
}

pq_status pq_trainer_begin_step(pq_trainer *tr)
{
    if (tr->q) pq_qat_apply(tr->q, tr->p->data, tr->p->n_floats, tr->w_hat, tr->o.n_threads);
    tr->step_targets = 0;
    for (int64_t mb = 0; mb < pq_trainer_n_micro(tr); mb++) {
        pq_status st = build_micro(tr, mb);
        if (st != PQ_OK) return st;
        tr->step_targets += tr->mb.tb.n_targets;
    }
    return PQ_OK;
}

pq_status pq_trainer_micro_grad(pq_trainer *tr, int64_t mb, float *g, double *loss_sum)
{
    pq_status st = build_micro(tr, mb);
    if (st != PQ_OK) return st;
    const float *w = tr->w_hat ? tr->w_hat : tr->p->data;
    float weight = (float)(1.0 / (double)tr->step_targets);
    if (tr->o.distill) {
        int64_t need = tr->mb.tb.n_targets * tr->p->cfg.vocab_size;
        if (need > tr->t_cap) {
            free(tr->t_logits);
            tr->t_cap = 0;
            if (!(tr->t_logits = malloc((size_t)need * sizeof(float))))
                return pq_err(PQ_ERR_RESOURCE, "out of memory for the teacher's logits");
            tr->t_cap = need;
        }
        pq_train_batch tt = tr->mb.tb;
        double unused;
        tt.logits_out = tr->t_logits;
        if ((st = pq_train_forward(tr->ws_t, tr->w_teacher, &tt, 1.0f, &unused)) != PQ_OK) return st;
        tr->mb.tb.teacher = tr->t_logits;
    }
    if ((st = pq_train_forward(tr->ws, w, &tr->mb.tb, weight, loss_sum)) != PQ_OK) return st;
    if (!isfinite(*loss_sum)) {
        char name[256], what[300];
        if (pq_train_first_nonfinite(tr->p, w, name, sizeof name))
            snprintf(what, sizeof what, "weight %s", name);
        else
            pq_train_ws_first_nonfinite(tr->ws, what, sizeof what);
        return pq_err(PQ_ERR_ACCURACY, "step %lld: the loss is %s (micro-batch %lld): %s overflowed",
                      (long long)tr->step + 1, isnan(*loss_sum) ? "NaN" : "Inf", (long long)mb, what);
    }
    *loss_sum *= weight;
    memset(g, 0, (size_t)pq_trainer_grad_floats(tr) * sizeof(float));
    if (tr->q && tr->q->n_act) pq_train_ws_set_act_static(tr->ws, tr->q->scale + tr->q->act_off, g + tr->p->n_floats);
    return pq_train_backward(tr->ws, w, &tr->mb.tb, g);
}

pq_status pq_trainer_finish_step(pq_trainer *tr, double loss)
{
    double coef = 1.0;
    pq_status st = pq_trainer_check_loss(tr, loss);
    if (st != PQ_OK) return st;
    pq_trainer_grad_part(tr, 0, tr->n_chunks);
    if ((st = pq_trainer_clip_coef(tr, &coef)) != PQ_OK) return st;
    pq_trainer_update_part(tr, 0, tr->n_chunks, coef);
    pq_trainer_update_act(tr, coef);
    return pq_trainer_end_step(tr, loss);
}

struct tails_of {
    const float *t;
    int64_t n;
};

static const float *tail_at(void *user, int64_t mb)
{
    const struct tails_of *t = user;
    return t->t + mb * t->n;
}

pq_status pq_trainer_step(pq_trainer *tr, double *loss)
{
    pq_status st = pq_trainer_begin_step(tr);
    if (st != PQ_OK) return st;
    int64_t n = tr->p->n_floats, ng = pq_trainer_grad_floats(tr), M = pq_trainer_n_micro(tr);
    float *g = malloc((size_t)ng * sizeof(float)), *tails = calloc((size_t)(M * (ng - n) + 1), sizeof(float));
    if (!g || !tails) {
        free(g);
        free(tails);
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    }
    double total = 0.0;
    /* the sum starts from zero even for one micro-batch: the same bits as
     * the ranks' sum (worker/train_mpi.c), signs of zeros included */
    memset(tr->grad, 0, (size_t)n * sizeof(float));
    for (int64_t mb = 0; mb < pq_trainer_n_micro(tr); mb++) {
        double l = 0.0;
        if ((st = pq_trainer_micro_grad(tr, mb, g, &l)) != PQ_OK) break;
        for (int64_t i = 0; i < n; i++) tr->grad[i] += g[i];
        memcpy(tails + mb * (ng - n), g + n, (size_t)(ng - n) * sizeof(float));
        total += l;
    }
    free(g);
    struct tails_of tv = {tails, ng - n};
    if (st == PQ_OK) pq_trainer_sum_act(tr, tail_at, &tv);
    free(tails);
    if (st != PQ_OK) return st;
    *loss = total;
    return pq_trainer_finish_step(tr, total);
}

/* The masking step of evaluations: far from any training step. */
#define EVAL_STEP 0x7E57E57E57ll

pq_status pq_trainer_eval(pq_trainer *tr, const pq_fasta_record *recs, int64_t n_recs, double *mean_loss)
{
    pq_train_data d;
    pq_train_mb mb;
    memset(&mb, 0, sizeof mb);
    pq_status st = pq_train_data_init(&d, recs, n_recs, tr->o.seed, tr->o.max_residues);
    if (st != PQ_OK) return st;
    if (tr->q) pq_qat_apply(tr->q, tr->p->data, tr->p->n_floats, tr->w_hat, tr->o.n_threads);
    const float *w = tr->w_hat ? tr->w_hat : tr->p->data;
    double total = 0.0;
    int64_t n_t = 0;
    for (int64_t k = 0; k < n_recs && st == PQ_OK; k += tr->o.micro_size) {
        int64_t n = n_recs - k < tr->o.micro_size ? n_recs - k : tr->o.micro_size;
        double l = 0.0;
        if ((st = pq_train_data_batch(&d, EVAL_STEP, k, n, &mb)) != PQ_OK) break;
        if ((st = pq_train_forward(tr->ws, w, &mb.tb, 1.0f, &l)) != PQ_OK) break;
        total += l;
        n_t += mb.tb.n_targets;
    }
    pq_train_mb_free(&mb);
    pq_train_data_fini(&d);
    *mean_loss = n_t ? total / (double)n_t : NAN;
    return st;
}
