/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_run.c - GPTQ layer after layer over the ranks (gptq_run.h). */
#include "worker/gptq_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/log.h"
#include "base/pq_clock.h"
#include "calib/calib_static.h"
#include "model/batch.h"
#include "model/blas.h"
#include "model/esm2_model.h"
#include "quant/gptq.h"
#include "quant/qtensor.h"
#include "worker/runner.h"
#include "worker/stop.h"

/* The four input sites of a layer: q/k/v share their input. */
enum { SITE_QKV, SITE_OUT, SITE_FC1, SITE_FC2, N_SITES };

/* Threads adding sequences to a site's Hessian at once, each into its own
 * accumulator (merged exactly once the layer's forward is over). */
#define MAX_HESSIAN_THREADS 64

static int site_of(pq_esm2_role r)
{
    switch (r) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: return SITE_QKV;
    case PQ_ESM2_OUT: return SITE_OUT;
    case PQ_ESM2_FC1: return SITE_FC1;
    case PQ_ESM2_FC2: return SITE_FC2;
    default: return -1;
    }
}

static const char *const site_names[N_SITES] = {"q/k/v input", "attention out input", "fc1 input", "fc2 input"};

/* A forward batch of this rank's sequences and its activations entering the
 * current layer (NULL before layer 0: the stage embeds the ids). */
typedef struct gq_batch {
    pq_packed pk;
    float *x;
} gq_batch;

typedef struct gq_state {
    pq_job *j;
    const pq_plan *p;
    const pq_gptq_comm *c;
    gq_batch *b;
    int64_t n_b;
    int *owner;                /* per unit: the rank that runs it this round, -1: not this round */
    int *round;                /* the units of this round, plan order */
    int n_round;
    pq_unit_result *res;       /* per unit: its result once run or received */
    /* observer state */
    pq_hessian *h[N_SITES];
    pq_hessian *th[N_SITES][MAX_HESSIAN_THREADS]; /* per thread (narrow sites), merged into h */
    int n_threads;
    const pq_esm2_batch *cur;
    int layer;
    pq_status obs_st;
    /* seconds in each part of the layers, for --verbose */
    double t_hess, t_reduce, t_factor, t_solve, t_next;
} gq_state;

/* ---- the units of one round, shared out and run ---- */

/* Greedy by cost (largest first, ties by id) to the least-loaded rank: the
 * same on every rank. */
static void share_out(gq_state *s)
{
    int n = s->c->n_ranks;
    double *load = calloc((size_t)n, sizeof *load);
    int *order = malloc((size_t)(s->n_round ? s->n_round : 1) * sizeof *order);
    for (int i = 0; i < s->n_round; i++) order[i] = s->round[i];
    for (int a = 1; a < s->n_round; a++) /* insertion sort: cost desc, id asc */
        for (int k = a; k > 0; k--) {
            const pq_unit *x = &s->p->units[order[k - 1]], *y = &s->p->units[order[k]];
            if (x->cost > y->cost || (x->cost == y->cost && x->id < y->id)) break;
            int t = order[k - 1];
            order[k - 1] = order[k];
            order[k] = t;
        }
    for (int i = 0; i < s->n_round; i++) {
        int best = 0;
        for (int r = 1; r < n; r++)
            if (load[r] < load[best]) best = r;
        s->owner[order[i]] = best;
        load[best] += s->p->units[order[i]].cost;
    }
    free(order);
    free(load);
}

/* This round's units of rank, in the round's order (*own: a position in
 * the round); *next the one after. */
static int pick_round(void *user, const pq_plan *p, int rank, int *own, bool *stolen, int *next)
{
    gq_state *s = user;
    (void)p;
    *stolen = false;
    *next = -1;
    int u = -1;
    while (*own < s->n_round && u < 0) {
        int k = s->round[(*own)++];
        if (s->owner[k] == rank) u = k;
    }
    for (int i = *own; u >= 0 && i < s->n_round && *next < 0; i++)
        if (s->owner[s->round[i]] == rank) *next = s->round[i];
    return u;
}

static pq_status keep_result(void *user, const pq_unit *u, pq_unit_result *r)
{
    gq_state *s = user;
    s->res[u->id] = *r;
    memset(r, 0, sizeof *r);
    return PQ_OK;
}

