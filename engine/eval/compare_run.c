/* SPDX-License-Identifier: Apache-2.0 */
/* compare_run.c - both models over consecutive records of the input, one
 * record of sums per sequence (compare.h). */
#include "eval/compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "base/pq_clock.h"
#include "eval/score.h"
#include "model/batch.h"
#include "model/sgemm_split.h"

static const pq_esm2_role k_sites[PQ_EVAL_N_SITES] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT,
                                                      PQ_ESM2_FC1, PQ_ESM2_FC2, PQ_ESM2_LM_DENSE_W};

static pq_esm2_role bias_role(pq_esm2_role r)
{
    switch (r) {
    case PQ_ESM2_Q: return PQ_ESM2_Q_BIAS;
    case PQ_ESM2_K: return PQ_ESM2_K_BIAS;
    case PQ_ESM2_V: return PQ_ESM2_V_BIAS;
    case PQ_ESM2_OUT: return PQ_ESM2_OUT_BIAS;
    case PQ_ESM2_FC1: return PQ_ESM2_FC1_BIAS;
    case PQ_ESM2_FC2: return PQ_ESM2_FC2_BIAS;
    default: return PQ_ESM2_LM_DENSE_B;
    }
}

/* The observer's state: the batch being run and its per-sequence sums. */
typedef struct sqnr_ctx {
    pq_esm2_model *ref, *q;
    int L, n_threads;
    const pq_packed *pk;
    int64_t np;
    pq_eval_sqnr *acc; /* [np][(L + 1) * PQ_EVAL_N_SITES] */
    float *y1, *y2;
    int64_t cap;
    pq_status st;
} sqnr_ctx;

struct pq_eval_run {
    const pq_eval_compare_opts *o;
    pq_esm2_model *ref, *q;
    bool ref_borrowed;          /* ref is o->ref_cache's */
    bool hit;                   /* the current batch's reference results come from o->ref_cache */
    int V, L;
    int64_t D;
    double rss_load_ref, rss_load_q;
    double sec[2], cpu_q;
    int64_t n_fwd;
    sqnr_ctx sc;
    pq_packed pk;
    pq_esm2_outputs o1, o2;
    int32_t *orig;
    float *pool_r, *pool_q;     /* [D] */
    pq_eval_seq *seqs;          /* [cap] */
    int64_t seq_cap;
};

/* The packed batch's sequences as row segments. */
#define SEQS(c) ((pq_row_segs){.seg = (c)->pk->offsets, .n_seg = (c)->np})


static pq_status grow_outputs(sqnr_ctx *c, int64_t need)
{
    if (need <= c->cap) return PQ_OK;
    free(c->y1);
    free(c->y2);
    c->y1 = malloc((size_t)need * sizeof(float));
    c->y2 = malloc((size_t)need * sizeof(float));
    c->cap = c->y1 && c->y2 ? need : 0;
    return c->cap ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory for Linear outputs");
}

/* Observer on the reference: apply both models' Linear to its input, and
 * add each sequence's rows to that sequence's sums. */
static void observe_linear(void *user, const pq_ops *ops, int layer, pq_esm2_role site, const float *x, int64_t N,
                           int64_t d)
{
    sqnr_ctx *c = user;
    (void)ops;
    if (c->st != PQ_OK) return;
    int si = -1;
    for (int i = 0; i < PQ_EVAL_N_SITES; i++)
        if (k_sites[i] == site) si = i;
    if (si < 0) return;
    int row = layer < 0 ? c->L : layer;
    int64_t nr, nb, qb_n;
    const float *W = pq_esm2_model_tensor(c->ref, site, layer, &nr);
    const float *b = pq_esm2_model_tensor(c->ref, bias_role(site), layer, &nb);
    if (!W || !b) return;
    int64_t n = nr / d;
    if ((c->st = grow_outputs(c, N * n)) != PQ_OK) return;
    if ((c->st = pq_linear_f32(x, N, d, W, b, n, c->y1, SEQS(c), c->n_threads)) != PQ_OK) return;
    const pq_qlinear *ql = pq_esm2_model_qlinear(c->q, site, layer);
    const float *qb = pq_esm2_model_tensor(c->q, bias_role(site), layer, &qb_n);
    if (ql)
        c->st = pq_qlinear_forward_rows(pq_esm2_model_ops(c->q), ql, x, N, SEQS(c), qb, PQ_QLINEAR_POST_NONE,
                                        NULL, c->y2, c->n_threads);
    else c->st = pq_linear_f32(x, N, d, pq_esm2_model_tensor(c->q, site, layer, &nr), qb, n, c->y2, SEQS(c),
                                c->n_threads);
    if (c->st != PQ_OK) return;
    int64_t S = (int64_t)(c->L + 1) * PQ_EVAL_N_SITES;
    for (int64_t s = 0; s < c->np; s++) {
        int64_t t0 = c->pk->offsets[s], T = c->pk->offsets[s + 1] - t0;
        pq_eval_sqnr_add(&c->acc[s * S + row * PQ_EVAL_N_SITES + si], c->y1 + t0 * n, c->y2 + t0 * n, T * n);
    }
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : -1;
}

