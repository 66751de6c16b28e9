/* SPDX-License-Identifier: Apache-2.0 */
/* folder.c - the tensors of an exported model folder (folder.h): every
 * tensor of the file under its Hugging Face name, dequantized, or for
 * compressed-tensors the quantized Linears as codes and qparams; what
 * EsmForMaskedLM expects beyond the file (rotary inv_freq, position_ids and
 * the unused position table, a contact head); and each one's bytes. */
#include "export/folder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/esm2.h"

/* HF EsmConfig's max_position_embeddings for ESM-2 (1024 residues + cls/eos). */
#define PQ_HF_MAX_POSITIONS 1026

static pq_status add(pq_folder *f, const char *name, pq_dtype dt, int ndim, const int64_t *shape,
                     int tag, int64_t index)
{
    if (f->n == f->cap) {
        int64_t cap = f->cap ? 2 * f->cap : 256;
        pq_stw_tensor *t = realloc(f->t, (size_t)cap * sizeof *t);
        if (!t) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        f->t = t;
        f->cap = cap;
    }
    pq_stw_tensor *t = &f->t[f->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->tag = tag;
    t->index = index;
    f->n++;
    return PQ_OK;
}

static pq_status add_suffixed(pq_folder *f, const char *prefix, const char *suffix, pq_dtype dt, int ndim,
                              const int64_t *shape, int tag, int64_t index)
{
    char name[320]; /* prefix < 256, suffix a short word */
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    return add(f, name, dt, ndim, shape, tag, index);
}

/* The quantized Linear e as compressed-tensors parameters. */
static pq_status add_compressed(pq_folder *f, const pq_h5r_entry *e, int64_t i)
{
    const pq_qspec *s = &e->spec;
    int64_t rows = e->shape[0], cols = e->shape[1];
    int layer;
    if (pq_esm2_role_of(e->name, &layer) == PQ_ESM2_EMBED || strlen(e->name) < 8 ||
        strcmp(e->name + strlen(e->name) - 7, ".weight"))
        return pq_err(PQ_ERR_CONFIG, "tensor '%s': compressed-tensors quantizes the weights of Linear layers "
                      "only; export it as safetensors or quantize without it", e->name);
    if (s->gran == PQ_GRAN_GROUP && cols % s->group_size)
        return pq_err(PQ_ERR_CONFIG, "tensor '%s': its %lld columns are not a multiple of its group size %d, "
                      "which compressed-tensors requires; quantize with a group size that divides them, "
                      "or export as safetensors", e->name, (long long)cols, s->group_size);
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(e->name) - 7), e->name);
    pq_status st;
    if (f->packed) {
        int64_t shape[2] = {rows, (cols * s->bits + 31) / 32}, two = 2;
        if ((st = add_suffixed(f, prefix, "weight_packed", PQ_DT_I32, 2, shape, PQ_XT_CODES, i)) ||
            (st = add_suffixed(f, prefix, "weight_shape", PQ_DT_I32, 1, &two, PQ_XT_SHAPE, i)))
            return st;
    } else if ((st = add_suffixed(f, prefix, "weight", PQ_DT_I8, 2, e->shape, PQ_XT_CODES, i))) {
        return st;
    }
    int64_t one = 1, qshape[2] = {rows, s->gran == PQ_GRAN_GROUP ? cols / s->group_size : 1};
    int qdim = s->gran == PQ_GRAN_TENSOR ? 1 : 2;
    const int64_t *qs = s->gran == PQ_GRAN_TENSOR ? &one : qshape;
    if ((st = add_suffixed(f, prefix, "weight_scale", PQ_DT_F32, qdim, qs, PQ_XT_SCALE, i))) return st;
    if (!s->symmetric)
        st = add_suffixed(f, prefix, "weight_zero_point", PQ_DT_I8, qdim, qs, PQ_XT_ZERO_POINT, i);
    return st;
}

