/* SPDX-License-Identifier: Apache-2.0 */
/* esm2_model.c - fp32 ESM-2 weights and forward pass on packed batches
 * (docs/esm2.md section 3, op order of fair-esm). */
#include "model/esm2_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/blas.h"
#include "model/sgemm_split.h"
#include "pq_config.h"
#include "base/pq_clock.h"
#include "base/pq_cpu.h"
#include "base/pq_mem.h"
#include "format/safetensors.h"
#include "model/tokenizer.h"

#if PQ_HAVE_OPENMP
#include <omp.h>
#endif

#define NROLES PQ__ESM2_ROLE_COUNT
#define MAX_REPR 64

typedef struct tensor {
    float *data;
    int64_t n;
} tensor;

struct pq_esm2_model {
    pq_esm2_config cfg;
    int l0, l1;                 /* stage */
    tensor g[NROLES];           /* global tensors */
    tensor (*lay)[NROLES];      /* [l1 - l0][role] */
    pq_esm2_observe_fn observe;
    void *observe_user;
    pq_ops ops;                 /* the kernel context it was opened with */
    int n_threads;
    /* packed Linears (NULL: that weight runs in fp32 from lay/g) */
    pq_qlinear *(*ql)[NROLES];  /* [l1 - l0][role] */
    pq_qlinear *ql_dense;       /* PQ_ESM2_LM_DENSE_W */
    /* per layer: q/k/v stacked [3D, D] and their biases [3D] (NULL: not
     * stacked); ql[..][Q/K/V] are then views of it */
    pq_qlinear **qkv;
    float **qkv_bias;
    bool fusion, threading;
    /* the forward's scratch activations, kept between forwards so that a run
     * of batches does not fault fresh pages in every time; grown on need */
    float *ws;
    size_t ws_floats;
    pq_esm2_profile *prof;      /* borrowed; NULL: not profiling */
};

/* ------------------------------------------------------------ loading */

static bool role_per_layer(pq_esm2_role r)
{
    return (r >= PQ_ESM2_Q && r <= PQ_ESM2_INV_FREQ);
}

static int64_t role_elems(const pq_esm2_config *c, pq_esm2_role r)
{
    int64_t D = c->embed_dim, F = c->ffn_dim, V = c->vocab_size;
    switch (r) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: case PQ_ESM2_OUT:
    case PQ_ESM2_LM_DENSE_W: return D * D;
    case PQ_ESM2_FC1: case PQ_ESM2_FC2: return F * D;
    case PQ_ESM2_FC1_BIAS: return F;
    case PQ_ESM2_INV_FREQ: return c->head_dim / 2;
    case PQ_ESM2_EMBED: case PQ_ESM2_LM_DECODER: return V * D;
    case PQ_ESM2_LM_BIAS: return V;
    case PQ_ESM2_CONTACT_W: return (int64_t)c->num_layers * c->attention_heads;
    case PQ_ESM2_CONTACT_B: return 1;
    default: return D; /* biases and LayerNorms */
    }
}

static pq_status load_one(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd, void *user,
                          pq_esm2_role role, int layer, tensor *t, bool required)
{
    char name[256];
    pq_esm2_name(role, layer, name, sizeof name);
    int64_t n = role_elems(cfg, role);
    t->data = malloc((size_t)n * sizeof(float));
    if (!t->data) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory for %lld floats", name, (long long)n);
    t->n = n;
    bool found = false;
    pq_status st = rd(user, name, n, t->data, &found);
    if (st != PQ_OK) return st;
    if (!found) {
        free(t->data);
        t->data = NULL;
        t->n = 0;
        if (required) return pq_err(PQ_ERR_FORMAT, "tensor %s is missing", name);
    }
    return PQ_OK;
}

/* inv_freq recomputed as esm2.md 6.1 when a checkpoint lacks it: fp32
 * formula, rounded through fp16 (round to nearest even). */
static float round_fp16(float f)
{
    if (f == 0.0f || !isfinite(f)) return f;
    int e;
    frexpf(f, &e);              /* f = m * 2^e, m in [0.5, 1) */
    if (e < -13) e = -13;       /* subnormal fp16 spacing */
    float q = ldexpf(1.0f, e - 11);
    return nearbyintf(f / q) * q;
}

static void default_inv_freq(int hd, float *dst)
{
    for (int i = 0; i < hd / 2; i++) {
        float e = (float)(2 * i) / (float)hd;
        float p = powf(10000.0f, e);
        dst[i] = round_fp16(1.0f / p);
    }
}

static bool role_is_linear(pq_esm2_role r)
{
    return r == PQ_ESM2_Q || r == PQ_ESM2_K || r == PQ_ESM2_V || r == PQ_ESM2_OUT || r == PQ_ESM2_FC1 ||
           r == PQ_ESM2_FC2 || r == PQ_ESM2_LM_DENSE_W;
}

/* Offer a Linear weight to lrd; *taken when it came back packed. */
static pq_status load_linear(const pq_esm2_config *cfg, pq_esm2_linear_reader lrd, void *user,
                             pq_esm2_role role, int layer, pq_qlinear **ql)
{
    *ql = NULL;
    if (!lrd || !role_is_linear(role)) return PQ_OK;
    char name[256];
    pq_esm2_name(role, layer, name, sizeof name);
    int64_t D = cfg->embed_dim, F = cfg->ffn_dim;
    int64_t o = role == PQ_ESM2_FC1 ? F : D, i = role == PQ_ESM2_FC2 ? F : D;
    return lrd(user, name, o, i, ql);
}

pq_status pq_esm2_model_load_with(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd,
                                  void *user, const pq_esm2_model_opts *opts,
                                  pq_esm2_model **out)
{
    return pq_esm2_model_load_with_linears(cfg, rd, NULL, user, opts, out);
}

pq_status pq_esm2_model_load_with_linears(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd,
                                          pq_esm2_linear_reader lrd, void *user,
                                          const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    return pq_esm2_model_load_with_qkv(cfg, rd, lrd, NULL, user, opts, out);
}

