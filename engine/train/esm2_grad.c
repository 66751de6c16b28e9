/* SPDX-License-Identifier: Apache-2.0 */
/* esm2_grad.c - ESM-2 training forward (activations kept) and backward on a
 * packed batch: the op order of fair-esm (docs/esm2.md 3), each op's
 * gradient from ln_grad, linear_grad, gelu_grad, attn_grad and mlm_loss. */
#include "train/esm2_grad.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pq_cpu.h"
#include "base/pq_mem.h"
#include "kernels/pq_kernels.h"
#include "model/blas.h"
#include "model/tokenizer.h"
#include "pq_config.h"
#include "train/attn_grad.h"
#include "train/fake_quant.h"
#include "train/gelu_grad.h"
#include "train/linear_grad.h"
#include "train/ln_grad.h"
#include "train/mlm_loss.h"

/* One layer's kept activations, slices of ws->act. */
typedef struct layer_acts {
    float *x, *h1, *qkv, *o, *xm, *h2, *u; /* [N,D] [N,D] [N,3D] [N,D] [N,D] [N,D] [N,F] */
    float *mu1, *rs1, *mu2, *rs2;          /* [N] */
    float *P;                              /* sum_s H T_s^2 */
} layer_acts;

struct pq_train_ws {
    const pq_train_params *p;
    int n_threads;
    bool act_int8;     /* fake-quantize every Linear input per token */
    const float *act_s; /* static: [4 L] input steps (borrowed), NULL: off */
    float *dact;       /* static: [4 L] their gradients, added into */
    float *xq;         /* static: a Linear's fake-quantized input [N, F] */
    double *part;      /* static: per-block sums of the step gradient */
    int64_t part_cap;
    float *act;        /* the kept activations of every layer */
    size_t act_floats;
    float *tmp;        /* the backward's scratch and the head rows */
    size_t tmp_floats;
    int64_t *poff;     /* [n_seqs + 1] probability offsets */
    int64_t poff_n;
    /* set by the forward for the backward */
    int64_t N, max_T, n_t, n_prob;
    layer_acts *la;    /* [L] */
    float *xL;         /* [N, D] the last layer's output */
    float *xg, *xf, *ud, *gd, *hl, *dz; /* head rows [n_t, D], dz [n_t, V] */
    float *hmu1, *hrs1, *hmu2, *hrs2;   /* [n_t] */
    float *cos_t, *sin_t;               /* [max_T, hd/2] */
    float *dx, *dh, *dqkv, *do_, *G, *dG, *dP; /* backward scratch */
    float *demb;                        /* [N, D] */
};

pq_status pq_train_ws_create(const pq_train_params *p, int n_threads, pq_train_ws **out)
{
    *out = NULL;
    pq_status st = pq_blas_load();
    if (st != PQ_OK) return st;
    pq_train_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    ws->p = p;
    ws->n_threads = n_threads > 0 ? n_threads : pq_cpu_count();
    ws->la = calloc((size_t)p->cfg.num_layers, sizeof *ws->la);
    if (!ws->la) {
        free(ws);
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    }
    *out = ws;
    return PQ_OK;
}

void pq_train_ws_free(pq_train_ws *ws)
{
    if (!ws) return;
    free(ws->act);
    free(ws->tmp);
    free(ws->poff);
    free(ws->part);
    free(ws->la);
    free(ws);
}

const float *pq_train_ws_dembed(const pq_train_ws *ws) { return ws->demb; }

static bool all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

void pq_train_ws_first_nonfinite(const pq_train_ws *ws, char *what, size_t n)
{
    const pq_esm2_config *c = &ws->p->cfg;
    int64_t ND = ws->N * c->embed_dim;
    for (int l = 0; l < c->num_layers; l++) {
        const layer_acts *A = &ws->la[l];
        if (!all_finite(A->x, ND)) {
            snprintf(what, n, l ? "the output of layer %d" : "the embedding", l - 1);
            return;
        }
        if (!all_finite(A->xm, ND)) {
            snprintf(what, n, "the attention residual of layer %d", l);
            return;
        }
    }
    if (!all_finite(ws->xL, ND)) snprintf(what, n, "the output of layer %d", c->num_layers - 1);
    else snprintf(what, n, "the LM head");
}

