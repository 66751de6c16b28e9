/* SPDX-License-Identifier: Apache-2.0 */
/* esm2.c - ESM-2 published sizes, Hugging Face tensor names and architecture
 * recognition from a checkpoint's names and shapes (esm2.md sections 1, 4). */
#include "format/esm2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LAYER_PREFIX "esm.encoder.layer."
#define MAX_LAYERS 4096 /* far above any ESM-2; bounds the presence table */

/* esm2.md section 1: per layer 12*D^2 + 13*D; global V*D (tied embedding)
 * + 2D (final LN) + D^2 + D (lm dense) + 2D (lm LN) + V (lm bias)
 * + L*H + 1 (contact regression). inv_freq buffers are not parameters. */
#define ESM2_NPARAMS(L, D, H, V)                                                              \
    ((int64_t)(L) * (12 * (int64_t)(D) * (D) + 13 * (int64_t)(D)) + (int64_t)(V) * (D) +      \
     2 * (int64_t)(D) + (int64_t)(D) * (D) + (D) + 2 * (int64_t)(D) + (V) + (int64_t)(L) * (H) + 1)

#define ARCH(nm, L, D, H) {nm, L, D, H, 4 * (D), 33, ESM2_NPARAMS(L, D, H, 33)}

static const pq_esm2_arch archs[] = {
    ARCH("esm2_t6_8M_UR50D", 6, 320, 20),
    ARCH("esm2_t12_35M_UR50D", 12, 480, 20),
    ARCH("esm2_t30_150M_UR50D", 30, 640, 20),
    ARCH("esm2_t33_650M_UR50D", 33, 1280, 20),
    ARCH("esm2_t36_3B_UR50D", 36, 2560, 40),
    ARCH("esm2_t48_15B_UR50D", 48, 5120, 40),
};
#define N_ARCHS ((int)(sizeof archs / sizeof archs[0]))

const pq_esm2_arch *pq_esm2_archs(int *n)
{
    if (n) *n = N_ARCHS;
    return archs;
}

const pq_esm2_arch *pq_esm2_arch_find(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < N_ARCHS; i++) {
        const char *full = archs[i].name;               /* esm2_t33_650M_UR50D */
        const char *mid = full + strlen("esm2_");        /* t33_650M_UR50D */
        const char *size = strchr(mid, '_') + 1;         /* 650M_UR50D */
        size_t tail = strlen("_UR50D");
        if (strcasecmp(name, full) == 0) return &archs[i];
        size_t nl = strlen(name);
        if (nl == strlen(full) - tail && strncasecmp(name, full, nl) == 0) return &archs[i];
        if (nl == strlen(mid) - tail && strncasecmp(name, mid, nl) == 0) return &archs[i];
        if (nl == strlen(size) - tail && strncasecmp(name, size, nl) == 0) return &archs[i];
    }
    return NULL;
}

/* ------------------------------------------------------------- names */

typedef struct role_name {
    const char *name; /* suffix after "esm.encoder.layer.N." for per-layer roles */
    int per_layer;
} role_name;

static const role_name role_names[PQ__ESM2_ROLE_COUNT] = {
    [PQ_ESM2_Q] = {"attention.self.query.weight", 1},
    [PQ_ESM2_K] = {"attention.self.key.weight", 1},
    [PQ_ESM2_V] = {"attention.self.value.weight", 1},
    [PQ_ESM2_OUT] = {"attention.output.dense.weight", 1},
    [PQ_ESM2_FC1] = {"intermediate.dense.weight", 1},
    [PQ_ESM2_FC2] = {"output.dense.weight", 1},
    [PQ_ESM2_Q_BIAS] = {"attention.self.query.bias", 1},
    [PQ_ESM2_K_BIAS] = {"attention.self.key.bias", 1},
    [PQ_ESM2_V_BIAS] = {"attention.self.value.bias", 1},
    [PQ_ESM2_OUT_BIAS] = {"attention.output.dense.bias", 1},
    [PQ_ESM2_FC1_BIAS] = {"intermediate.dense.bias", 1},
    [PQ_ESM2_FC2_BIAS] = {"output.dense.bias", 1},
    [PQ_ESM2_LN_ATTN_W] = {"attention.LayerNorm.weight", 1},
    [PQ_ESM2_LN_ATTN_B] = {"attention.LayerNorm.bias", 1},
    [PQ_ESM2_LN_FFN_W] = {"LayerNorm.weight", 1},
    [PQ_ESM2_LN_FFN_B] = {"LayerNorm.bias", 1},
    [PQ_ESM2_INV_FREQ] = {"attention.self.rotary_embeddings.inv_freq", 1},
    [PQ_ESM2_EMBED] = {"esm.embeddings.word_embeddings.weight", 0},
    [PQ_ESM2_LN_FINAL_W] = {"esm.encoder.emb_layer_norm_after.weight", 0},
    [PQ_ESM2_LN_FINAL_B] = {"esm.encoder.emb_layer_norm_after.bias", 0},
    [PQ_ESM2_LM_DENSE_W] = {"lm_head.dense.weight", 0},
    [PQ_ESM2_LM_DENSE_B] = {"lm_head.dense.bias", 0},
    [PQ_ESM2_LM_LN_W] = {"lm_head.layer_norm.weight", 0},
    [PQ_ESM2_LM_LN_B] = {"lm_head.layer_norm.bias", 0},
    [PQ_ESM2_LM_BIAS] = {"lm_head.bias", 0},
    [PQ_ESM2_LM_DECODER] = {"lm_head.decoder.weight", 0},
    [PQ_ESM2_CONTACT_W] = {"esm.contact_head.regression.weight", 0},
    [PQ_ESM2_CONTACT_B] = {"esm.contact_head.regression.bias", 0},
};