static pq_status same_arch(const pq_esm2_config *a, const pq_esm2_config *b, const char *qp, const char *rp)
{
    if (a->num_layers != b->num_layers || a->embed_dim != b->embed_dim ||
        a->attention_heads != b->attention_heads || a->ffn_dim != b->ffn_dim || a->vocab_size != b->vocab_size)
        return pq_err(PQ_ERR_CONFIG,
                      "architecture mismatch: %s has %d layers, dim %d, %d heads, ffn %d, vocab %d; "
                      "%s has %d layers, dim %d, %d heads, ffn %d, vocab %d",
                      qp, a->num_layers, a->embed_dim, a->attention_heads, a->ffn_dim, a->vocab_size, rp,
                      b->num_layers, b->embed_dim, b->attention_heads, b->ffn_dim, b->vocab_size);
    return PQ_OK;
}

pq_status pq_eval_run_open(const pq_eval_compare_opts *o, pq_eval_run **out)
{
    *out = NULL;
    pq_eval_run *r = calloc(1, sizeof *r);
    if (!r) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    r->o = o;
    pq_status st;
    double rss0 = peak_rss_mib();
    if (o->ref_cache && (r->ref = pq_eval_ref_model(o->ref_cache))) {
        r->ref_borrowed = true;
    } else {
        if ((st = pq_esm2_model_open(o->reference, &o->reference_opts, &r->ref)) != PQ_OK) goto fail;
        if (o->ref_cache) {
            pq_eval_ref_set_model(o->ref_cache, r->ref);
            r->ref_borrowed = true;
        }
    }
    double rss_ref = peak_rss_mib();
    if ((st = pq_esm2_model_open(o->model, &o->model_opts, &r->q)) != PQ_OK) goto fail;
    r->rss_load_ref = rss_ref - rss0;
    r->rss_load_q = peak_rss_mib() - rss_ref;
    const pq_esm2_config *cfg = pq_esm2_model_config(r->ref);
    if ((st = same_arch(pq_esm2_model_config(r->q), cfg, o->model, o->reference)) != PQ_OK) goto fail;
    r->V = cfg->vocab_size;
    r->L = cfg->num_layers;
    r->D = cfg->embed_dim;
    r->sc = (sqnr_ctx){.ref = r->ref, .q = r->q, .L = r->L, .n_threads = o->model_opts.n_threads};
    r->pool_r = malloc((size_t)r->D * sizeof(float));
    r->pool_q = malloc((size_t)r->D * sizeof(float));
    if (!r->pool_r || !r->pool_q) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto fail;
    }
    *out = r;
    return PQ_OK;
fail:
    pq_eval_run_free(r);
    return st;
}

void pq_eval_run_free(pq_eval_run *r)
{
    if (!r) return;
    pq_esm2_outputs_clear(&r->o1);
    pq_esm2_outputs_clear(&r->o2);
    pq_packed_free(&r->pk);
    free(r->orig);
    free(r->pool_r);
    free(r->pool_q);
    free(r->sc.y1);
    free(r->sc.y2);
    free(r->sc.acc);
    free(r->seqs);
    if (!r->ref_borrowed) pq_esm2_model_free(r->ref);
    pq_esm2_model_free(r->q);
    free(r);
}

int pq_eval_run_num_layers(const pq_eval_run *r)
{
    return r->L;
}

int pq_eval_run_threads(const pq_eval_run *r)
{
    return r->o->model_opts.n_threads;
}