void pq_train_ws_set_act_int8(pq_train_ws *ws, bool on) { ws->act_int8 = on; }

void pq_train_ws_set_act_static(pq_train_ws *ws, const float *scale, float *dscale)
{
    ws->act_s = scale;
    ws->dact = dscale;
}

/* Rows per block of the static passes: fixed, so the step gradient's sum
 * does not follow the threads. */
#define ACT_ROWS 8

/* The input x [n, d] of static site k as the Linear sees it: ws->xq. */
static const float *act_static_in(const pq_train_ws *ws, int k, const float *x, int64_t n, int64_t d)
{
    float s = ws->act_s[k];
    int64_t nb = (n + ACT_ROWS - 1) / ACT_ROWS;
    float *xq = ws->xq;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(ws->n_threads) if (ws->n_threads > 1)
#endif
    for (int64_t b = 0; b < nb; b++) {
        int64_t r = b * ACT_ROWS, m = n - r < ACT_ROWS ? n - r : ACT_ROWS;
        pq_fq_act_static_fwd_ref(x + r * d, m * d, s, xq + r * d);
    }
    return xq;
}

/* Backward of static site k in place on dx [n, d] (the gradient with
 * respect to the quantized input on entry), its step gradient added into
 * ws->dact[k]: block sums added in block order. */
static void act_static_bwd(pq_train_ws *ws, int k, const float *x, float *dx, int64_t n, int64_t d)
{
    float s = ws->act_s[k];
    int64_t nb = (n + ACT_ROWS - 1) / ACT_ROWS;
    double *part = ws->part, acc = 0.0;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(ws->n_threads) if (ws->n_threads > 1)
#endif
    for (int64_t b = 0; b < nb; b++) {
        int64_t r = b * ACT_ROWS, m = n - r < ACT_ROWS ? n - r : ACT_ROWS;
        part[b] = pq_fq_act_static_bwd_ref(x + r * d, dx + r * d, m * d, s, dx + r * d);
    }
    for (int64_t b = 0; b < nb; b++) acc += part[b];
    ws->dact[k] += (float)(acc * pq_fq_act_gscale(d));
}

/* The input of a Linear: int8 per-token fake quantization when asked
 * (straight-through gradient: the backward needs nothing from here). */
static void act_fq(const pq_train_ws *ws, float *x, int64_t n, int64_t d)
{
    if (!ws->act_int8) return;
    int64_t nb = (n + 7) / 8;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(ws->n_threads) if (ws->n_threads > 1)
#endif
    for (int64_t b = 0; b < nb; b++) pq_fq_act_rows_ref(x + b * 8 * d, n - b * 8 < 8 ? n - b * 8 : 8, d);
}

/* The input of a Linear as it enters the product: x itself (fp32, or
 * fake-quantized per token in place), or its static fake quantization. */
static const float *act_in(const pq_train_ws *ws, int k, float *x, int64_t n, int64_t d)
{
    if (ws->act_s) return act_static_in(ws, k, x, n, d);
    act_fq(ws, x, n, d);
    return x;
}

#define ROUND16(n) (((size_t)(n) + 15) / 16 * 16)

static size_t layer_floats(const pq_esm2_config *c, int64_t N, int64_t n_prob)
{
    int64_t D = c->embed_dim, F = c->ffn_dim;
    return 6 * ROUND16(N * D) + ROUND16(3 * N * D) + ROUND16(N * F) + 4 * ROUND16(N) + ROUND16(n_prob);
}

/* Head rows, rotary tables and the backward's scratch. */
static size_t tmp_floats(const pq_esm2_config *c, int64_t N, int64_t n_t, int64_t max_T, int n_threads,
                         bool act_static)
{
    int64_t D = c->embed_dim, F = c->ffn_dim, V = c->vocab_size;
    return 4 * ROUND16(N * D) + ROUND16(3 * N * D) + 2 * ROUND16(N * F) + 5 * ROUND16(n_t * D) +
           ROUND16(n_t * V) + 4 * ROUND16(n_t) + 2 * ROUND16(max_T * (c->head_dim / 2)) +
           ROUND16((int64_t)n_threads * max_T * max_T) + (act_static ? ROUND16(N * F) : 0);
}