/* Offer layer l's q/k/v to qrd; when stacked, views of it stand for each. */
static pq_status load_qkv(pq_esm2_model *m, pq_esm2_qkv_reader qrd, void *user, int l)
{
    int li = l - m->l0;
    int64_t D = m->cfg.embed_dim;
    pq_status st = qrd(user, l, D, &m->qkv[li]);
    if (st != PQ_OK || !m->qkv[li]) return st;
    for (int i = 0; i < 3; i++)
        if ((st = pq_qlinear_view_rows(m->qkv[li], i * D, D, &m->ql[li][PQ_ESM2_Q + i])) != PQ_OK) return st;
    return PQ_OK;
}

/* The q, k, v biases side by side, as the stacked Linear's bias. */
static pq_status stack_qkv_bias(pq_esm2_model *m, int l)
{
    int li = l - m->l0;
    int64_t D = m->cfg.embed_dim;
    float *b = malloc((size_t)(3 * D) * sizeof(float));
    if (!b) return pq_err(PQ_ERR_RESOURCE, "out of memory for the q/k/v bias of layer %d", l);
    for (int i = 0; i < 3; i++)
        memcpy(b + i * D, m->lay[li][PQ_ESM2_Q_BIAS + i].data, (size_t)D * sizeof(float));
    m->qkv_bias[li] = b;
    return PQ_OK;
}

pq_status pq_esm2_model_load_with_qkv(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd,
                                      pq_esm2_linear_reader lrd, pq_esm2_qkv_reader qrd, void *user,
                                      const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    *out = NULL;
    int L = cfg->num_layers;
    int l0 = opts ? opts->layer_begin : 0, l1 = opts ? opts->layer_end : 0;
    if (l0 == 0 && l1 == 0) l1 = L;
    if (l0 < 0 || l1 > L || l0 >= l1)
        return pq_err(PQ_ERR_CONFIG, "layer range [%d, %d) is not inside the model's %d layers", l0, l1, L);
    if (cfg->embed_dim % cfg->attention_heads || cfg->head_dim % 2)
        return pq_err(PQ_ERR_FORMAT, "embed_dim %d / heads %d give no even head_dim", cfg->embed_dim,
                      cfg->attention_heads);
    pq_status st = pq_blas_load();
    if (st) return st;
    pq_esm2_model *m = calloc(1, sizeof *m);
    if (!m) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    m->cfg = *cfg;
    m->l0 = l0;
    m->l1 = l1;
    if (opts && opts->ops.name) m->ops = opts->ops;
    else pq_ops_select("cpu", &m->ops); /* "cpu" always has a context */
    m->n_threads = opts ? opts->n_threads : 0;
    m->fusion = !(opts && opts->no_fusion);
    m->threading = !(opts && opts->no_threading);
    m->lay = calloc((size_t)(l1 - l0), sizeof *m->lay);
    m->ql = calloc((size_t)(l1 - l0), sizeof *m->ql);
    m->qkv = calloc((size_t)(l1 - l0), sizeof *m->qkv);
    m->qkv_bias = calloc((size_t)(l1 - l0), sizeof *m->qkv_bias);
    if (!m->lay || !m->ql || !m->qkv || !m->qkv_bias) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto fail; }
    for (int l = l0; l < l1; l++) {
        if (qrd && m->fusion && (st = load_qkv(m, qrd, user, l)) != PQ_OK) goto fail;
        for (int r = PQ_ESM2_Q; r <= PQ_ESM2_INV_FREQ; r++) {
            if (!m->ql[l - l0][r] &&
                (st = load_linear(cfg, lrd, user, (pq_esm2_role)r, l, &m->ql[l - l0][r])) != PQ_OK)
                goto fail;
            if (m->ql[l - l0][r]) continue;
            st = load_one(cfg, rd, user, (pq_esm2_role)r, l, &m->lay[l - l0][r], r != PQ_ESM2_INV_FREQ);
            if (st != PQ_OK) goto fail;
            if (r == PQ_ESM2_INV_FREQ && !m->lay[l - l0][r].data) {
                tensor *t = &m->lay[l - l0][r];
                t->n = cfg->head_dim / 2;
                t->data = malloc((size_t)t->n * sizeof(float));
                if (!t->data) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto fail; }
                default_inv_freq(cfg->head_dim, t->data);
            }
        }
        if (m->qkv[l - l0] && (st = stack_qkv_bias(m, l)) != PQ_OK) goto fail;
    }
    bool head = (l1 == L);
    if (l0 == 0 || head) {
        if ((st = load_one(cfg, rd, user, PQ_ESM2_EMBED, -1, &m->g[PQ_ESM2_EMBED], true)) != PQ_OK) goto fail;
    }
    if (head) {
        static const pq_esm2_role hr[] = {PQ_ESM2_LN_FINAL_W, PQ_ESM2_LN_FINAL_B, PQ_ESM2_LM_DENSE_W,
                                          PQ_ESM2_LM_DENSE_B, PQ_ESM2_LM_LN_W, PQ_ESM2_LM_LN_B,
                                          PQ_ESM2_LM_BIAS};
        for (size_t i = 0; i < sizeof hr / sizeof hr[0]; i++) {
            if (hr[i] == PQ_ESM2_LM_DENSE_W) {
                if ((st = load_linear(cfg, lrd, user, hr[i], -1, &m->ql_dense)) != PQ_OK) goto fail;
                if (m->ql_dense) continue;
            }
            if ((st = load_one(cfg, rd, user, hr[i], -1, &m->g[hr[i]], true)) != PQ_OK) goto fail;
        }
        /* an explicit decoder is used as stored; absent = tied to the embedding */
        if ((st = load_one(cfg, rd, user, PQ_ESM2_LM_DECODER, -1, &m->g[PQ_ESM2_LM_DECODER], false)) != PQ_OK)
            goto fail;
        if ((st = load_one(cfg, rd, user, PQ_ESM2_CONTACT_W, -1, &m->g[PQ_ESM2_CONTACT_W], false)) != PQ_OK)
            goto fail;
        if ((st = load_one(cfg, rd, user, PQ_ESM2_CONTACT_B, -1, &m->g[PQ_ESM2_CONTACT_B], false)) != PQ_OK)
            goto fail;
    }
    *out = m;
    return PQ_OK;