/* Whether the file's LM decoder holds exactly the word embeddings. */
static pq_status decoder_is_tied(pq_h5r *r, const pq_h5r_entry *dec, bool *tied)
{
    char name[128];
    const pq_h5r_entry *emb = pq_h5r_find(r, pq_esm2_name(PQ_ESM2_EMBED, -1, name, sizeof name));
    *tied = false;
    if (!emb || emb->quantized != dec->quantized || emb->ndim != 2 || dec->ndim != 2 ||
        emb->shape[0] != dec->shape[0] || emb->shape[1] != dec->shape[1])
        return PQ_OK;
    size_t n = (size_t)(emb->shape[0] * emb->shape[1]);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    pq_status st = a && b ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st) st = pq_h5r_read_f32(r, emb, a);
    if (!st) st = pq_h5r_read_f32(r, dec, b);
    if (!st) *tied = !memcmp(a, b, n * sizeof *a);
    free(a);
    free(b);
    return st;
}

pq_status pq_folder_plan(pq_h5r *r, const pq_export_opts *o, pq_folder *f)
{
    const pq_esm2_config *cfg = &pq_h5r_meta(r)->cfg;
    const pq_dtype fdt = o->fp16 ? PQ_DT_F16 : PQ_DT_F32;
    const bool ct = o->format == PQ_EXPORT_COMPRESSED_TENSORS;
    pq_status st = PQ_OK;
    memset(f, 0, sizeof *f);
    f->tied = true;
    for (int64_t i = 0; ct && i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        if (e->quantized && e->spec.bits == 4) f->packed = true;
    }
    for (int64_t i = 0; i < pq_h5r_count(r) && !st; i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        int layer;
        if (pq_esm2_role_of(e->name, &layer) == PQ_ESM2_LM_DECODER) {
            bool tied;
            if ((st = decoder_is_tied(r, e, &tied)) || tied) continue;
            f->tied = false;
        }
        if (ct && e->quantized) st = add_compressed(f, e, i);
        else st = add(f, e->name, fdt, e->ndim, e->shape, PQ_XT_FLOAT, i);
    }
    char name[128];
    /* what EsmForMaskedLM holds and the file may lack */
    for (int l = 0; l < cfg->num_layers && !st; l++) {
        int64_t half = cfg->head_dim / 2;
        if (!pq_h5r_find(r, pq_esm2_name(PQ_ESM2_INV_FREQ, l, name, sizeof name)))
            st = add(f, name, fdt, 1, &half, PQ_XT_INV_FREQ, 0);
    }
    int64_t w[2] = {1, (int64_t)cfg->num_layers * cfg->attention_heads}, b = 1;
    if (!st && !pq_h5r_find(r, pq_esm2_name(PQ_ESM2_CONTACT_W, -1, name, sizeof name)))
        st = add(f, name, fdt, 2, w, PQ_XT_ZEROS, 0);
    if (!st && !pq_h5r_find(r, pq_esm2_name(PQ_ESM2_CONTACT_B, -1, name, sizeof name)))
        st = add(f, name, fdt, 1, &b, PQ_XT_ZEROS, 0);
    /* transformers 4.30 keeps position_ids and (unused with rotary
     * embeddings) a learned position table in every ESM model */
    int64_t pos[2] = {1, PQ_HF_MAX_POSITIONS}, table[2] = {PQ_HF_MAX_POSITIONS, cfg->embed_dim};
    if (!st && !pq_h5r_find(r, "esm.embeddings.position_ids"))
        st = add(f, "esm.embeddings.position_ids", PQ_DT_I64, 2, pos, PQ_XT_POSITIONS, 0);
    if (!st && !pq_h5r_find(r, "esm.embeddings.position_embeddings.weight"))
        st = add(f, "esm.embeddings.position_embeddings.weight", fdt, 2, table, PQ_XT_ZEROS, 0);
    if (st) pq_folder_free(f);
    return st;
}