int64_t pq_train_ws_floats(const pq_train_ws *ws, const pq_train_batch *tb)
{
    const pq_esm2_config *c = &ws->p->cfg;
    int64_t N = tb->b.offsets[tb->b.n_seqs], n_prob = 0;
    for (int64_t s = 0; s < tb->b.n_seqs; s++) {
        int64_t T = tb->b.offsets[s + 1] - tb->b.offsets[s];
        n_prob += (int64_t)c->attention_heads * T * T;
    }
    return (int64_t)c->num_layers * (int64_t)layer_floats(c, N, n_prob) + (int64_t)ROUND16(N * c->embed_dim);
}

static float *take(float **cur, size_t n)
{
    float *p = *cur;
    *cur += ROUND16(n);
    return p;
}

static pq_status check_batch(const pq_train_ws *ws, const pq_train_batch *tb, int64_t *max_T)
{
    pq_status st = pq_esm2_check_batch(&ws->p->cfg, &tb->b, max_T);
    if (st != PQ_OK) return st;
    int64_t N = tb->b.offsets[tb->b.n_seqs];
    if (tb->n_targets <= 0) return pq_err(PQ_ERR_CONFIG, "a training batch needs at least one target");
    for (int64_t r = 0; r < tb->n_targets; r++) {
        if (tb->tgt_pos[r] < 0 || tb->tgt_pos[r] >= N)
            return pq_err(PQ_ERR_CONFIG, "target %lld at token %lld is outside the batch of %lld tokens",
                          (long long)r, (long long)tb->tgt_pos[r], (long long)N);
        if (tb->tgt_id[r] < 0 || tb->tgt_id[r] >= ws->p->cfg.vocab_size)
            return pq_err(PQ_ERR_CONFIG, "target %lld has id %d outside the vocabulary", (long long)r, tb->tgt_id[r]);
        if (r > 0 && tb->tgt_pos[r] <= tb->tgt_pos[r - 1])
            return pq_err(PQ_ERR_CONFIG, "target positions must increase (target %lld)", (long long)r);
    }
    return PQ_OK;
}