/* Legacy extras some exports carry; unused by the model (esm2.md 4.2). */
static int is_ignored(const char *name)
{
    return strcmp(name, "esm.embeddings.position_ids") == 0 ||
           strcmp(name, "esm.embeddings.position_embeddings.weight") == 0 ||
           strncmp(name, "esm.pooler.", strlen("esm.pooler.")) == 0 ||
           strcmp(name, "lm_head.decoder.bias") == 0;
}

pq_esm2_role pq_esm2_role_of(const char *name, int *layer)
{
    int dummy;
    if (!layer) layer = &dummy;
    *layer = -1;
    if (strncmp(name, LAYER_PREFIX, strlen(LAYER_PREFIX)) == 0) {
        const char *p = name + strlen(LAYER_PREFIX);
        /* canonical decimal only, so that a name round-trips through pq_esm2_name */
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
            return PQ_ESM2_ROLE_OTHER;
        long v = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            if (v > 1000000000L) return PQ_ESM2_ROLE_OTHER;
        }
        if (*p++ != '.') return PQ_ESM2_ROLE_OTHER;
        for (int r = 1; r < PQ__ESM2_ROLE_COUNT; r++)
            if (role_names[r].per_layer && strcmp(p, role_names[r].name) == 0) {
                *layer = (int)v;
                return (pq_esm2_role)r;
            }
        return PQ_ESM2_ROLE_OTHER;
    }
    for (int r = 1; r < PQ__ESM2_ROLE_COUNT; r++)
        if (role_names[r].name && !role_names[r].per_layer && strcmp(name, role_names[r].name) == 0)
            return (pq_esm2_role)r;
    return is_ignored(name) ? PQ_ESM2_IGNORED : PQ_ESM2_ROLE_OTHER;
}

char *pq_esm2_name(pq_esm2_role role, int layer, char *buf, size_t n)
{
    if (n == 0) return buf;
    if ((unsigned)role >= PQ__ESM2_ROLE_COUNT || !role_names[role].name)
        snprintf(buf, n, "%s", "");
    else if (role_names[role].per_layer)
        snprintf(buf, n, LAYER_PREFIX "%d.%s", layer, role_names[role].name);
    else
        snprintf(buf, n, "%s", role_names[role].name);
    return buf;
}

bool pq_esm2_role_is_linear(pq_esm2_role role)
{
    return role == PQ_ESM2_Q || role == PQ_ESM2_K || role == PQ_ESM2_V || role == PQ_ESM2_OUT ||
           role == PQ_ESM2_FC1 || role == PQ_ESM2_FC2;
}

void pq_esm2_inv_freq(int head_dim, float *out)
{
    for (int k = 0; k < head_dim; k += 2) {
        float e = (float)k / (float)head_dim;          /* fl32(k / hd) */
        float p = (float)pow(10000.0, (double)e);       /* fl32(10000^e) */
        float inv = 1.0f / p;
        /* the published checkpoints hold the fp16-rounded values */
        out[k / 2] = pq_f16_to_f32(pq_f32_to_f16(inv));
    }
}

/* ------------------------------------------------------------ detect */

typedef struct dims {
    int64_t L, D, H, hd, F, V;
} dims;