void pq_folder_free(pq_folder *f)
{
    for (int64_t i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    memset(f, 0, sizeof *f);
}

/* ---- the tensors' bytes ---- */

struct pq_folder_fill_ctx {
    pq_h5r *r;
    int64_t cached;     /* entry index of qt, -1 for none */
    pq_qtensor qt;      /* the quantized tensor last asked for (its parameters come in turn) */
};

pq_status pq_folder_fill_open(pq_h5r *r, pq_folder_fill_ctx **out)
{
    pq_folder_fill_ctx *c = calloc(1, sizeof *c);
    if (!c) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    c->r = r;
    c->cached = -1;
    *out = c;
    return PQ_OK;
}

void pq_folder_fill_close(pq_folder_fill_ctx *c)
{
    if (!c) return;
    pq_qtensor_free(&c->qt);
    free(c);
}

static int64_t elements(const pq_stw_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* fp32 values into dst as the tensor's dtype (F32 or F16), in place. */
static void store_floats(const pq_stw_tensor *t, float *x, int64_t n, void *dst)
{
    if (t->dtype == PQ_DT_F32) {
        if ((void *)x != dst) memcpy(dst, x, (size_t)n * sizeof *x);
        return;
    }
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = pq_f32_to_f16(x[i]);
}

/* The codes of a row as compressed-tensors packs them: value i of a 32-bit
 * word at bits i*bits, offset binary (q + 2^(bits-1)); the padding zero. For
 * 4 bits this is Proteus's own row (two codes a byte, low nibble first, q + 8). */
static void pack_row(const pq_qtensor *qt, int64_t r, uint8_t *dst, int64_t words)
{
    const uint8_t *row = (const uint8_t *)qt->codes + r * qt->code_row_bytes;
    memset(dst, 0, (size_t)words * 4);
    if (qt->spec.bits == 4) {
        memcpy(dst, row, (size_t)qt->code_row_bytes);
        if (qt->cols & 1) dst[qt->cols / 2] &= 0x0f; /* the odd column's pad nibble */
    } else {
        for (int64_t c = 0; c < qt->cols; c++) dst[c] = (uint8_t)((int)(int8_t)row[c] + 128);
    }
}

static pq_status fill_quant(pq_folder_fill_ctx *c, const pq_stw_tensor *t, void *dst)
{
    pq_status st;
    if (c->cached != t->index) {
        pq_qtensor_free(&c->qt);
        c->cached = -1;
        if ((st = pq_h5r_read_qtensor(c->r, pq_h5r_get(c->r, t->index), &c->qt))) return st;
        c->cached = t->index;
    }
    const pq_qtensor *qt = &c->qt;
    switch (t->tag) {
    case PQ_XT_CODES:
        if (t->dtype == PQ_DT_I8) {
            memcpy(dst, qt->codes, (size_t)(qt->rows * qt->cols));
        } else {
            for (int64_t r = 0; r < qt->rows; r++)
                pack_row(qt, r, (uint8_t *)dst + r * t->shape[1] * 4, t->shape[1]);
        }
        break;
    case PQ_XT_SCALE: memcpy(dst, qt->scale, (size_t)qt->n_scales * sizeof *qt->scale); break;
    case PQ_XT_ZERO_POINT:
        for (int64_t i = 0; i < qt->n_scales; i++) ((int8_t *)dst)[i] = (int8_t)qt->zero_point[i];
        break;
    default: {
        int32_t shape[2] = {(int32_t)qt->rows, (int32_t)qt->cols};
        memcpy(dst, shape, sizeof shape);
    }
    }
    return PQ_OK;
}

pq_status pq_folder_fill(void *user, const pq_stw_tensor *t, void *dst)
{
    pq_folder_fill_ctx *c = user;
    int64_t n = elements(t);
    switch (t->tag) {
    case PQ_XT_FLOAT: {
        float *x = t->dtype == PQ_DT_F32 ? dst : malloc((size_t)(n ? n : 1) * sizeof *x);
        if (!x) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        pq_status st = pq_h5r_read_f32(c->r, pq_h5r_get(c->r, t->index), x);
        if (!st) store_floats(t, x, n, dst);
        if (x != dst) free(x);
        return st;
    }
    case PQ_XT_INV_FREQ: {
        float x[512];
        if (n > (int64_t)(sizeof x / sizeof x[0]))
            return pq_err(PQ_ERR_FORMAT, "head size %lld is beyond ESM-2's", (long long)(2 * n));
        pq_esm2_inv_freq((int)(2 * n), x);
        store_floats(t, x, n, dst);
        return PQ_OK;
    }
    case PQ_XT_ZEROS: memset(dst, 0, (size_t)n * pq_dtype_size(t->dtype)); return PQ_OK;
    case PQ_XT_POSITIONS:
        for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] = i;
        return PQ_OK;
    default: return fill_quant(c, t, dst);
    }
}