/* Run this rank's units of the round, bring every result to every rank, and
 * on rank 0 put them into the output in plan order. */
static pq_status run_round(gq_state *s)
{
    const pq_sink sink = {.unit = keep_result, .user = s};
    pq_run_counts n;
    share_out(s);
    /* a resumed run's units from the journal: rank 0 reads them (the runner
     * skips them) and sends them like its own */
    for (int i = 0; i < s->n_round; i++)
        if (pq_job_unit_done(s->j, s->round[i])) s->owner[s->round[i]] = 0;
    pq_status st = pq_run_units(s->j, s->c->rank, pick_round, s, &sink, &n);
    if ((st = s->c->agree(s->c->user, st))) return st;
    for (int i = 0; i < s->n_round && !st; i++) {
        const pq_unit *u = &s->p->units[s->round[i]];
        const bool done = pq_job_unit_done(s->j, u->id);
        pq_unit_layout l;
        pq_unit_layout_of(s->p, u, &l);
        if (s->owner[u->id] != s->c->rank) st = pq_unit_result_alloc(&s->res[u->id], u, &l, true);
        else if (done) st = pq_job_journal_result(s->j, u, &s->res[u->id]);
        st = s->c->agree(s->c->user, st);
        if (!st) st = s->c->bcast(s->c->user, s->owner[u->id], &s->res[u->id], &l);
        /* a unit from the journal is in the output already */
        if (!st && s->c->rank == 0 && !done) st = pq_job_put_result(s->j, u, &s->res[u->id]);
        for (bool did = true; !st && did && s->c->rank == 0;) st = pq_job_end_next(s->j, &did);
    }
    return s->c->agree(s->c->user, st);
}

/* ---- the layer's stage, fp32 or with the dequantized weights ---- */

typedef struct stage_reader {
    gq_state *s;
    bool quantized;            /* the layer's Linears from their results */
} stage_reader;

/* Tensor t's weights from its units' results, each unit's rows a quantized
 * tensor of their own (borrowed buffers). */
static void dequantize(gq_state *s, int t, float *dst)
{
    const pq_plan_tensor *pt = &s->p->tensors[t];
    for (int k = pt->first_unit; k < pt->first_unit + pt->n_units; k++) {
        const pq_unit *u = &s->p->units[k];
        const pq_unit_result *r = &s->res[k];
        const pq_qtensor rows = {.spec = pt->spec, .rows = u->n_rows, .cols = pt->cols,
                                 .n_groups = pq_qspec_groups(&pt->spec, pt->cols),
                                 .code_row_bytes = pq_qspec_row_bytes(&pt->spec, pt->cols), .codes = r->codes,
                                 .scale = r->scale, .zero_point = r->zero_point, .n_scales = r->n_scales};
        pq_qtensor_dequantize_rows(&rows, 0, u->n_rows, dst + u->row0 * pt->cols);
    }
}

static pq_status read_stage(void *user, const char *name, int64_t n, float *dst, bool *found)
{
    stage_reader *sr = user;
    gq_state *s = sr->s;
    const pq_st_model *st = pq_job_model(s->j);
    const pq_st_tensor *t = pq_st_find(st, name);
    *found = t != NULL;
    if (!t) return PQ_OK;
    if (t->n_elems != n)
        return pq_err(PQ_ERR_FORMAT, "tensor %s has %lld elements, the architecture needs %lld", name,
                      (long long)t->n_elems, (long long)n);
    if (sr->quantized)
        for (int i = 0; i < s->p->n_tensors; i++) {
            const pq_plan_tensor *pt = &s->p->tensors[i];
            if (pt->st == t && pt->action == PQ_ACT_QUANT && pt->layer == s->layer && site_of(pt->role) >= 0) {
                dequantize(s, i, dst);
                return PQ_OK;
            }
        }
    pq_status rc = pq_st_read_rows_f32(st, t, 0, t->ndim >= 2 ? t->shape[0] : 1, dst);
    pq_st_release(st, t);
    return rc;
}