fail:
    pq_esm2_model_free(m);
    return st;
}

typedef struct st_reader {
    const pq_st_model *st;
} st_reader;

static pq_status st_read(void *user, const char *name, int64_t n, float *dst, bool *found)
{
    const pq_st_model *st = ((st_reader *)user)->st;
    const pq_st_tensor *t = pq_st_find(st, name);
    *found = (t != NULL);
    if (!t) return PQ_OK;
    if (t->n_elems != n)
        return pq_err(PQ_ERR_FORMAT, "tensor %s has %lld elements, the architecture needs %lld", name,
                      (long long)t->n_elems, (long long)n);
    int64_t rows = t->ndim >= 2 ? t->shape[0] : 1; /* 0-D and 1-D are one row */
    pq_status s = pq_st_read_rows_f32(st, t, 0, rows, dst);
    pq_st_release(st, t);
    return s;
}

pq_status pq_esm2_model_load(const char *path, const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    *out = NULL;
    pq_st_model *st = NULL;
    pq_esm2_config cfg;
    pq_status rc = pq_st_open(path, &st);
    if (rc != PQ_OK) return rc;
    if ((rc = pq_esm2_detect(st, &cfg)) != PQ_OK) goto done;
    st_reader r = {st};
    rc = pq_esm2_model_load_with(&cfg, st_read, &r, opts, out);
done:
    pq_st_close(st);
    return rc;
}

void pq_esm2_model_free(pq_esm2_model *m)
{
    if (!m) return;
    for (int r = 0; r < NROLES; r++) free(m->g[r].data);
    if (m->lay)
        for (int l = 0; l < m->l1 - m->l0; l++)
            for (int r = 0; r < NROLES; r++) free(m->lay[l][r].data);
    if (m->ql)
        for (int l = 0; l < m->l1 - m->l0; l++)
            for (int r = 0; r < NROLES; r++) pq_qlinear_free(m->ql[l][r]);
    for (int l = 0; m->qkv && l < m->l1 - m->l0; l++) pq_qlinear_free(m->qkv[l]);
    for (int l = 0; m->qkv_bias && l < m->l1 - m->l0; l++) free(m->qkv_bias[l]);
    pq_qlinear_free(m->ql_dense);
    free(m->qkv);
    free(m->qkv_bias);
    free(m->ws);
    free(m->ql);
    free(m->lay);
    free(m);
}

const pq_esm2_config *pq_esm2_model_config(const pq_esm2_model *m) { return &m->cfg; }

void pq_esm2_model_stage(const pq_esm2_model *m, int *b, int *e)
{
    if (b) *b = m->l0;
    if (e) *e = m->l1;
}

void pq_esm2_model_set_observer(pq_esm2_model *m, pq_esm2_observe_fn fn, void *user)
{
    m->observe = fn;
    m->observe_user = user;
}

void pq_esm2_model_set_threads(pq_esm2_model *m, int n) { m->n_threads = n; }
void pq_esm2_model_set_fusion(pq_esm2_model *m, bool on) { m->fusion = on; }

void pq_esm2_model_set_profile(pq_esm2_model *m, pq_esm2_profile *p) { m->prof = p; }

const char *pq_esm2_prof_op_name(pq_esm2_prof_op op)
{
    static const char *const names[PQ_PROF_N_OPS] = {"embedding", "layernorm", "q/k/v GEMM", "attention",
                                                     "out GEMM", "fc1 GEMM", "gelu", "fc2 GEMM", "LM head"};
    return op >= 0 && op < PQ_PROF_N_OPS ? names[op] : "?";
}

const char *pq_esm2_prof_attn_name(pq_esm2_prof_attn op)
{
    static const char *const names[PQ_PROF_ATTN_N] = {"scale + rotary", "q k^T", "softmax", "p v",
                                                       "fused: rotary, q k^T, softmax, p v",
                                                       "fused bf16: rotary, q k^T, softmax, p v"};
    return op >= 0 && op < PQ_PROF_ATTN_N ? names[op] : "?";
}

/* Profile timers: free when no profile is set. */
static double prof_start(const pq_esm2_model *m) { return m->prof ? pq_now_s() : 0.0; }

static void prof_stop(const pq_esm2_model *m, pq_esm2_prof_op op, double t0)
{
    if (m->prof) m->prof->wall_s[op] += pq_now_s() - t0;
}
const pq_ops *pq_esm2_model_ops(const pq_esm2_model *m) { return &m->ops; }

const pq_qlinear *pq_esm2_model_qlinear(const pq_esm2_model *m, pq_esm2_role role, int layer)
{
    if (role == PQ_ESM2_LM_DENSE_W) return m->ql_dense;
    if (!role_is_linear(role) || layer < m->l0 || layer >= m->l1) return NULL;
    return m->ql[layer - m->l0][role];
}

void pq_esm2_model_weight_bytes(const pq_esm2_model *m, int64_t *total, int64_t *linear)
{
    int64_t t = 0, lin = 0;
    for (int r = 0; r < NROLES; r++) {
        t += m->g[r].n * 4;
        if (r == PQ_ESM2_LM_DENSE_W) lin += m->g[r].n * 4;
    }
    if (m->ql_dense) {
        t += pq_qlinear_weight_bytes(m->ql_dense);
        lin += pq_qlinear_weight_bytes(m->ql_dense);
    }
    for (int l = 0; l < m->l1 - m->l0; l++) {
        if (m->qkv[l]) { /* the views hold nothing; the stack and its bias */
            t += pq_qlinear_weight_bytes(m->qkv[l]) + 3 * m->cfg.embed_dim * 4;
            lin += pq_qlinear_weight_bytes(m->qkv[l]);
        }
        for (int r = 0; r < NROLES; r++) {
            int64_t b = m->ql[l][r] ? pq_qlinear_weight_bytes(m->ql[l][r]) : m->lay[l][r].n * 4;
            t += b;
            if (role_is_linear((pq_esm2_role)r)) lin += b;
        }
    }
    if (total) *total = t;
    if (linear) *linear = lin;
}

