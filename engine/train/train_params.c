/* SPDX-License-Identifier: Apache-2.0 */
/* train_params.c - the flat layout of the trainable ESM-2 tensors and their
 * loading from a safetensors checkpoint. */
#include "train/train_params.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"

#define NROLES PQ__ESM2_ROLE_COUNT

static const pq_esm2_role k_layer_roles[] = {
    PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2,
    PQ_ESM2_Q_BIAS, PQ_ESM2_K_BIAS, PQ_ESM2_V_BIAS, PQ_ESM2_OUT_BIAS, PQ_ESM2_FC1_BIAS, PQ_ESM2_FC2_BIAS,
    PQ_ESM2_LN_ATTN_W, PQ_ESM2_LN_ATTN_B, PQ_ESM2_LN_FFN_W, PQ_ESM2_LN_FFN_B};
static const pq_esm2_role k_global_roles[] = {
    PQ_ESM2_EMBED, PQ_ESM2_LN_FINAL_W, PQ_ESM2_LN_FINAL_B, PQ_ESM2_LM_DENSE_W, PQ_ESM2_LM_DENSE_B,
    PQ_ESM2_LM_LN_W, PQ_ESM2_LM_LN_B, PQ_ESM2_LM_BIAS, PQ_ESM2_LM_DECODER};
#define N_LAYER_ROLES ((int)(sizeof k_layer_roles / sizeof k_layer_roles[0]))
#define N_GLOBAL_ROLES ((int)(sizeof k_global_roles / sizeof k_global_roles[0]))

/* [rows, cols] of a trained role. */
static void role_shape(const pq_esm2_config *c, pq_esm2_role r, int64_t *rows, int64_t *cols)
{
    int64_t D = c->embed_dim, F = c->ffn_dim, V = c->vocab_size;
    *cols = 1;
    switch (r) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: case PQ_ESM2_OUT: case PQ_ESM2_LM_DENSE_W:
        *rows = D; *cols = D; break;
    case PQ_ESM2_FC1: *rows = F; *cols = D; break;
    case PQ_ESM2_FC2: *rows = D; *cols = F; break;
    case PQ_ESM2_FC1_BIAS: *rows = F; break;
    case PQ_ESM2_EMBED: case PQ_ESM2_LM_DECODER: *rows = V; *cols = D; break;
    case PQ_ESM2_LM_BIAS: *rows = V; break;
    default: *rows = D; break;
    }
}

pq_status pq_train_params_create(const pq_esm2_config *cfg, pq_train_params **out)
{
    *out = NULL;
    int L = cfg->num_layers, half = cfg->head_dim / 2;
    pq_train_params *p = calloc(1, sizeof *p);
    if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    p->cfg = *cfg;
    int n_max = L * N_LAYER_ROLES + N_GLOBAL_ROLES;
    p->t = calloc((size_t)n_max, sizeof *p->t);
    p->idx = malloc((size_t)(L + 1) * NROLES * sizeof *p->idx);
    p->inv_freq = malloc((size_t)(L * half + 1) * sizeof(float));
    if (!p->t || !p->idx || !p->inv_freq) goto nomem;
    for (int64_t i = 0; i < (int64_t)(L + 1) * NROLES; i++) p->idx[i] = -1;
    int64_t off = 0;
    for (int l = -1; l < L; l++) {
        const pq_esm2_role *roles = l < 0 ? k_global_roles : k_layer_roles;
        int nr = l < 0 ? N_GLOBAL_ROLES : N_LAYER_ROLES;
        for (int i = 0; i < nr; i++) {
            if (roles[i] == PQ_ESM2_LM_DECODER && !cfg->has_decoder) continue;
            pq_train_tensor *t = &p->t[p->n_tensors];
            t->role = roles[i];
            t->layer = l;
            role_shape(cfg, roles[i], &t->rows, &t->cols);
            t->n_elems = t->rows * t->cols;
            t->off = off;
            off += t->n_elems;
            p->idx[(int64_t)(l + 1) * NROLES + roles[i]] = p->n_tensors++;
        }
    }
    p->n_floats = off;
    p->data = calloc((size_t)off, sizeof(float));
    if (!p->data) goto nomem;
    for (int l = 0; l < L; l++) pq_esm2_inv_freq(cfg->head_dim, p->inv_freq + (int64_t)l * half);
    *out = p;
    return PQ_OK;
nomem:
    pq_train_params_free(p);
    return pq_err(PQ_ERR_RESOURCE, "out of memory for the trainable tensors");
}

/* A checkpoint that stores the decoder as a copy of the embedding is tied
 * (fair-esm's ESM2 has one tensor for both): *untied = false then, so that
 * both are trained as one. */