static pq_status load_stage(gq_state *s, bool quantized, pq_esm2_model **m)
{
    stage_reader sr = {.s = s, .quantized = quantized};
    pq_esm2_model_opts mo = {.layer_begin = s->layer, .layer_end = s->layer + 1,
                             .n_threads = pq_job_threads(s->j), .ops = *pq_job_ops(s->j)};
    return pq_esm2_model_load_with(pq_job_arch(s->j), read_stage, &sr, &mo, m);
}

/* The batch's sequences in the forward add their rows to their site, each
 * sequence its own partial (quant/hessian.h), so the split over threads
 * does not matter. A site wider than one tile (PQ_HESSIAN_TILE) shares the
 * threads by tiles of its one accumulator (no per-thread copies of a large
 * Hessian); a narrower one is a single tile, so its threads take whole
 * sequences into accumulators of their own (at most a 2048-wide triangle
 * each), merged once the layer's forward is over. */
static void observe(void *user, const pq_ops *ops, int layer, pq_esm2_role role, const float *x, int64_t N,
                    int64_t d)
{
    gq_state *s = user;
    int site = site_of(role);
    (void)N;
    if (layer != s->layer || site < 0 || role == PQ_ESM2_K || role == PQ_ESM2_V || s->obs_st) return;
    const int64_t *off = s->cur->offsets;
    const int64_t n_seqs = s->cur->n_seqs;
    if (d > PQ_HESSIAN_TILE || s->n_threads == 1) {
        s->obs_st = pq_hessian_add_seqs(s->h[site], ops, x, off, n_seqs, d, s->n_threads);
        return;
    }
    pq_status err[MAX_HESSIAN_THREADS] = {0};
    /* one BLAS thread in each thread's calls (the forward sets more) */
    const int blas_threads = pq_blas_get_threads();
    pq_blas_set_threads(1);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(s->n_threads) if (s->n_threads > 1)
#endif
    for (int64_t q = 0; q < n_seqs; q++) {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        if (err[t]) continue;
        if (!s->th[site][t]) err[t] = pq_hessian_create(d, pq_hessian_name(s->h[site]), &s->th[site][t]);
        if (!err[t]) err[t] = pq_hessian_add(s->th[site][t], ops, x + off[q] * d, off[q + 1] - off[q], d);
    }
    pq_blas_set_threads(blas_threads);
    for (int t = 0; t < s->n_threads && !s->obs_st; t++) s->obs_st = err[t];
}

/* Every batch of this rank through the layer; with `next` its outputs
 * become the batch's activations. */
static pq_status forward(gq_state *s, pq_esm2_model *m, bool next)
{
    pq_status st = PQ_OK;
    for (int64_t i = 0; i < s->n_b && !st; i++) {
        pq_esm2_outputs out;
        memset(&out, 0, sizeof out);
        s->cur = &s->b[i].pk.batch;
        st = pq_esm2_forward(m, s->cur, s->b[i].x, &out);
        if (!st) st = s->obs_st;
        if (!st && next) {
            free(s->b[i].x);
            s->b[i].x = out.x_out;
            out.x_out = NULL;
        }
        pq_esm2_outputs_clear(&out);
    }
    return st;
}

/* ---- one layer ---- */