float *pq_esm2_model_tensor(pq_esm2_model *m, pq_esm2_role role, int layer, int64_t *n_elems)
{
    tensor *t = NULL;
    if (role <= PQ_ESM2_ROLE_OTHER || role >= PQ__ESM2_ROLE_COUNT) return NULL;
    if (role_per_layer(role)) {
        if (layer < m->l0 || layer >= m->l1) return NULL;
        t = &m->lay[layer - m->l0][role];
    } else {
        t = &m->g[role];
    }
    if (n_elems) *n_elems = t->n;
    return t->data;
}

void pq_esm2_outputs_clear(pq_esm2_outputs *o)
{
    free(o->logits);
    for (int i = 0; i < MAX_REPR; i++) free(o->repr[i]);
    free(o->attn);
    free(o->attn_off);
    free(o->contacts);
    free(o->contact_off);
    free(o->x_out);
    o->logits = NULL;
    memset(o->repr, 0, sizeof o->repr);
    o->attn = o->contacts = o->x_out = NULL;
    o->attn_off = o->contact_off = NULL;
}

/* ------------------------------------------------------------ forward */

static int resolve_threads(int n)
{
    return n > 0 ? n : pq_cpu_count();
}

static void observe(pq_esm2_model *m, int layer, pq_esm2_role site, const float *x, int64_t N, int64_t d)
{
    if (m->observe) m->observe(m->observe_user, &m->ops, layer, site, x, N, d);
}

typedef struct fwd_ctx {
    pq_esm2_model *m;
    const pq_esm2_batch *b;
    int64_t N, max_T;
    float *cos_t, *sin_t;  /* [max_T, hd/2] */
    float *scratch;        /* per thread [scratch_n] */
    int64_t scratch_n;     /* max_T * max_T, or the fused attention's need */
    float qscale;          /* hd^-0.5 */
    int n_threads;
} fwd_ctx;

/* The batch's sequences as row segments (model/sgemm_split.h). */
#define SEQS(c) ((pq_row_segs){.seg = (c)->b->offsets, .n_seg = (c)->b->n_seqs})

/* Row blocks for the element-wise passes: fixed, so the split (and any
 * kernel's vector/tail boundary) does not depend on the thread count. */
#define ROW_BLOCK 8

/* y = LayerNorm(x) rows in parallel; y may equal x. */
static void par_layernorm(const fwd_ctx *c, const float *x, int64_t n, int64_t d, const float *w,
                          const float *b, float eps, float *y)
{
    const pq_ops *K = &c->m->ops;
    int64_t nb = (n + ROW_BLOCK - 1) / ROW_BLOCK;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(c->n_threads) if (c->n_threads > 1)
#endif
    for (int64_t i = 0; i < nb; i++) {
        int64_t r0 = i * ROW_BLOCK, nr = n - r0 < ROW_BLOCK ? n - r0 : ROW_BLOCK;
        K->layernorm(x + r0 * d, nr, d, w, b, eps, y + r0 * d);
    }
}

/* GELU in place on rows of width d, one kernel call per row (as one call on
 * a row would split it into vector body and tail). */
static void par_gelu(const fwd_ctx *c, float *x, int64_t n, int64_t d)
{
    const pq_ops *K = &c->m->ops;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(c->n_threads) if (c->n_threads > 1)
#endif
    for (int64_t r = 0; r < n; r++) K->gelu(x + r * d, d);
}

/* x[i] += y[i] over n rows of width d. */
static void par_add(const fwd_ctx *c, float *x, const float *y, int64_t n, int64_t d)
{
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(c->n_threads) if (c->n_threads > 1)
#endif
    for (int64_t r = 0; r < n; r++) {
        float *xr = x + r * d;
        const float *yr = y + r * d;
        for (int64_t j = 0; j < d; j++) xr[j] += yr[j];
    }
}

/* Attention of one layer for every (sequence, head): q/k/v have row stride
 * ld (D apart, or 3D side by side from the stacked projection), o is [N, D].
 * With the context's fused kernel (bf16 products when bf16 is set and the
 * CPU has them), one call per job. Otherwise each job first scales its head
 * of q by hd^-0.5 and applies the rotary embedding to its heads of q and k
 * (in place), the fp32 operations of the whole-tensor passes, per element,
 * then two SGEMMs around the softmax. */