/* Per-sequence sums for np sequences, zeroed. */
static pq_status reset_seqs(pq_eval_run *r, int64_t np)
{
    int64_t S = (int64_t)(r->L + 1) * PQ_EVAL_N_SITES;
    if (np > r->seq_cap) {
        free(r->seqs);
        free(r->sc.acc);
        r->seqs = malloc((size_t)np * sizeof *r->seqs);
        r->sc.acc = malloc((size_t)(np * S) * sizeof *r->sc.acc);
        r->seq_cap = r->seqs && r->sc.acc ? np : 0;
        if (!r->seq_cap) return pq_err(PQ_ERR_RESOURCE, "out of memory for the per-sequence sums");
    }
    memset(r->seqs, 0, (size_t)np * sizeof *r->seqs);
    memset(r->sc.acc, 0, (size_t)(np * S) * sizeof *r->sc.acc);
    return PQ_OK;
}

/* Whether o->ref_cache holds the reference's results of every sequence of
 * the batch. */
static bool batch_cached(const pq_eval_run *r, int64_t np)
{
    pq_eval_ref_seq e;
    if (!r->o->ref_cache) return false;
    for (int64_t s = 0; s < np; s++)
        if (!pq_eval_ref_get(r->o->ref_cache, r->pk.first + s, &e)) return false;
    return true;
}

/* The reference's unmasked forward into r->o1, observed for the per-Linear
 * SQNR unless o->no_sqnr. */
static pq_status reference_unmasked(pq_eval_run *r, int64_t np)
{
    pq_esm2_outputs *o1 = &r->o1;
    pq_esm2_outputs_clear(o1);
    o1->want_logits = true;
    o1->n_repr = 1;
    o1->repr_layers[0] = -1;
    r->sc.pk = &r->pk;
    r->sc.np = np;
    r->sc.st = PQ_OK;
    if (!r->o->no_sqnr) pq_esm2_model_set_observer(r->ref, observe_linear, &r->sc);
    pq_status st = pq_esm2_forward(r->ref, &r->pk.batch, NULL, o1);
    pq_esm2_model_set_observer(r->ref, NULL, NULL);
    return st == PQ_OK ? r->sc.st : st;
}

/* Unmasked pass: logits and final representation of both (the reference's
 * from o->ref_cache when it holds them and no SQNR is wanted), the
 * per-Linear SQNR observed on the reference; then KL, cosines and top-1
 * agreement of every residue position. */
static pq_status unmasked_pass(pq_eval_run *r, int64_t np)
{
    pq_esm2_outputs *o1 = &r->o1, *o2 = &r->o2;
    bool run_ref = !r->hit || !r->o->no_sqnr;
    pq_status st = run_ref ? reference_unmasked(r, np) : PQ_OK;
    if (st != PQ_OK || r->o->sqnr_only) return st;
    pq_esm2_outputs_clear(o2);
    o2->want_logits = true;
    o2->n_repr = 1;
    o2->repr_layers[0] = -1;
    if ((st = pq_esm2_forward(r->q, &r->pk.batch, NULL, o2)) != PQ_OK) return st;
    int V = r->V;
    for (int64_t s = 0; s < np; s++) {
        pq_eval_seq *q = &r->seqs[s];
        int64_t t0 = r->pk.offsets[s], T = r->pk.offsets[s + 1] - t0;
        const float *ref_logits = o1->logits + t0 * V, *pool_r = r->pool_r;
        pq_eval_ref_seq e;
        if (run_ref) {
            pq_eval_mean_pool(o1->repr[0] + t0 * r->D, T, r->D, r->pool_r);
            if (r->o->ref_cache && !r->hit &&
                (st = pq_eval_ref_put(r->o->ref_cache, r->pk.first + s, ref_logits, T, V, r->pool_r, r->D)))
                return st;
        } else {
            pq_eval_ref_get(r->o->ref_cache, r->pk.first + s, &e);
            ref_logits = e.logits;
            pool_r = e.pool;
        }
        q->n_tokens = T;
        for (int64_t t = 1; t < T - 1; t++) {
            const float *a = ref_logits + t * V, *b = o2->logits + (t0 + t) * V;
            double kl = pq_eval_kl(a, b, V);
            q->kl_sum += kl;
            if (kl > q->kl_max) q->kl_max = kl;
            q->lcos_sum += pq_eval_cosine(a, b, V);
            q->n_disagree += pq_eval_argmax(a, V) != pq_eval_argmax(b, V);
            q->n_positions++;
        }
        pq_eval_mean_pool(o2->repr[0] + t0 * r->D, T, r->D, r->pool_q);
        q->ecos = pq_eval_cosine(pool_r, r->pool_q, r->D);
    }
    return PQ_OK;
}