static pq_status hessians(gq_state *s)
{
    const int64_t D = pq_job_arch(s->j)->embed_dim, F = pq_job_arch(s->j)->ffn_dim;
    pq_esm2_model *m = NULL;
    pq_status st = PQ_OK;
    for (int k = 0; k < N_SITES && !st; k++) {
        char name[96];
        snprintf(name, sizeof name, "layer %d %s", s->layer, site_names[k]);
        st = pq_hessian_create(k == SITE_FC2 ? F : D, name, &s->h[k]);
    }
    if (!st) st = load_stage(s, false, &m);
    if (!st) {
        /* one BLAS thread inside each accumulator (hessian.h) */
        int blas_threads = pq_blas_get_threads();
        pq_blas_set_threads(1);
        pq_esm2_model_set_observer(m, observe, s);
        st = forward(s, m, false);
        pq_blas_set_threads(blas_threads);
    }
    pq_esm2_model_free(m);
    for (int k = 0; k < N_SITES; k++)
        for (int t = 0; t < MAX_HESSIAN_THREADS; t++) {
            if (!st && s->th[k][t]) st = pq_hessian_merge(s->h[k], s->th[k][t]);
            pq_hessian_free(s->th[k][t]);
            s->th[k][t] = NULL;
        }
    const double t0 = pq_now_s();
    if ((st = s->c->agree(s->c->user, st))) return st;
    for (int k = 0; k < N_SITES && !st; k++) st = s->c->allreduce(s->c->user, s->h[k]);
    s->t_reduce += pq_now_s() - t0;
    /* every layer sees the same tokens: said once, for the first layer */
    for (int k = 0; k < N_SITES && !st && s->c->rank == 0 && s->layer == 0; k++)
        if (pq_hessian_tokens(s->h[k]) < pq_hessian_dim(s->h[k]))
            PQ_LOG_WARN("gptq: %s saw %lld calibration tokens, fewer than its %lld columns: its Hessian is "
                        "singular but for the damping; give more --calibration-data", pq_hessian_name(s->h[k]),
                        (long long)pq_hessian_tokens(s->h[k]), (long long)pq_hessian_dim(s->h[k]));
    return st;
}

/* Sites at least this wide are factored by every rank together (the
 * blocked factorisation of quant/gptq_factor.h, its blocks shared over the
 * ranks and their threads); a narrower one by one rank (site k by rank
 * k mod N, with its threads), its factor then sent to the others as an
 * image: a small factorisation is cheaper than the messages that would
 * share it. Either way the factor is the one blocked computation with
 * PQ_GPTQ_FACTOR_NB, so its bits do not depend on who ran it. */
#define SHARED_FACTOR_MIN_WIDTH (8 * PQ_GPTQ_FACTOR_NB)

/* Site k's H from its accumulator, which is then freed (before the
 * factor's copies); *name gets the site's name. */
static pq_status site_h(gq_state *s, int k, double **H, char *name, size_t name_size)
{
    const int64_t d = pq_hessian_dim(s->h[k]);
    snprintf(name, name_size, "%s", pq_hessian_name(s->h[k]));
    *H = malloc((size_t)(d * d) * sizeof **H);
    pq_status st = *H ? pq_hessian_finish(s->h[k], *H)
                      : pq_err(PQ_ERR_RESOURCE, "out of memory for the Hessian of %s", name);
    pq_hessian_free(s->h[k]);
    s->h[k] = NULL;
    return st;
}

static pq_status factor(gq_state *s, pq_gptq_factor **f)
{
    const pq_config *cfg = pq_job_config(s->j);
    const pq_gptq_opts o = {.damp = cfg->gptq_damp, .block_size = cfg->gptq_block_size,
                            .act_order = cfg->act_order};
    const pq_factor_comm fc = {.rank = s->c->rank, .n_ranks = s->c->n_ranks, .bcast = s->c->bcast_bytes,
                               .agree = s->c->agree, .user = s->c->user};
    const int nt = pq_job_threads(s->j) > 0 ? pq_job_threads(s->j) : 1;
    int64_t d[N_SITES];
    for (int k = 0; k < N_SITES; k++) d[k] = pq_hessian_dim(s->h[k]);
    pq_status st = PQ_OK;
    /* the narrow sites, each on its own rank at once */
    for (int k = 0; k < N_SITES && !st; k++) {
        if (d[k] >= SHARED_FACTOR_MIN_WIDTH || s->c->rank != k % s->c->n_ranks) continue;
        char name[96];
        double *H = NULL;
        st = site_h(s, k, &H, name, sizeof name);
        if (!st) st = pq_gptq_prepare_with(H, d[k], &o, name, &pq_factor_comm_local, PQ_GPTQ_FACTOR_NB, nt, &f[k]);
        free(H);
    }
    if ((st = s->c->agree(s->c->user, st))) return st;
    /* the wide ones, every rank together */
    for (int k = 0; k < N_SITES && !st; k++) {
        if (d[k] < SHARED_FACTOR_MIN_WIDTH) continue;
        char name[96];
        double *H = NULL;
        st = s->c->agree(s->c->user, site_h(s, k, &H, name, sizeof name));
        if (!st) st = pq_gptq_prepare_with(H, d[k], &o, name, &fc, PQ_GPTQ_FACTOR_NB, nt, &f[k]);
        free(H);
    }
    /* the narrow sites' factors to every rank */
    for (int k = 0; k < N_SITES && !st && s->c->n_ranks > 1; k++) {
        if (d[k] >= SHARED_FACTOR_MIN_WIDTH) continue;
        const int owner = k % s->c->n_ranks;
        const size_t n = pq_gptq_factor_image_bytes(d[k]);
        void *img = malloc(n);
        if (!img) st = pq_err(PQ_ERR_RESOURCE, "out of memory for a GPTQ factor of width %lld", (long long)d[k]);
        if (!st && s->c->rank == owner) pq_gptq_factor_to_image(f[k], img);
        st = s->c->agree(s->c->user, st);
        if (!st) st = s->c->bcast_bytes(s->c->user, owner, img, n);
        char name[96];
        snprintf(name, sizeof name, "layer %d %s", s->layer, site_names[k]);
        if (!st && s->c->rank != owner) st = pq_gptq_factor_from_image(img, d[k], name, &f[k]);
        free(img);
    }
    return s->c->agree(s->c->user, st);
}