static pq_status attention(fwd_ctx *c, float *q, float *k, const float *v, int64_t ld, float *o,
                           float *attn_out, const int64_t *attn_off, int layer_in_stage, bool bf16)
{
    _Atomic int failed = 0; /* an SGEMM failed (a worker thread's error detail is its own) */
    const pq_esm2_config *cfg = &c->m->cfg;
    const pq_ops *K = &c->m->ops;
    int H = cfg->attention_heads, hd = cfg->head_dim, D = cfg->embed_dim;
    int64_t n_jobs = c->b->n_seqs * H;
    __typeof__(K->attention) fused = bf16 && K->attention_bf16 ? K->attention_bf16 : K->attention;
    const pq_esm2_prof_attn fused_step = bf16 && K->attention_bf16 ? PQ_PROF_ATTN_FUSED_BF16 : PQ_PROF_ATTN_FUSED;
#if PQ_HAVE_OPENMP
    /* one BLAS thread per head job: small GEMMs, parallel over heads */
    pq_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(c->n_threads)
#endif
    for (int64_t job = 0; job < n_jobs; job++) {
        int64_t s = job / H;
        int h = (int)(job % H);
        int64_t t0 = c->b->offsets[s], T = c->b->offsets[s + 1] - t0;
        int tid = 0;
#if PQ_HAVE_OPENMP
        tid = omp_get_thread_num();
#endif
        float *S = c->scratch + (size_t)tid * (size_t)c->scratch_n;
        float *qh = q + t0 * ld + h * hd, *kh = k + t0 * ld + h * hd;
        const float *vh = v + t0 * ld + h * hd;
        float *maps = attn_out ? attn_out + attn_off[s] + ((int64_t)layer_in_stage * H + h) * T * T : NULL;
        double tp[PQ_PROF_ATTN_FUSED + 1] = {0};
        if (c->m->prof) tp[0] = pq_now_s();
        if (fused) { /* one step for the profile */
            fused(qh, kh, vh, ld, T, hd, c->qscale, c->cos_t, c->sin_t, o + t0 * D + h * hd, D, maps, S);
            if (c->m->prof) {
                double d = pq_now_s() - tp[0];
#if PQ_HAVE_OPENMP
#pragma omp atomic
#endif
                c->m->prof->attn_thread_s[fused_step] += d;
            }
            continue;
        }
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < hd; j++) qh[t * ld + j] *= c->qscale;
        K->rotary(qh, T, ld, 1, hd, c->cos_t, c->sin_t);
        K->rotary(kh, T, ld, 1, hd, c->cos_t, c->sin_t);
        if (c->m->prof) tp[1] = pq_now_s();
        if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, 1.0f, qh, (int)ld, kh,
                     (int)ld, 0.0f, S, (int)T) != PQ_OK) {
            failed = 1;
            continue;
        }
        if (c->m->prof) tp[2] = pq_now_s();
        K->softmax_rows(S, T, T);
        if (c->m->prof) tp[3] = pq_now_s();
        if (maps) memcpy(maps, S, (size_t)(T * T) * sizeof(float));
        if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, S, (int)T, vh,
                     (int)ld, 0.0f, o + t0 * D + h * hd, D) != PQ_OK)
            failed = 1;
        if (c->m->prof) {
            tp[4] = pq_now_s();
            for (int i = 0; i < PQ_PROF_ATTN_FUSED; i++) {
                double d = tp[i + 1] - tp[i];
#if PQ_HAVE_OPENMP
#pragma omp atomic
#endif
                c->m->prof->attn_thread_s[i] += d;
            }
        }
    }
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(c->n_threads);
#endif
    return failed ? pq_blas_load() : PQ_OK; /* the load's error, recorded in this thread */
}

/* Contact head for one sequence: attn [L][H][T][T] -> contacts [T-2][T-2]. */
static pq_status contacts_one(const pq_esm2_model *m, const float *attn, int64_t T, float *out)
{
    int C = m->cfg.num_layers * m->cfg.attention_heads;
    int64_t n = T - 2;
    const float *w = m->g[PQ_ESM2_CONTACT_W].data;
    float bias = m->g[PQ_ESM2_CONTACT_B].data[0];
    float *A = malloc((size_t)(n * n) * sizeof(float));
    float *acc = calloc((size_t)(n * n), sizeof(float));
    float *rs = malloc((size_t)n * sizeof(float)), *cs = malloc((size_t)n * sizeof(float));
    if (!A || !acc || !rs || !cs) {
        free(A); free(acc); free(rs); free(cs);
        return pq_err(PQ_ERR_RESOURCE, "out of memory for a %lld x %lld contact map", (long long)n, (long long)n);
    }
    for (int ch = 0; ch < C; ch++) {
        const float *P = attn + (int64_t)ch * T * T;
        /* residues are rows/cols 1..T-2 (cls first, eos last dropped) */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                A[i * n + j] = P[(i + 1) * T + (j + 1)] + P[(j + 1) * T + (i + 1)];
        float tot = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            float r = 0.0f;
            for (int64_t j = 0; j < n; j++) r += A[i * n + j];
            rs[i] = r;
        }
        for (int64_t j = 0; j < n; j++) {
            float cc = 0.0f;
            for (int64_t i = 0; i < n; i++) cc += A[i * n + j];
            cs[j] = cc;
            tot += cc;
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                acc[i * n + j] += (A[i * n + j] - (rs[i] * cs[j]) / tot) * w[ch];
    }
    for (int64_t i = 0; i < n * n; i++) out[i] = 1.0f / (1.0f + expf(-(acc[i] + bias)));
    free(A); free(acc); free(rs); free(cs);
    return PQ_OK;
}

pq_status pq_esm2_check_batch(const pq_esm2_config *cfg, const pq_esm2_batch *b, int64_t *max_T)
{
    if (!b || b->n_seqs <= 0 || !b->offsets || !b->ids || b->offsets[0] != 0)
        return pq_err(PQ_ERR_CONFIG, "empty or malformed packed batch");
    *max_T = 0;
    for (int64_t s = 0; s < b->n_seqs; s++) {
        int64_t T = b->offsets[s + 1] - b->offsets[s];
        if (T < 3)
            return pq_err(PQ_ERR_CONFIG, "batch sequence %lld has %lld tokens; need <cls>, >= 1 residue, <eos>",
                          (long long)s, (long long)T);
        if (T > *max_T) *max_T = T;
    }
    int64_t N = b->offsets[b->n_seqs];
    for (int64_t i = 0; i < N; i++) {
        int32_t id = b->ids[i];
        if (id < 0 || id >= cfg->vocab_size || id == PQ_TOK_PAD)
            return pq_err(PQ_ERR_FORMAT, "token %lld has id %d (%s), not allowed in a packed batch",
                          (long long)i, id, id == PQ_TOK_PAD ? "<pad>" : "outside the vocabulary");
    }
    return PQ_OK;
}

float pq_esm2_td_denom(const pq_esm2_batch *b, int64_t s)
{
    int64_t t0 = b->offsets[s], t1 = b->offsets[s + 1], nm = 0;
    for (int64_t t = t0; t < t1; t++) nm += (b->ids[t] == PQ_TOK_MASK);
    return 1.0f - (float)nm / (float)(t1 - t0);
}

void pq_esm2_embed(const pq_esm2_config *cfg, const float *E, const pq_esm2_batch *b, float *x)
{
    int64_t D = cfg->embed_dim;
    for (int64_t s = 0; s < b->n_seqs; s++) {
        float denom = pq_esm2_td_denom(b, s);
        for (int64_t t = b->offsets[s]; t < b->offsets[s + 1]; t++) {
            float *xr = x + t * D;
            const float *er = E + (int64_t)b->ids[t] * D;
            bool masked = (b->ids[t] == PQ_TOK_MASK);
            for (int64_t j = 0; j < D; j++) xr[j] = cfg->token_dropout ? ((masked ? 0.0f : er[j]) * 0.88f) / denom
                                                                      : er[j];
        }
    }
}