/* Expected shape of a role; returns ndim. */
static int expected_shape(pq_esm2_role r, const dims *d, int64_t s[2])
{
    switch (r) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: case PQ_ESM2_OUT: case PQ_ESM2_LM_DENSE_W:
        s[0] = d->D; s[1] = d->D; return 2;
    case PQ_ESM2_FC1: s[0] = d->F; s[1] = d->D; return 2;
    case PQ_ESM2_FC2: s[0] = d->D; s[1] = d->F; return 2;
    case PQ_ESM2_FC1_BIAS: s[0] = d->F; return 1;
    case PQ_ESM2_INV_FREQ: s[0] = d->hd / 2; return 1;
    case PQ_ESM2_EMBED: case PQ_ESM2_LM_DECODER: s[0] = d->V; s[1] = d->D; return 2;
    case PQ_ESM2_LM_BIAS: s[0] = d->V; return 1;
    case PQ_ESM2_CONTACT_W: s[0] = 1; s[1] = d->L * d->H; return 2;
    case PQ_ESM2_CONTACT_B: s[0] = 1; return 1;
    default: s[0] = d->D; return 1; /* biases and LayerNorms */
    }
}

static void shape_str(const int64_t *s, int nd, char *buf, size_t n)
{
    size_t u = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && u < n; i++) u += (size_t)snprintf(buf + u, n - u, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (u < n) snprintf(buf + u, n - u, "]");
}

/* Check one tensor (t may be NULL = missing) against the role's shape. */
static pq_status check_one(const pq_st_model *m, const pq_st_tensor *t, pq_esm2_role r, int layer,
                           const dims *d)
{
    int64_t s[2];
    int nd = expected_shape(r, d, s);
    char name[160], want[64], got[160];
    pq_esm2_name(r, layer, name, sizeof name);
    shape_str(s, nd, want, sizeof want);
    if (!t) return pq_err(PQ_ERR_FORMAT, "missing tensor '%s' (expected shape %s)", name, want);
    bool ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == s[i];
    if (!ok) {
        shape_str(t->shape, t->ndim, got, sizeof got);
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': expected shape %s, got %s",
                      pq_st_file_path(m, t->file_idx), name, want, got);
    }
    if (!pq_dtype_is_float(t->dtype) && t->dtype != PQ_DT_F64)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': dtype %s is not a floating-point type",
                      pq_st_file_path(m, t->file_idx), name, pq_dtype_name(t->dtype));
    return PQ_OK;
}