/* Masked pass (the batch masked in place), each model timed; the
 * reference's tallies from o->ref_cache when it holds them. */
static pq_status masked_pass(pq_eval_run *r, int64_t np)
{
    pq_status st;
    pq_esm2_outputs *o[2] = {&r->o1, &r->o2};
    pq_esm2_model *m[2] = {r->ref, r->q};
    if ((st = pq_eval_mask_batch(&r->pk, np, r->o->seed, r->o->mask_frac, &r->orig)) != PQ_OK) return st;
    for (int64_t s = 0; s < np && r->hit; s++) {
        pq_eval_ref_seq e;
        pq_eval_ref_get(r->o->ref_cache, r->pk.first + s, &e);
        r->seqs[s].mlm[0] = e.mlm;
        r->seqs[s].cal[0] = e.cal;
    }
    for (int k = r->hit ? 1 : 0; k < 2; k++) {
        pq_esm2_outputs_clear(o[k]);
        o[k]->n_repr = 0;
        double t0 = pq_now_s(), c0 = cpu_now_s();
        if ((st = pq_esm2_forward(m[k], &r->pk.batch, NULL, o[k])) != PQ_OK) return st;
        r->sec[k] += pq_now_s() - t0;
        if (k == 1) r->cpu_q += cpu_now_s() - c0;
        for (int64_t s = 0; s < np; s++) {
            int64_t t0s = r->pk.offsets[s], T = r->pk.offsets[s + 1] - t0s;
            const float *lg = o[k]->logits + t0s * r->V;
            pq_eval_mlm_add(&r->seqs[s].mlm[k], lg, r->orig + t0s, T, r->V);
            pq_eval_calib_add(&r->seqs[s].cal[k], lg, r->orig + t0s, T, r->V);
            if (k == 0 && r->o->ref_cache)
                pq_eval_ref_put_masked(r->o->ref_cache, r->pk.first + s, &r->seqs[s].mlm[0], &r->seqs[s].cal[0]);
        }
    }
    r->n_fwd++;
    return PQ_OK;
}

pq_status pq_eval_run_chunk(pq_eval_run *r, const pq_fasta_record *recs, int64_t n, pq_buf *out)
{
    pq_status st = PQ_OK;
    int64_t S = (int64_t)(r->L + 1) * PQ_EVAL_N_SITES;
    for (int64_t start = 0; start < n && st == PQ_OK;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n, start, r->o->batch_tokens, &r->pk, &np)) != PQ_OK) break;
        r->pk.first = recs[start].index; /* the masking draws by input position */
        r->hit = batch_cached(r, np);
        if ((st = reset_seqs(r, np)) != PQ_OK || (st = unmasked_pass(r, np)) != PQ_OK ||
            (!r->o->sqnr_only && (st = masked_pass(r, np)) != PQ_OK))
            break;
        for (int64_t s = 0; s < np && st == PQ_OK; s++)
            if ((st = pq_buf_put(out, &r->seqs[s], sizeof r->seqs[s])) == PQ_OK)
                st = pq_buf_put(out, r->sc.acc + s * S, (size_t)S * sizeof *r->sc.acc);
        start += np;
    }
    return st;
}

void pq_eval_run_local(const pq_eval_run *r, pq_eval_report *rep)
{
    pq_eval_side *side[2] = {&rep->ref, &rep->q};
    const char *path[2] = {r->o->reference, r->o->model};
    pq_esm2_model *m[2] = {r->ref, r->q};
    for (int k = 0; k < 2; k++) {
        side[k]->seconds = r->sec[k];
        side[k]->n_forwards = r->n_fwd;
        side[k]->file_bytes = file_bytes(path[k]);
        pq_esm2_model_weight_bytes(m[k], &side[k]->weight_bytes, &side[k]->linear_weight_bytes);
    }
    rep->q.cpu_seconds = r->cpu_q;
    rep->ref.rss_load_mib = r->rss_load_ref;
    rep->q.rss_load_mib = r->rss_load_q;
    rep->peak_rss_mib = peak_rss_mib();
}

pq_status pq_eval_run_probe(pq_eval_run *r, pq_eval_util_probe *u)
{
    if (!r->o->no_peak) return pq_eval_util_measure(r->q, r->o->model_opts.n_threads, u);
    pq_eval_util_kernel(r->q, u);
    u->peak_gops = NAN;
    return PQ_OK;
}