static pq_status decoder_is_tied(const pq_st_model *st, const pq_esm2_config *cfg, bool *untied)
{
    char ne[256], nd[256];
    pq_esm2_name(PQ_ESM2_EMBED, -1, ne, sizeof ne);
    pq_esm2_name(PQ_ESM2_LM_DECODER, -1, nd, sizeof nd);
    const pq_st_tensor *te = pq_st_find(st, ne), *td = pq_st_find(st, nd);
    if (!te || !td) return PQ_OK; /* pq_train_params_load names the missing one */
    int64_t n = (int64_t)cfg->vocab_size * cfg->embed_dim;
    float *e = malloc((size_t)n * sizeof(float)), *d = malloc((size_t)n * sizeof(float));
    pq_status rc = PQ_OK;
    if (!e || !d) rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (rc == PQ_OK && te->n_elems == n && td->n_elems == n &&
        (rc = pq_st_read_rows_f32(st, te, 0, cfg->vocab_size, e)) == PQ_OK &&
        (rc = pq_st_read_rows_f32(st, td, 0, cfg->vocab_size, d)) == PQ_OK)
        *untied = memcmp(e, d, (size_t)n * sizeof(float)) != 0;
    pq_st_release(st, te);
    pq_st_release(st, td);
    free(e);
    free(d);
    return rc;
}

pq_status pq_train_params_load(const char *path, pq_train_params **out)
{
    *out = NULL;
    pq_st_model *st = NULL;
    pq_train_params *p = NULL;
    pq_esm2_config cfg;
    pq_status rc = pq_st_open(path, &st);
    if (rc != PQ_OK) return rc;
    if ((rc = pq_esm2_detect(st, &cfg)) != PQ_OK) goto done;
    if (cfg.has_decoder && (rc = decoder_is_tied(st, &cfg, &cfg.has_decoder)) != PQ_OK) goto done;
    if ((rc = pq_train_params_create(&cfg, &p)) != PQ_OK) goto done;
    char name[256];
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_train_tensor *t = &p->t[i];
        pq_esm2_name(t->role, t->layer, name, sizeof name);
        const pq_st_tensor *s = pq_st_find(st, name);
        if (!s) { rc = pq_err(PQ_ERR_FORMAT, "%s: tensor %s is missing", path, name); goto done; }
        if (s->n_elems != t->n_elems) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: tensor %s has %lld elements, the architecture needs %lld", path, name,
                        (long long)s->n_elems, (long long)t->n_elems);
            goto done;
        }
        int64_t rows = s->ndim >= 2 ? s->shape[0] : 1;
        rc = pq_st_read_rows_f32(st, s, 0, rows, p->data + t->off);
        pq_st_release(st, s);
        if (rc != PQ_OK) goto done;
    }
    int half = cfg.head_dim / 2;
    for (int l = 0; l < cfg.num_layers && cfg.has_inv_freq; l++) {
        pq_esm2_name(PQ_ESM2_INV_FREQ, l, name, sizeof name);
        const pq_st_tensor *s = pq_st_find(st, name);
        if (!s || s->n_elems != half) continue; /* keep the formula's values */
        rc = pq_st_read_rows_f32(st, s, 0, 1, p->inv_freq + (int64_t)l * half);
        pq_st_release(st, s);
        if (rc != PQ_OK) goto done;
    }
done:
    pq_st_close(st);
    if (rc != PQ_OK) pq_train_params_free(p);
    else *out = p;
    return rc;
}

void pq_train_params_free(pq_train_params *p)
{
    if (!p) return;
    free(p->data);
    free(p->inv_freq);
    free(p->t);
    free(p->idx);
    free(p);
}

const pq_train_tensor *pq_train_find(const pq_train_params *p, pq_esm2_role role, int layer)
{
    if (role <= PQ_ESM2_ROLE_OTHER || role >= PQ__ESM2_ROLE_COUNT) return NULL;
    bool per_layer = role >= PQ_ESM2_Q && role <= PQ_ESM2_INV_FREQ;
    if (!per_layer) layer = -1;
    else if (layer < 0 || layer >= p->cfg.num_layers) return NULL;
    int64_t i = p->idx[(int64_t)(layer + 1) * NROLES + role];
    return i < 0 ? NULL : &p->t[i];
}

float *pq_train_at(const pq_train_params *p, float *base, pq_esm2_role role, int layer)
{
    const pq_train_tensor *t = pq_train_find(p, role, layer);
    return t ? base + t->off : NULL;
}

float *pq_train_decoder(const pq_train_params *p, float *base)
{
    float *d = pq_train_at(p, base, PQ_ESM2_LM_DECODER, -1);
    return d ? d : pq_train_at(p, base, PQ_ESM2_EMBED, -1);
}

bool pq_train_first_nonfinite(const pq_train_params *p, const float *buf, char *name, size_t n)
{
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_train_tensor *t = &p->t[i];
        for (int64_t j = 0; j < t->n_elems; j++)
            if (!isfinite(buf[t->off + j])) {
                pq_esm2_name(t->role, t->layer, name, n);
                return true;
            }
    }
    return false;
}