/* Size and carve the buffers for this batch. */
static pq_status layout(pq_train_ws *ws, const pq_train_batch *tb, int64_t max_T)
{
    const pq_esm2_config *c = &ws->p->cfg;
    int L = c->num_layers;
    int64_t D = c->embed_dim, F = c->ffn_dim, V = c->vocab_size, N = tb->b.offsets[tb->b.n_seqs];
    int64_t n_t = tb->n_targets;
    if (ws->poff_n < tb->b.n_seqs + 1) {
        free(ws->poff);
        ws->poff_n = 0;
        if (!(ws->poff = malloc((size_t)(tb->b.n_seqs + 1) * sizeof *ws->poff)))
            return pq_err(PQ_ERR_RESOURCE, "out of memory");
        ws->poff_n = tb->b.n_seqs + 1;
    }
    pq_attn_shape a = {.n_seqs = tb->b.n_seqs, .offsets = tb->b.offsets, .n_heads = c->attention_heads};
    int64_t n_prob = pq_attn_prob_floats(&a, ws->poff);
    size_t need_act = (size_t)L * layer_floats(c, N, n_prob) + ROUND16(N * D);
    size_t need_tmp = tmp_floats(c, N, n_t, max_T, ws->n_threads, ws->act_s != NULL);
    int64_t nb = (N + ACT_ROWS - 1) / ACT_ROWS;
    if (ws->act_s && nb > ws->part_cap) {
        free(ws->part);
        ws->part_cap = 0;
        if (!(ws->part = malloc((size_t)nb * sizeof(double)))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        ws->part_cap = nb;
    }
    if (need_act > ws->act_floats) {
        free(ws->act);
        ws->act_floats = 0;
        if (!(ws->act = pq_alloc_big(need_act * sizeof(float))))
            return pq_err(PQ_ERR_RESOURCE, "out of memory for the activations of %lld tokens (%zu MB)",
                          (long long)N, need_act * sizeof(float) >> 20);
        ws->act_floats = need_act;
    }
    if (need_tmp > ws->tmp_floats) {
        free(ws->tmp);
        ws->tmp_floats = 0;
        if (!(ws->tmp = pq_alloc_big(need_tmp * sizeof(float))))
            return pq_err(PQ_ERR_RESOURCE, "out of memory for the training scratch of %lld tokens", (long long)N);
        ws->tmp_floats = need_tmp;
    }
    ws->N = N;
    ws->max_T = max_T;
    ws->n_t = n_t;
    ws->n_prob = n_prob;
    float *cur = ws->act;
    for (int l = 0; l < L; l++) {
        layer_acts *A = &ws->la[l];
        A->x = take(&cur, N * D);
        A->h1 = take(&cur, N * D);
        A->qkv = take(&cur, 3 * N * D);
        A->o = take(&cur, N * D);
        A->xm = take(&cur, N * D);
        A->h2 = take(&cur, N * D);
        A->u = take(&cur, N * F);
        A->mu1 = take(&cur, N);
        A->rs1 = take(&cur, N);
        A->mu2 = take(&cur, N);
        A->rs2 = take(&cur, N);
        A->P = take(&cur, n_prob);
    }
    ws->xL = take(&cur, N * D);
    cur = ws->tmp;
    ws->dx = take(&cur, N * D);
    ws->dh = take(&cur, N * D);
    ws->dqkv = take(&cur, 3 * N * D);
    ws->do_ = take(&cur, N * D);
    ws->demb = take(&cur, N * D);
    ws->G = take(&cur, N * F);
    ws->dG = take(&cur, N * F);
    ws->xg = take(&cur, n_t * D);
    ws->xf = take(&cur, n_t * D);
    ws->ud = take(&cur, n_t * D);
    ws->gd = take(&cur, n_t * D);
    ws->hl = take(&cur, n_t * D);
    ws->dz = take(&cur, n_t * V);
    ws->hmu1 = take(&cur, n_t);
    ws->hrs1 = take(&cur, n_t);
    ws->hmu2 = take(&cur, n_t);
    ws->hrs2 = take(&cur, n_t);
    ws->cos_t = take(&cur, max_T * (c->head_dim / 2));
    ws->sin_t = take(&cur, max_T * (c->head_dim / 2));
    ws->dP = take(&cur, (int64_t)ws->n_threads * max_T * max_T);
    ws->xq = ws->act_s ? take(&cur, N * F) : NULL;
    return PQ_OK;
}

static void add_rows(float *y, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static pq_attn_shape attn_shape(const pq_train_ws *ws, const pq_esm2_batch *b, int layer)
{
    const pq_esm2_config *c = &ws->p->cfg;
    int half = c->head_dim / 2;
    pq_rotary_table(ws->p->inv_freq + (int64_t)layer * half, half, ws->max_T, ws->cos_t, ws->sin_t);
    pq_attn_shape a = {.n_seqs = b->n_seqs, .offsets = b->offsets, .n_heads = c->attention_heads,
                       .head_dim = c->head_dim, .max_T = ws->max_T, .cos_t = ws->cos_t, .sin_t = ws->sin_t,
                       .qscale = (float)pow((double)c->head_dim, -0.5), .n_threads = ws->n_threads};
    return a;
}

#define W(role, l) pq_train_at(p, (float *)w, (role), (l))

static pq_status layer_fwd(pq_train_ws *ws, const float *w, const pq_esm2_batch *b, int l, float *x_out)
{
    const pq_train_params *p = ws->p;
    const pq_esm2_config *c = &p->cfg;
    int64_t D = c->embed_dim, F = c->ffn_dim, N = ws->N;
    float eps = c->layer_norm_eps > 0 ? c->layer_norm_eps : 1e-5f;
    layer_acts *A = &ws->la[l];
    pq_status st;
    pq_ln_fwd(A->x, N, D, W(PQ_ESM2_LN_ATTN_W, l), W(PQ_ESM2_LN_ATTN_B, l), eps, A->h1, A->mu1, A->rs1,
              ws->n_threads);
    const float *in = act_in(ws, 4 * l, A->h1, N, D);
    /* q, k, v weights and biases are adjacent: one [3D, D] Linear */
    if ((st = pq_linear_fwd(in, N, D, W(PQ_ESM2_Q, l), W(PQ_ESM2_Q_BIAS, l), 3 * D, A->qkv,
                            ws->n_threads)) != PQ_OK) return st;
    pq_attn_shape a = attn_shape(ws, b, l);
    if ((st = pq_attn_fwd(&a, A->qkv, A->P, ws->poff, A->o)) != PQ_OK) return st;
    in = act_in(ws, 4 * l + 1, A->o, N, D);
    if ((st = pq_linear_fwd(in, N, D, W(PQ_ESM2_OUT, l), W(PQ_ESM2_OUT_BIAS, l), D, A->xm,
                            ws->n_threads)) != PQ_OK) return st;
    add_rows(A->xm, A->xm, A->x, N * D);
    pq_ln_fwd(A->xm, N, D, W(PQ_ESM2_LN_FFN_W, l), W(PQ_ESM2_LN_FFN_B, l), eps, A->h2, A->mu2, A->rs2,
              ws->n_threads);
    in = act_in(ws, 4 * l + 2, A->h2, N, D);
    if ((st = pq_linear_fwd(in, N, D, W(PQ_ESM2_FC1, l), W(PQ_ESM2_FC1_BIAS, l), F, A->u,
                            ws->n_threads)) != PQ_OK) return st;
    pq_gelu_fwd(A->u, N * F, ws->G, ws->n_threads);
    in = act_in(ws, 4 * l + 3, ws->G, N, F);
    if ((st = pq_linear_fwd(in, N, F, W(PQ_ESM2_FC2, l), W(PQ_ESM2_FC2_BIAS, l), D, x_out,
                            ws->n_threads)) != PQ_OK) return st;
    add_rows(x_out, x_out, A->xm, N * D);
    return PQ_OK;
}

pq_status pq_train_forward(pq_train_ws *ws, const float *w, const pq_train_batch *tb, float weight,
                           double *loss_sum)
{
    const pq_train_params *p = ws->p;
    const pq_esm2_config *c = &p->cfg;
    int L = c->num_layers;
    int64_t D = c->embed_dim, V = c->vocab_size, max_T = 0;
    float eps = c->layer_norm_eps > 0 ? c->layer_norm_eps : 1e-5f;
    pq_status st = check_batch(ws, tb, &max_T);
    if (st != PQ_OK) return st;
    if ((st = layout(ws, tb, max_T)) != PQ_OK) return st;
    pq_blas_set_threads(ws->n_threads);
    pq_esm2_embed(c, W(PQ_ESM2_EMBED, -1), &tb->b, ws->la[0].x);
    for (int l = 0; l < L; l++)
        if ((st = layer_fwd(ws, w, &tb->b, l, l + 1 < L ? ws->la[l + 1].x : ws->xL)) != PQ_OK) return st;
    int64_t n_t = ws->n_t;
    for (int64_t r = 0; r < n_t; r++) memcpy(ws->xg + r * D, ws->xL + tb->tgt_pos[r] * D, (size_t)D * sizeof(float));
    pq_ln_fwd(ws->xg, n_t, D, W(PQ_ESM2_LN_FINAL_W, -1), W(PQ_ESM2_LN_FINAL_B, -1), eps, ws->xf, ws->hmu1,
              ws->hrs1, ws->n_threads);
    if ((st = pq_linear_fwd(ws->xf, n_t, D, W(PQ_ESM2_LM_DENSE_W, -1), W(PQ_ESM2_LM_DENSE_B, -1), D, ws->ud,
                            ws->n_threads)) != PQ_OK)
        return st;
    pq_gelu_fwd(ws->ud, n_t * D, ws->gd, ws->n_threads);
    pq_ln_fwd(ws->gd, n_t, D, W(PQ_ESM2_LM_LN_W, -1), W(PQ_ESM2_LM_LN_B, -1), eps, ws->hl, ws->hmu2, ws->hrs2,
              ws->n_threads);
    if ((st = pq_linear_fwd(ws->hl, n_t, D, pq_train_decoder(p, (float *)w), W(PQ_ESM2_LM_BIAS, -1), V, ws->dz,
                            ws->n_threads)) !=
        PQ_OK)
        return st;
    if (tb->logits_out) memcpy(tb->logits_out, ws->dz, (size_t)(n_t * V) * sizeof(float));
    *loss_sum = tb->teacher ? pq_kd_loss(ws->dz, tb->teacher, n_t, V, weight, ws->dz)
                            : pq_mlm_loss(ws->dz, n_t, V, tb->tgt_id, weight, ws->dz);
    return PQ_OK;
}

#define G_(role, l) pq_train_at(p, grad, (role), (l))

static pq_status layer_bwd(pq_train_ws *ws, const float *w, const pq_esm2_batch *b, int l, float *grad)
{
    const pq_train_params *p = ws->p;
    const pq_esm2_config *c = &p->cfg;
    int64_t D = c->embed_dim, F = c->ffn_dim, N = ws->N;
    layer_acts *A = &ws->la[l];
    pq_status st;
    /* ws->dx holds d(layer output) and leaves with d(layer input) */
    pq_gelu_fwd(A->u, N * F, ws->G, ws->n_threads);
    const float *in = act_in(ws, 4 * l + 3, ws->G, N, F);
    if ((st = pq_linear_bwd(ws->dx, in, N, F, W(PQ_ESM2_FC2, l), D, G_(PQ_ESM2_FC2, l), G_(PQ_ESM2_FC2_BIAS, l),
                            ws->dG, 0, ws->n_threads)) != PQ_OK)
        return st;
    if (ws->act_s) act_static_bwd(ws, 4 * l + 3, ws->G, ws->dG, N, F);
    pq_gelu_bwd(A->u, ws->dG, N * F, ws->dG, NULL, ws->n_threads);
    in = ws->act_s ? act_static_in(ws, 4 * l + 2, A->h2, N, D) : A->h2;
    if ((st = pq_linear_bwd(ws->dG, in, N, D, W(PQ_ESM2_FC1, l), F, G_(PQ_ESM2_FC1, l), G_(PQ_ESM2_FC1_BIAS, l),
                            ws->dh, 0, ws->n_threads)) != PQ_OK)
        return st;
    if (ws->act_s) act_static_bwd(ws, 4 * l + 2, A->h2, ws->dh, N, D);
    pq_ln_bwd(ws->dh, A->xm, A->mu2, A->rs2, N, D, W(PQ_ESM2_LN_FFN_W, l), ws->dx, 1, G_(PQ_ESM2_LN_FFN_W, l),
              G_(PQ_ESM2_LN_FFN_B, l), ws->n_threads);
    in = ws->act_s ? act_static_in(ws, 4 * l + 1, A->o, N, D) : A->o;
    if ((st = pq_linear_bwd(ws->dx, in, N, D, W(PQ_ESM2_OUT, l), D, G_(PQ_ESM2_OUT, l), G_(PQ_ESM2_OUT_BIAS, l),
                            ws->do_, 0, ws->n_threads)) != PQ_OK)
        return st;
    if (ws->act_s) act_static_bwd(ws, 4 * l + 1, A->o, ws->do_, N, D);
    pq_attn_shape a = attn_shape(ws, b, l);
    if ((st = pq_attn_bwd(&a, A->qkv, A->P, ws->poff, ws->do_, ws->dqkv, ws->dP)) != PQ_OK) return st;
    in = ws->act_s ? act_static_in(ws, 4 * l, A->h1, N, D) : A->h1;
    if ((st = pq_linear_bwd(ws->dqkv, in, N, D, W(PQ_ESM2_Q, l), 3 * D, G_(PQ_ESM2_Q, l), G_(PQ_ESM2_Q_BIAS, l),
                            ws->dh, 0, ws->n_threads)) != PQ_OK)
        return st;
    if (ws->act_s) act_static_bwd(ws, 4 * l, A->h1, ws->dh, N, D);
    pq_ln_bwd(ws->dh, A->x, A->mu1, A->rs1, N, D, W(PQ_ESM2_LN_ATTN_W, l), ws->dx, 1, G_(PQ_ESM2_LN_ATTN_W, l),
              G_(PQ_ESM2_LN_ATTN_B, l), ws->n_threads);
    return PQ_OK;
}

pq_status pq_train_backward(pq_train_ws *ws, const float *w, const pq_train_batch *tb, float *grad)
{
    const pq_train_params *p = ws->p;
    const pq_esm2_config *c = &p->cfg;
    int L = c->num_layers;
    int64_t D = c->embed_dim, V = c->vocab_size, N = ws->N, n_t = ws->n_t;
    pq_status st;
    pq_blas_set_threads(ws->n_threads);
    /* LM head on the target rows; scratch: dh rows for d(hl), do_ for d(xf) */
    float *dhl = ws->dh, *dxf = ws->do_, *dgd = ws->dqkv, *dxg = ws->dqkv + n_t * D;
    if ((st = pq_linear_bwd(ws->dz, ws->hl, n_t, D, pq_train_decoder(p, (float *)w), V, pq_train_decoder(p, grad),
                            G_(PQ_ESM2_LM_BIAS, -1), dhl, 0, ws->n_threads)) != PQ_OK)
        return st;
    pq_ln_bwd(dhl, ws->gd, ws->hmu2, ws->hrs2, n_t, D, W(PQ_ESM2_LM_LN_W, -1), dgd, 0, G_(PQ_ESM2_LM_LN_W, -1),
              G_(PQ_ESM2_LM_LN_B, -1), ws->n_threads);
    pq_gelu_bwd(ws->ud, dgd, n_t * D, dgd, NULL, ws->n_threads);
    if ((st = pq_linear_bwd(dgd, ws->xf, n_t, D, W(PQ_ESM2_LM_DENSE_W, -1), D, G_(PQ_ESM2_LM_DENSE_W, -1),
                            G_(PQ_ESM2_LM_DENSE_B, -1), dxf, 0, ws->n_threads)) != PQ_OK)
        return st;
    pq_ln_bwd(dxf, ws->xg, ws->hmu1, ws->hrs1, n_t, D, W(PQ_ESM2_LN_FINAL_W, -1), dxg, 0,
              G_(PQ_ESM2_LN_FINAL_W, -1), G_(PQ_ESM2_LN_FINAL_B, -1), ws->n_threads);
    memset(ws->dx, 0, (size_t)(N * D) * sizeof(float));
    for (int64_t r = 0; r < n_t; r++) memcpy(ws->dx + tb->tgt_pos[r] * D, dxg + r * D, (size_t)D * sizeof(float));
    for (int l = L - 1; l >= 0; l--)
        if ((st = layer_bwd(ws, w, &tb->b, l, grad)) != PQ_OK) return st;
    /* embedding: d(E[id]) = dx0 * 0.88 / denom (0 for <mask>), summed into
     * the table in token order */
    float *dE = G_(PQ_ESM2_EMBED, -1);
    const pq_esm2_batch *b = &tb->b;
    bool td = c->token_dropout;
    for (int64_t s = 0; s < b->n_seqs; s++) {
        float denom = pq_esm2_td_denom(b, s);
        for (int64_t t = b->offsets[s]; t < b->offsets[s + 1]; t++) {
            float *de = ws->demb + t * D, *dr = dE + (int64_t)b->ids[t] * D;
            const float *dx = ws->dx + t * D;
            bool masked = (b->ids[t] == PQ_TOK_MASK);
            for (int64_t j = 0; j < D; j++) {
                de[j] = !td ? dx[j] : masked ? 0.0f : dx[j] * 0.88f / denom;
                dr[j] += de[j];
            }
        }
    }
    return PQ_OK;
}