static pq_status one_layer(gq_state *s, int l)
{
    pq_gptq_factor *f[N_SITES] = {0};
    pq_esm2_model *m = NULL;
    s->layer = l;
    s->n_round = 0;
    for (int i = 0; i < s->p->n_units; i++) {
        const pq_plan_tensor *pt = &s->p->tensors[s->p->units[i].tensor];
        if (pt->layer == l && site_of(pt->role) >= 0) s->round[s->n_round++] = i;
    }
    /* a signal stops the run between layers, every rank at the same one */
    pq_status st = s->c->agree(s->c->user, pq_stop_check());
    /* a layer the journal holds whole (a resumed run) needs no Hessians:
     * only its forward with the dequantized weights, for the next layer */
    bool all_done = true;
    for (int i = 0; i < s->n_round; i++) all_done &= pq_job_unit_done(s->j, s->round[i]);
    double t0 = pq_now_s();
    if (!st && !all_done) st = hessians(s);
    double t1 = pq_now_s();
    s->t_hess += t1 - t0;
    if (!st && !all_done) st = factor(s, f);
    s->t_factor += pq_now_s() - t1;
    for (int i = 0; i < s->p->n_tensors && !st; i++) {
        const pq_plan_tensor *pt = &s->p->tensors[i];
        if (pt->layer == l && pt->action == PQ_ACT_QUANT && site_of(pt->role) >= 0)
            st = pq_job_set_gptq(s->j, i, f[site_of(pt->role)]);
    }
    t0 = pq_now_s();
    if (!st) st = run_round(s);
    t1 = pq_now_s();
    s->t_solve += t1 - t0;
    /* the next layer's inputs, from the dequantized weights */
    if (!st && l + 1 < pq_job_arch(s->j)->num_layers) {
        st = load_stage(s, true, &m);
        if (!st) st = forward(s, m, true);
        pq_esm2_model_free(m);
        st = s->c->agree(s->c->user, st);
    }
    s->t_next += pq_now_s() - t1;
    for (int i = 0; i < s->p->n_tensors; i++)
        if (s->p->tensors[i].layer == l) pq_job_set_gptq(s->j, i, NULL);
    for (int k = 0; k < N_SITES; k++) {
        pq_gptq_factor_free(f[k]);
        pq_hessian_free(s->h[k]);
        s->h[k] = NULL;
    }
    for (int i = 0; i < s->n_round; i++) pq_unit_result_free(&s->res[s->round[i]]);
    PQ_LOG_DEBUG("gptq: layer %d: %d units", l, s->n_round);
    return st;
}

/* ---- the calibration sequences of this rank ---- */