pq_status pq_esm2_detect(const pq_st_model *m, pq_esm2_config *cfg)
{
    pq_status rc = PQ_OK;
    const pq_st_tensor *global[PQ__ESM2_ROLE_COUNT] = {0};
    const pq_st_tensor **lay = NULL; /* [L][role] */
    int64_t n = pq_st_count(m);
    int max_layer = -1;
    memset(cfg, 0, sizeof *cfg);

    /* pass 1: every name must be known; find the layer count */
    for (int64_t i = 0; i < n; i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        int l;
        pq_esm2_role r = pq_esm2_role_of(t->name, &l);
        if (r == PQ_ESM2_ROLE_OTHER)
            return pq_err(PQ_ERR_FORMAT, "%s: unknown tensor '%s' (not an ESM-2 Hugging Face name)",
                          pq_st_file_path(m, t->file_idx), t->name);
        if (l >= MAX_LAYERS)
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': layer index %d is absurd (limit %d)",
                          pq_st_file_path(m, t->file_idx), t->name, l, MAX_LAYERS);
        if (l > max_layer) max_layer = l;
        if (l < 0 && r != PQ_ESM2_IGNORED) global[r] = t;
    }
    if (max_layer < 0) return pq_err(PQ_ERR_FORMAT, "no transformer layer tensors (esm.encoder.layer.N.*)");
    const pq_st_tensor *emb = global[PQ_ESM2_EMBED];
    if (!emb) return pq_err(PQ_ERR_FORMAT, "missing tensor 'esm.embeddings.word_embeddings.weight'");
    if (emb->ndim != 2 || emb->shape[0] != 33 || emb->shape[1] <= 0) {
        char got[160];
        shape_str(emb->shape, emb->ndim, got, sizeof got);
        return pq_err(PQ_ERR_FORMAT, "tensor '%s': expected shape [33, D], got %s", emb->name, got);
    }

    dims d = {.L = max_layer + 1, .D = emb->shape[1], .V = emb->shape[0]};
    d.F = 4 * d.D;
    lay = calloc((size_t)d.L * PQ__ESM2_ROLE_COUNT, sizeof *lay);
    if (!lay) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        int l;
        pq_esm2_role r = pq_esm2_role_of(t->name, &l);
        if (l >= 0) lay[(size_t)l * PQ__ESM2_ROLE_COUNT + r] = t;
    }
    int n_inv = 0;
    for (int l = 0; l < d.L; l++) {
        const pq_st_tensor **row = &lay[(size_t)l * PQ__ESM2_ROLE_COUNT];
        int any = 0;
        for (int r = 0; r < PQ__ESM2_ROLE_COUNT; r++) any |= row[r] != NULL;
        if (!any) {
            rc = pq_err(PQ_ERR_FORMAT, "layer %d has no tensors although layers up to %lld exist "
                        "(layers must be 0..L-1 without gaps)", l, (long long)(d.L - 1));
            goto cleanup;
        }
        n_inv += row[PQ_ESM2_INV_FREQ] != NULL;
    }

    /* head_dim: from the rotary buffer when present, else from the published size */
    if (n_inv > 0) {
        /* first layer holding one; layers lacking it are reported below */
        const pq_st_tensor *inv = NULL;
        for (int l = 0; !inv; l++) inv = lay[(size_t)l * PQ__ESM2_ROLE_COUNT + PQ_ESM2_INV_FREQ];
        if (inv->ndim != 1 || inv->shape[0] <= 0 || d.D % (2 * inv->shape[0]) != 0) {
            char got[160];
            shape_str(inv->shape, inv->ndim, got, sizeof got);
            rc = pq_err(PQ_ERR_FORMAT, "tensor '%s': shape %s is not [head_dim/2] for a head_dim dividing D=%lld",
                        inv->name, got, (long long)d.D);
            goto cleanup;
        }
        d.hd = 2 * inv->shape[0];
        d.H = d.D / d.hd;
    } else {
        for (int i = 0; i < N_ARCHS; i++)
            if (archs[i].num_layers == d.L && archs[i].embed_dim == d.D) {
                d.H = archs[i].attention_heads;
                d.hd = d.D / d.H;
            }
        if (!d.H) {
            rc = pq_err(PQ_ERR_FORMAT, "no rotary inv_freq buffers and L=%lld, D=%lld is not a published "
                        "ESM-2 size: cannot infer the number of heads", (long long)d.L, (long long)d.D);
            goto cleanup;
        }
    }

    /* every required tensor, exact shapes */
    for (int l = 0; l < d.L; l++) {
        const pq_st_tensor **row = &lay[(size_t)l * PQ__ESM2_ROLE_COUNT];
        for (int r = 1; r < PQ__ESM2_ROLE_COUNT; r++) {
            if (!role_names[r].per_layer) continue;
            if (r == PQ_ESM2_INV_FREQ && n_inv == 0) continue;
            rc = check_one(m, row[r], (pq_esm2_role)r, l, &d);
            if (rc != PQ_OK) goto cleanup;
        }
    }
    static const pq_esm2_role required[] = {
        PQ_ESM2_EMBED, PQ_ESM2_LN_FINAL_W, PQ_ESM2_LN_FINAL_B, PQ_ESM2_LM_DENSE_W, PQ_ESM2_LM_DENSE_B,
        PQ_ESM2_LM_LN_W, PQ_ESM2_LM_LN_B, PQ_ESM2_LM_BIAS,
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        rc = check_one(m, global[required[i]], required[i], -1, &d);
        if (rc != PQ_OK) goto cleanup;
    }
    if (global[PQ_ESM2_LM_DECODER]) {
        rc = check_one(m, global[PQ_ESM2_LM_DECODER], PQ_ESM2_LM_DECODER, -1, &d);
        if (rc != PQ_OK) goto cleanup;
    }
    if (global[PQ_ESM2_CONTACT_W] || global[PQ_ESM2_CONTACT_B]) {
        /* half a contact head is a broken export: both or neither */
        rc = check_one(m, global[PQ_ESM2_CONTACT_W], PQ_ESM2_CONTACT_W, -1, &d);
        if (rc == PQ_OK) rc = check_one(m, global[PQ_ESM2_CONTACT_B], PQ_ESM2_CONTACT_B, -1, &d);
        if (rc != PQ_OK) goto cleanup;
    }

    cfg->num_layers = (int)d.L;
    cfg->embed_dim = (int)d.D;
    cfg->attention_heads = (int)d.H;
    cfg->head_dim = (int)d.hd;
    cfg->ffn_dim = (int)d.F;
    cfg->vocab_size = (int)d.V;
    cfg->layer_norm_eps = 1e-5f;
    cfg->token_dropout = true;
    cfg->has_contact_head = global[PQ_ESM2_CONTACT_W] != NULL;
    cfg->has_decoder = global[PQ_ESM2_LM_DECODER] != NULL;
    cfg->has_inv_freq = n_inv > 0;
    cfg->arch = NULL;
    for (int i = 0; i < N_ARCHS; i++)
        if (archs[i].num_layers == d.L && archs[i].embed_dim == d.D && archs[i].attention_heads == d.H)
            cfg->arch = &archs[i];
cleanup:
    free(lay);
    return rc;
}