/* q/k/v projection: packed when the layer has it, else fp32 as before. */
static pq_status qkv_linear(fwd_ctx *c, const pq_qlinear *ql, const float *h, const float *W,
                            const float *bias, float *y)
{
    int64_t D = c->m->cfg.embed_dim;
    if (!ql) return pq_linear_f32(h, c->N, D, W, bias, D, y, SEQS(c), c->n_threads);
    return pq_qlinear_forward_rows(&c->m->ops, ql, h, c->N, SEQS(c), bias, PQ_QLINEAR_POST_NONE, NULL, y,
                              c->n_threads);
}

/* x += Linear(in). Fused, the residual add runs in the GEMM epilogue writing
 * into *tmp, and the two buffers swap (the kernels' epilogue does not read a
 * residual that aliases the output: it overwrites y before adding). Unfused,
 * into *tmp then added. The same fp32 additions either way. */
static pq_status residual_linear(fwd_ctx *c, const pq_qlinear *ql, const float *in, const float *bias,
                                 float **x, float **tmp)
{
    if (c->m->fusion) {
        pq_status st = pq_qlinear_forward_rows(&c->m->ops, ql, in, c->N, SEQS(c), bias, PQ_QLINEAR_POST_RESIDUAL, *x,
                                          *tmp, c->n_threads);
        float *t = *x;
        *x = *tmp;
        *tmp = t;
        return st;
    }
    pq_status st = pq_qlinear_forward_rows(&c->m->ops, ql, in, c->N, SEQS(c), bias, PQ_QLINEAR_POST_NONE, NULL, *tmp,
                                      c->n_threads);
    if (st != PQ_OK) return st;
    par_add(c, *x, *tmp, c->N, c->m->cfg.embed_dim);
    return PQ_OK;
}

static int repr_index(const pq_esm2_model *m, int want)
{
    int L = m->cfg.num_layers;
    return want < 0 ? L + 1 + want : want;
}

pq_status pq_esm2_forward(pq_esm2_model *m, const pq_esm2_batch *b, const float *x_in,
                          pq_esm2_outputs *out)
{
    return pq_esm2_forward_from(m, b, m->l0, x_in, out);
}

pq_status pq_esm2_forward_from(pq_esm2_model *m, const pq_esm2_batch *b, int from, const float *x_in,
                               pq_esm2_outputs *out)
{
    const pq_esm2_config *cfg = &m->cfg;
    int L = cfg->num_layers, H = cfg->attention_heads, hd = cfg->head_dim;
    int64_t D = cfg->embed_dim, F = cfg->ffn_dim, V = cfg->vocab_size;
    bool has_head = (m->l1 == L);
    int64_t max_T = 0;
    pq_status st = pq_esm2_check_batch(&m->cfg, b, &max_T);
    if (st != PQ_OK) return st;
    int64_t N = b->offsets[b->n_seqs];
    float eps = cfg->layer_norm_eps > 0 ? cfg->layer_norm_eps : 1e-5f;

    if (out->n_repr < 0 || out->n_repr > MAX_REPR)
        return pq_err(PQ_ERR_CONFIG, "%d representation layers requested (at most %d)", out->n_repr, MAX_REPR);
    for (int i = 0; i < out->n_repr; i++) {
        int li = repr_index(m, out->repr_layers[i]);
        if (li < from || li > m->l1 || li < 0 || li > L || (li == from && from > 0))
            return pq_err(PQ_ERR_CONFIG, "representation of layer %d is not produced by layers [%d, %d) of %d",
                          out->repr_layers[i], from, m->l1, L);
    }
    if ((out->want_logits || out->want_contacts) && !has_head)
        return pq_err(PQ_ERR_CONFIG, "logits/contacts need the stage to end at layer %d (it ends at %d)", L, m->l1);
    if (out->want_contacts && (m->l0 != 0 || !m->g[PQ_ESM2_CONTACT_W].data || !m->g[PQ_ESM2_CONTACT_B].data))
        return pq_err(PQ_ERR_CONFIG, "contact prediction needs the whole model and the contact-head tensors");
    if (from < m->l0 || from > m->l1)
        return pq_err(PQ_ERR_CONFIG, "a forward from layer %d in stage [%d, %d)", from, m->l0, m->l1);
    if (from != m->l0 && (out->want_attn || out->want_contacts))
        return pq_err(PQ_ERR_CONFIG, "attention maps need the forward to start at the stage's layer %d", m->l0);
    if ((from == 0) != (x_in == NULL))
        return pq_err(PQ_ERR_CONFIG, from == 0 ? "a stage starting at layer 0 takes token ids, not activations"
                                               : "a forward starting at layer %d needs input activations", from);

    fwd_ctx c = {.m = m, .b = b, .N = N, .max_T = max_T,
                 .n_threads = m->threading ? resolve_threads(m->n_threads) : 1};
    int n_stage = m->l1 - m->l0;
    bool want_attn = out->want_attn || out->want_contacts;
    float *x = NULL, *h = NULL, *qkv = NULL, *o = NULL, *f = NULL, *attn = NULL;
    int64_t *attn_off = NULL;
    size_t nd = (size_t)(N * D);
    /* x and h swap places (residual epilogue) and x may be handed out as
     * x_out: their own blocks. The rest lives in the model's workspace, in
     * slices rounded to 16 floats (64 bytes). */
    x = pq_alloc_big(nd * sizeof(float));
    h = pq_alloc_big(nd * sizeof(float));
    c.scratch_n = max_T * max_T;
    if (m->ops.attention && (int64_t)pq_attention_scratch(max_T, hd) > c.scratch_n)
        c.scratch_n = (int64_t)pq_attention_scratch(max_T, hd);
    c.scratch_n = (c.scratch_n + 15) / 16 * 16; /* each thread's slice 64-byte aligned */
    size_t sz[6] = {3 * nd, nd, (size_t)(N * (F > V ? F : V)), (size_t)(max_T * (hd / 2)),
                    (size_t)(max_T * (hd / 2)), (size_t)c.n_threads * (size_t)c.scratch_n};
    size_t off[6], need = 0;
    for (int i = 0; i < 6; i++) {
        off[i] = need;
        need += (sz[i] + 15) / 16 * 16;
    }
    if (need > m->ws_floats) {
        free(m->ws);
        m->ws_floats = 0;
        m->ws = pq_alloc_big(need * sizeof(float));
        if (m->ws) m->ws_floats = need;
    }
    if (!x || !h || !m->ws) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory for the activations of %lld tokens", (long long)N);
        goto cleanup;
    }
    qkv = m->ws + off[0];
    o = m->ws + off[1];
    f = m->ws + off[2];
    c.cos_t = m->ws + off[3];
    c.sin_t = m->ws + off[4];
    c.scratch = m->ws + off[5];
    if (want_attn) {
        attn_off = malloc((size_t)(b->n_seqs + 1) * sizeof *attn_off);
        if (!attn_off) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
        attn_off[0] = 0;
        for (int64_t s = 0; s < b->n_seqs; s++) {
            int64_t T = b->offsets[s + 1] - b->offsets[s];
            attn_off[s + 1] = attn_off[s] + (int64_t)n_stage * H * T * T;
        }
        attn = malloc((size_t)attn_off[b->n_seqs] * sizeof(float));
        if (!attn) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory for attention maps (%lld floats)",
                        (long long)attn_off[b->n_seqs]);
            goto cleanup;
        }
    }
    pq_blas_set_threads(c.n_threads);

    double tq = prof_start(m);
    if (m->prof) m->prof->forwards++;
    if (x_in) memcpy(x, x_in, nd * sizeof(float));
    else pq_esm2_embed(cfg, m->g[PQ_ESM2_EMBED].data, b, x);
    prof_stop(m, PQ_PROF_EMBED, tq);

    /* representation requests at the stage input (layer 0 only) */