static pq_status load_batches(gq_state *s, const pq_gptq_run_opts *o, pq_fasta_record **recs, int64_t *n_recs)
{
    pq_calib_data_opts d = o->data;
    char def[4096];
    const char *data = o->calib_data;
    int64_t skipped = 0, n_own = 0;
    pq_fasta_record *own = NULL;
    int *owner = NULL;
    pq_status st = pq_calib_static_default(NULL, &data, def, sizeof def, &d);
    if (!st) st = pq_calib_read_data(data, &d, recs, n_recs, &skipped);
    if (!st && !(owner = malloc((size_t)*n_recs * sizeof *owner))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st) st = pq_calib_plan(*recs, *n_recs, s->c->n_ranks, owner);
    if (!st && !(own = malloc((size_t)(*n_recs ? *n_recs : 1) * sizeof *own)))
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; !st && i < *n_recs; i++)
        if (owner[i] == s->c->rank) own[n_own++] = (*recs)[i]; /* borrowed copies */
    int64_t bt = d.batch_tokens > 0 ? d.batch_tokens : PQ_CALIB_BATCH_TOKENS;
    for (int64_t start = 0; !st && start < n_own;) {
        int64_t np = 0;
        gq_batch *nb = realloc(s->b, (size_t)(s->n_b + 1) * sizeof *nb);
        if (!nb) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); break; }
        s->b = nb;
        memset(&s->b[s->n_b], 0, sizeof *s->b);
        st = pq_pack_records(own, n_own, start, bt, &s->b[s->n_b].pk, &np);
        s->n_b++;
        start += np;
    }
    free(own);
    free(owner);
    return st;
}

pq_status pq_gptq_run(pq_job *j, const pq_gptq_run_opts *o, const pq_gptq_comm *c)
{
    const pq_plan *p = pq_job_plan(j);
    gq_state s = {.j = j, .p = p, .c = c};
    s.n_threads = pq_job_threads(j) > MAX_HESSIAN_THREADS ? MAX_HESSIAN_THREADS : pq_job_threads(j);
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    pq_status st = PQ_OK;
    s.owner = malloc((size_t)(p->n_units + 1) * sizeof *s.owner);
    s.round = malloc((size_t)(p->n_units + 1) * sizeof *s.round);
    s.res = calloc((size_t)(p->n_units + 1), sizeof *s.res);
    if (!s.owner || !s.round || !s.res) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st) st = load_batches(&s, o, &recs, &n_recs);
    st = c->agree(c->user, st);
    for (int l = 0; !st && l < pq_job_arch(j)->num_layers; l++) st = one_layer(&s, l);
    PQ_LOG_DEBUG("gptq phases: forward + Hessians %.2f s (of which the sum over ranks %.2f s), factors %.2f s, "
                 "solves and results %.2f s, forward with the quantized layer %.2f s",
                 s.t_hess, s.t_reduce, s.t_factor, s.t_solve, s.t_next);
    /* what GPTQ does not cover (--include of other tensors): rounded */
    if (!st) {
        s.n_round = 0;
        for (int i = 0; i < p->n_units; i++)
            if (site_of(p->tensors[p->units[i].tensor].role) < 0) s.round[s.n_round++] = i;
        st = run_round(&s);
        for (int i = 0; i < s.n_round; i++) pq_unit_result_free(&s.res[s.round[i]]);
    }
    for (int64_t i = 0; i < s.n_b; i++) {
        pq_packed_free(&s.b[i].pk);
        free(s.b[i].x);
    }
    free(s.b);
    pq_calib_records_free(recs, n_recs);
    free(s.owner);
    free(s.round);
    free(s.res);
    return st;
}

/* ---- one process ---- */

static pq_status local_allreduce(void *user, pq_hessian *h)
{
    (void)user, (void)h;
    return PQ_OK;
}

static pq_status local_bcast(void *user, int owner, pq_unit_result *r, const pq_unit_layout *l)
{
    (void)user, (void)owner, (void)r, (void)l;
    return PQ_OK;
}

static pq_status local_bcast_bytes(void *user, int owner, void *buf, size_t n)
{
    (void)user, (void)owner, (void)buf, (void)n;
    return PQ_OK;
}

static pq_status local_agree(void *user, pq_status local)
{
    (void)user;
    return local;
}

const pq_gptq_comm pq_gptq_comm_local = {.rank = 0, .n_ranks = 1, .allreduce = local_allreduce,
                                         .bcast = local_bcast, .bcast_bytes = local_bcast_bytes,
                                         .agree = local_agree};
