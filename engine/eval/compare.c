/* SPDX-License-Identifier: Apache-2.0 */
/* compare.c - the comparison loop of `proteus evaluate`. */
#include "eval/compare.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "base/pq_clock.h"
#include "eval/score.h"
#include "model/batch.h"
#include "model/blas.h"
#include "model/fasta.h"

static const pq_esm2_role k_sites[PQ_EVAL_N_SITES] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT,
                                                      PQ_ESM2_FC1, PQ_ESM2_FC2, PQ_ESM2_LM_DENSE_W};
static const char *const k_site_names[PQ_EVAL_N_SITES] = {"q", "k", "v", "out", "fc1", "fc2", "lm_dense"};

const char *pq_eval_site_name(int site)
{
    return site >= 0 && site < PQ_EVAL_N_SITES ? k_site_names[site] : "?";
}

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

typedef struct sqnr_ctx {
    pq_esm2_model *ref, *q;
    int L, n_threads;
    pq_eval_sqnr *acc;
    float *y1, *y2;
    int64_t cap;
    pq_status st;
} sqnr_ctx;

/* y[N, n] = x[N, d] W[n, d]^T + b, in fp32. */
static pq_status linear_f32(const float *x, const float *W, const float *b, int64_t N, int64_t n, int64_t d,
                            float *y)
{
    for (int64_t i = 0; i < N; i++) memcpy(y + i * n, b, (size_t)n * sizeof(float));
    return pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n, (int)d, 1.0f, x, (int)d, W, (int)d,
                    1.0f, y, (int)n);
}

/* Observer on the reference: apply both models' Linear to its input. */
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
    if (N * n > c->cap) {
        free(c->y1);
        free(c->y2);
        c->y1 = malloc((size_t)(N * n) * sizeof(float));
        c->y2 = malloc((size_t)(N * n) * sizeof(float));
        c->cap = N * n;
        if (!c->y1 || !c->y2) {
            c->cap = 0;
            c->st = pq_err(PQ_ERR_RESOURCE, "out of memory for Linear outputs");
            return;
        }
    }
    if ((c->st = linear_f32(x, W, b, N, n, d, c->y1)) != PQ_OK) return;
    const pq_qlinear *ql = pq_esm2_model_qlinear(c->q, site, layer);
    const float *qb = pq_esm2_model_tensor(c->q, bias_role(site), layer, &qb_n);
    if (ql)
        c->st = pq_qlinear_forward(pq_esm2_model_ops(c->q), ql, x, N, qb, PQ_QLINEAR_POST_NONE, NULL,
                                   c->y2, c->n_threads);
    else c->st = linear_f32(x, pq_esm2_model_tensor(c->q, site, layer, &nr), qb, N, n, d, c->y2);
    if (c->st == PQ_OK) pq_eval_sqnr_add(&c->acc[row * PQ_EVAL_N_SITES + si], c->y1, c->y2, N * n);
}

static int64_t file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : -1;
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
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

/* The running sums of the unmasked pass. */
typedef struct divergence {
    double kl_sum, kl_max, lcos_sum, ecos_sum;
    int64_t n_pos;
    float *pool_r, *pool_q; /* [D] */
} divergence;

/* KL and cosine of every residue position, embedding cosine of every
 * sequence, of one batch's outputs. */
static void add_divergence(divergence *d, const pq_packed *pk, int64_t np, const pq_esm2_outputs *o1,
                           const pq_esm2_outputs *o2, int V, int64_t D)
{
    for (int64_t s = 0; s < np; s++) {
        int64_t t0 = pk->offsets[s], T = pk->offsets[s + 1] - t0;
        for (int64_t t = t0 + 1; t < t0 + T - 1; t++) {
            double kl = pq_eval_kl(o1->logits + t * V, o2->logits + t * V, V);
            d->kl_sum += kl;
            if (kl > d->kl_max) d->kl_max = kl;
            d->lcos_sum += pq_eval_cosine(o1->logits + t * V, o2->logits + t * V, V);
            d->n_pos++;
        }
        pq_eval_mean_pool(o1->repr[0] + t0 * D, T, D, d->pool_r);
        pq_eval_mean_pool(o2->repr[0] + t0 * D, T, D, d->pool_q);
        d->ecos_sum += pq_eval_cosine(d->pool_r, d->pool_q, D);
    }
}

/* Unmasked pass of one batch: logits and final representation of both,
 * the per-Linear SQNR observed on the reference. */
static pq_status unmasked_pass(sqnr_ctx *sc, const pq_packed *pk, pq_esm2_outputs *o1, pq_esm2_outputs *o2)
{
    pq_esm2_outputs_clear(o1);
    pq_esm2_outputs_clear(o2);
    o1->want_logits = o2->want_logits = true;
    o1->n_repr = o2->n_repr = 1;
    o1->repr_layers[0] = o2->repr_layers[0] = -1;
    pq_esm2_model_set_observer(sc->ref, observe_linear, sc);
    pq_status st = pq_esm2_forward(sc->ref, &pk->batch, NULL, o1);
    pq_esm2_model_set_observer(sc->ref, NULL, NULL);
    if (st == PQ_OK) st = sc->st;
    if (st == PQ_OK) st = pq_esm2_forward(sc->q, &pk->batch, NULL, o2);
    return st;
}