#define STORE_REPR(li, src)                                                                    \
    do {                                                                                       \
        for (int r_ = 0; r_ < out->n_repr; r_++)                                               \
            if (repr_index(m, out->repr_layers[r_]) == (li) && !out->repr[r_]) {               \
                out->repr[r_] = malloc(nd * sizeof(float));                                    \
                if (!out->repr[r_]) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; } \
                memcpy(out->repr[r_], (src), nd * sizeof(float));                              \
            }                                                                                  \
    } while (0)
    if (from == 0) STORE_REPR(0, x);

    int half = hd / 2;
    c.qscale = (float)pow((double)hd, -0.5);
    const float *table_of = NULL; /* inv_freq the rotary table holds */
    for (int l = from; l < m->l1; l++) {
        tensor *w = m->lay[l - m->l0];
        if (!table_of || memcmp(table_of, w[PQ_ESM2_INV_FREQ].data, (size_t)half * sizeof(float)) != 0) {
            pq_rotary_table(w[PQ_ESM2_INV_FREQ].data, half, max_T, c.cos_t, c.sin_t);
            table_of = w[PQ_ESM2_INV_FREQ].data;
        }
        tq = prof_start(m);
        par_layernorm(&c, x, N, D, w[PQ_ESM2_LN_ATTN_W].data, w[PQ_ESM2_LN_ATTN_B].data, eps, h);
        prof_stop(m, PQ_PROF_LAYERNORM, tq);
        observe(m, l, PQ_ESM2_Q, h, N, D);
        observe(m, l, PQ_ESM2_K, h, N, D);
        observe(m, l, PQ_ESM2_V, h, N, D);
        pq_qlinear **ql = m->ql[l - m->l0];
        float *q = qkv, *k = qkv + nd, *v = qkv + 2 * nd;
        int64_t ld = D;
        tq = prof_start(m);
        if (m->fusion && m->qkv[l - m->l0]) {
            /* one GEMM, rows [q | k | v] side by side */
            st = pq_qlinear_forward_rows(&m->ops, m->qkv[l - m->l0], h, N, SEQS(&c), m->qkv_bias[l - m->l0],
                                    PQ_QLINEAR_POST_NONE, NULL, qkv, c.n_threads);
            if (st != PQ_OK) goto cleanup;
            k = qkv + D;
            v = qkv + 2 * D;
            ld = 3 * D;
        } else if ((st = qkv_linear(&c, ql[PQ_ESM2_Q], h, w[PQ_ESM2_Q].data, w[PQ_ESM2_Q_BIAS].data, q)) != PQ_OK ||
                   (st = qkv_linear(&c, ql[PQ_ESM2_K], h, w[PQ_ESM2_K].data, w[PQ_ESM2_K_BIAS].data, k)) != PQ_OK ||
                   (st = qkv_linear(&c, ql[PQ_ESM2_V], h, w[PQ_ESM2_V].data, w[PQ_ESM2_V_BIAS].data, v)) != PQ_OK) {
            goto cleanup;
        }
        prof_stop(m, PQ_PROF_QKV, tq);
        /* bf16 products in attention where q/k/v come from int8 activations */
        const pq_qlinear *lq = m->qkv[l - m->l0] ? m->qkv[l - m->l0] : ql[PQ_ESM2_Q];
        pq_qlinear_kind kind = lq ? pq_qlinear_get_kind(lq) : PQ_QLINEAR_F32;
        bool bf16 = kind == PQ_QLINEAR_W8A8_DYNAMIC || kind == PQ_QLINEAR_W8A8_STATIC;
        tq = prof_start(m);
        if ((st = attention(&c, q, k, v, ld, o, attn, attn_off, l - m->l0, bf16)) != PQ_OK) goto cleanup;
        prof_stop(m, PQ_PROF_ATTENTION, tq);
        observe(m, l, PQ_ESM2_OUT, o, N, D);
        tq = prof_start(m);
        if (ql[PQ_ESM2_OUT]) {
            if ((st = residual_linear(&c, ql[PQ_ESM2_OUT], o, w[PQ_ESM2_OUT_BIAS].data, &x, &h)) != PQ_OK)
                goto cleanup;
        } else {
            if ((st = pq_linear_f32(o, N, D, w[PQ_ESM2_OUT].data, w[PQ_ESM2_OUT_BIAS].data, D, h, SEQS(&c), c.n_threads)) != PQ_OK)
                goto cleanup;
            par_add(&c, x, h, N, D);
        }
        prof_stop(m, PQ_PROF_OUT, tq);
        tq = prof_start(m);
        par_layernorm(&c, x, N, D, w[PQ_ESM2_LN_FFN_W].data, w[PQ_ESM2_LN_FFN_B].data, eps, h);
        prof_stop(m, PQ_PROF_LAYERNORM, tq);
        observe(m, l, PQ_ESM2_FC1, h, N, D);
        tq = prof_start(m);
        bool gelu_apart = true;
        if (ql[PQ_ESM2_FC1]) {
            /* fused: bias + GELU in the GEMM epilogue */
            st = pq_qlinear_forward_rows(&m->ops, ql[PQ_ESM2_FC1], h, N, SEQS(&c), w[PQ_ESM2_FC1_BIAS].data,
                                    m->fusion ? PQ_QLINEAR_POST_GELU : PQ_QLINEAR_POST_NONE, NULL, f,
                                    c.n_threads);
            if (st != PQ_OK) goto cleanup;
            gelu_apart = !m->fusion;
        } else {
            if ((st = pq_linear_f32(h, N, D, w[PQ_ESM2_FC1].data, w[PQ_ESM2_FC1_BIAS].data, F, f, SEQS(&c), c.n_threads)) != PQ_OK)
                goto cleanup;
        }
        prof_stop(m, PQ_PROF_FC1, tq);
        if (gelu_apart) {
            tq = prof_start(m);
            par_gelu(&c, f, N, F);
            prof_stop(m, PQ_PROF_GELU, tq);
        }
        observe(m, l, PQ_ESM2_FC2, f, N, F);
        tq = prof_start(m);
        if (ql[PQ_ESM2_FC2]) {
            if ((st = residual_linear(&c, ql[PQ_ESM2_FC2], f, w[PQ_ESM2_FC2_BIAS].data, &x, &h)) != PQ_OK)
                goto cleanup;
        } else {
            if ((st = pq_linear_f32(f, N, F, w[PQ_ESM2_FC2].data, w[PQ_ESM2_FC2_BIAS].data, D, h, SEQS(&c), c.n_threads)) != PQ_OK)
                goto cleanup;
            par_add(&c, x, h, N, D);
        }
        prof_stop(m, PQ_PROF_FC2, tq);
        if (l + 1 < L) STORE_REPR(l + 1, x);
    }

    if (has_head) {
        tq = prof_start(m);
        par_layernorm(&c, x, N, D, m->g[PQ_ESM2_LN_FINAL_W].data, m->g[PQ_ESM2_LN_FINAL_B].data, eps, x);
        prof_stop(m, PQ_PROF_LAYERNORM, tq);
        STORE_REPR(L, x);
        tq = prof_start(m);
        if (out->want_logits) {
            observe(m, -1, PQ_ESM2_LM_DENSE_W, x, N, D);
            if (m->ql_dense) {
                st = pq_qlinear_forward_rows(&m->ops, m->ql_dense, x, N, SEQS(&c), m->g[PQ_ESM2_LM_DENSE_B].data,
                                        PQ_QLINEAR_POST_NONE, NULL, h, c.n_threads);
                if (st != PQ_OK) goto cleanup;
            } else {
                st = pq_linear_f32(x, N, D, m->g[PQ_ESM2_LM_DENSE_W].data, m->g[PQ_ESM2_LM_DENSE_B].data, D, h, SEQS(&c), c.n_threads);
                if (st != PQ_OK) goto cleanup;
            }
            par_gelu(&c, h, N, D);
            par_layernorm(&c, h, N, D, m->g[PQ_ESM2_LM_LN_W].data, m->g[PQ_ESM2_LM_LN_B].data, eps, h);
            const float *dec = m->g[PQ_ESM2_LM_DECODER].data ? m->g[PQ_ESM2_LM_DECODER].data
                                                              : m->g[PQ_ESM2_EMBED].data;
            out->logits = malloc((size_t)(N * V) * sizeof(float));
            if (!out->logits) { st = pq_err(PQ_ERR_RESOURCE, "out of memory for logits"); goto cleanup; }
            if ((st = pq_linear_f32(h, N, D, dec, m->g[PQ_ESM2_LM_BIAS].data, V, out->logits, SEQS(&c), c.n_threads)) != PQ_OK) goto cleanup;
        }
        prof_stop(m, PQ_PROF_HEAD, tq);
        if (out->want_contacts) {
            out->contact_off = malloc((size_t)(b->n_seqs + 1) * sizeof(int64_t));
            if (!out->contact_off) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
            out->contact_off[0] = 0;
            for (int64_t s = 0; s < b->n_seqs; s++) {
                int64_t T = b->offsets[s + 1] - b->offsets[s];
                out->contact_off[s + 1] = out->contact_off[s] + (T - 2) * (T - 2);
            }
            out->contacts = malloc((size_t)out->contact_off[b->n_seqs] * sizeof(float) + 1);
            if (!out->contacts) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
            for (int64_t s = 0; s < b->n_seqs; s++) {
                int64_t T = b->offsets[s + 1] - b->offsets[s];
                if ((st = contacts_one(m, attn + attn_off[s], T, out->contacts + out->contact_off[s])) != PQ_OK)
                    goto cleanup;
            }
        }
    } else {
        out->x_out = x;
        x = NULL;
    }
    if (out->want_attn) {
        out->attn = attn;
        out->attn_off = attn_off;
        attn = NULL;
        attn_off = NULL;
    }
#undef STORE_REPR
cleanup:
    free(x); free(h);
    free(attn); free(attn_off);
    return st;
}