/* Masked pass of one batch (masked in place), each model timed. */
static pq_status masked_pass(pq_esm2_model *ref, pq_esm2_model *q, const pq_packed *pk, const int32_t *orig,
                             pq_esm2_outputs *o1, pq_esm2_outputs *o2, pq_eval_report *r, int V)
{
    pq_status st;
    pq_esm2_outputs_clear(o1);
    pq_esm2_outputs_clear(o2);
    o1->n_repr = o2->n_repr = 0;
    double t_a = pq_now_s();
    if ((st = pq_esm2_forward(ref, &pk->batch, NULL, o1)) != PQ_OK) return st;
    double t_b = pq_now_s();
    if ((st = pq_esm2_forward(q, &pk->batch, NULL, o2)) != PQ_OK) return st;
    double t_c = pq_now_s();
    int64_t N = pk->offsets[pk->batch.n_seqs];
    r->ref.seconds += t_b - t_a;
    r->q.seconds += t_c - t_b;
    pq_eval_mlm_add(&r->ref.mlm, o1->logits, orig, N, V);
    pq_eval_mlm_add(&r->q.mlm, o2->logits, orig, N, V);
    return PQ_OK;
}

pq_status pq_eval_compare(const pq_eval_compare_opts *o, pq_eval_report *r)
{
    pq_status st = PQ_OK;
    pq_esm2_model *ref = NULL, *q = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    int32_t *orig = NULL;
    pq_packed pk;
    pq_esm2_outputs o1, o2;
    divergence dv = {0};
    sqnr_ctx sc = {0};
    memset(r, 0, sizeof *r);
    memset(&pk, 0, sizeof pk);
    memset(&o1, 0, sizeof o1);
    memset(&o2, 0, sizeof o2);
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = o->max_length;
    if ((st = pq_fasta_read_all(o->fasta, &fo, o->max_seqs, &recs, &n_recs)) != PQ_OK) goto done;
    double rss0 = peak_rss_mib();
    if ((st = pq_esm2_model_open(o->reference, &o->reference_opts, &ref)) != PQ_OK) goto done;
    double rss_ref = peak_rss_mib();
    if ((st = pq_esm2_model_open(o->model, &o->model_opts, &q)) != PQ_OK) goto done;
    double rss_q = peak_rss_mib();
    const pq_esm2_config *cfg = pq_esm2_model_config(ref);
    if ((st = same_arch(pq_esm2_model_config(q), cfg, o->model, o->reference)) != PQ_OK) goto done;
    int V = cfg->vocab_size, L = cfg->num_layers;
    int64_t D = cfg->embed_dim;
    r->num_layers = L;
    r->ref.rss_load_mib = rss_ref - rss0;
    r->q.rss_load_mib = rss_q - rss_ref;
    sc = (sqnr_ctx){.ref = ref, .q = q, .L = L, .n_threads = o->model_opts.n_threads};
    sc.acc = r->sqnr = calloc((size_t)(L + 1) * PQ_EVAL_N_SITES, sizeof *r->sqnr);
    dv.pool_r = malloc((size_t)D * sizeof(float));
    dv.pool_q = malloc((size_t)D * sizeof(float));
    if (!r->sqnr || !dv.pool_r || !dv.pool_q) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }

    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, o->batch_tokens, &pk, &np)) != PQ_OK) goto done;
        if ((st = unmasked_pass(&sc, &pk, &o1, &o2)) != PQ_OK) goto done;
        add_divergence(&dv, &pk, np, &o1, &o2, V, D);
        if ((st = pq_eval_mask_batch(&pk, np, o->seed, o->mask_frac, &orig)) != PQ_OK) goto done;
        if ((st = masked_pass(ref, q, &pk, orig, &o1, &o2, r, V)) != PQ_OK) goto done;
        r->n_tokens += pk.offsets[np];
        start += np;
    }
    r->n_sequences = n_recs;
    r->n_positions = dv.n_pos;
    r->kl_mean = dv.kl_sum / (double)dv.n_pos;
    r->kl_max = dv.kl_max;
    r->logits_cosine_mean = dv.lcos_sum / (double)dv.n_pos;
    r->embedding_cosine_mean = dv.ecos_sum / (double)n_recs;
    pq_esm2_model_weight_bytes(ref, &r->ref.weight_bytes, &r->ref.linear_weight_bytes);
    pq_esm2_model_weight_bytes(q, &r->q.weight_bytes, &r->q.linear_weight_bytes);
    r->ref.file_bytes = file_bytes(o->reference);
    r->q.file_bytes = file_bytes(o->model);
    r->peak_rss_mib = peak_rss_mib();
done:
    pq_esm2_outputs_clear(&o1);
    pq_esm2_outputs_clear(&o2);
    pq_packed_free(&pk);
    free(orig);
    free(dv.pool_r);
    free(dv.pool_q);
    free(sc.y1);
    free(sc.y2);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(ref);
    pq_esm2_model_free(q);
    return st;
}

void pq_eval_report_free(pq_eval_report *r)
{
    if (!r) return;
    free(r->sqnr);
    r->sqnr = NULL;
}

double pq_eval_report_sqnr_db(const pq_eval_report *r, int layer, int site)
{
    return pq_eval_sqnr_db(&r->sqnr[layer * PQ_EVAL_N_SITES + site]);
}
