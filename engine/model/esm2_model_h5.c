/* SPDX-License-Identifier: Apache-2.0 */
/* esm2_model_h5.c - load the engine from a Proteus HDF5 model (quantized
 * Linears packed for the integer kernels, or dequantized by the reader), and
 * open either format. */
#include <stdio.h>
#include <string.h>

#include "model/esm2_model.h"
#include "base/pq_io.h"
#include "format/h5model.h"

typedef struct h5_src {
    pq_h5r *r;
    const char *path;
    pq_esm2_qmode mode;
    int n_threads; /* that pack the weights (0: the OpenMP default) */
} h5_src;

static pq_status h5_read(void *user, const char *name, int64_t n, float *dst, bool *found)
{
    pq_h5r *r = ((h5_src *)user)->r;
    const pq_h5r_entry *e = pq_h5r_find(r, name);
    *found = (e != NULL);
    if (!e) return PQ_OK;
    int64_t cnt = 1;
    for (int i = 0; i < e->ndim; i++) cnt *= e->shape[i];
    if (cnt != n)
        return pq_err(PQ_ERR_FORMAT, "tensor %s has %lld elements, the architecture needs %lld", name,
                      (long long)cnt, (long long)n);
    return pq_h5r_read_f32(r, e, dst);
}

/* A quantized Linear weight becomes a packed pq_qlinear unless the mode is
 * DEQUANT; float ones are left to h5_read. */
static pq_status h5_linear(void *user, const char *name, int64_t out_dim, int64_t in_dim, pq_qlinear **ql)
{
    h5_src *src = user;
    *ql = NULL;
    const pq_h5r_entry *e = pq_h5r_find(src->r, name);
    if (!e || !e->quantized || src->mode == PQ_ESM2_QMODE_DEQUANT) return PQ_OK;
    if (e->shape[0] != out_dim || e->shape[1] != in_dim)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor %s is [%lld, %lld], the architecture needs [%lld, %lld]",
                      src->path, name, (long long)e->shape[0], (long long)e->shape[1], (long long)out_dim,
                      (long long)in_dim);
    float act_scale = 0.0f;
    int32_t act_zp = 0;
    bool has_act = false;
    pq_status st = PQ_OK;
    bool forced = src->mode == PQ_ESM2_QMODE_WEIGHT_ONLY || src->mode == PQ_ESM2_QMODE_DYNAMIC;
    if (e->has_act_scale && !forced &&
        (st = pq_h5_read_act_qparams(src->path, name, &act_scale, &act_zp, &has_act)) != PQ_OK)
        return st;
    pq_qlinear_kind kind = pq_qlinear_choose(e->spec.bits, e->spec.gran,
                                             src->mode == PQ_ESM2_QMODE_DYNAMIC ? "dynamic" : e->scheme, has_act,
                                             src->mode == PQ_ESM2_QMODE_WEIGHT_ONLY);
    pq_qtensor qt;
    memset(&qt, 0, sizeof qt);
    if ((st = pq_h5r_map_qtensor(src->r, e, &qt)) != PQ_OK) return st;
    st = pq_qlinear_from_qtensor(name, &qt, kind, act_scale, act_zp, src->n_threads, ql);
    pq_qtensor_free(&qt);
    return st;
}

/* Layer `layer`'s q, k and v stacked into one packed Linear when the three
 * run the same way: quantized, the same kind, the same static input qparams,
 * weights that stack (bits, granularity with tensor as channel, group size,
 * zero points). Anything else: *ql stays NULL and they load one by one. */
static pq_status h5_qkv(void *user, int layer, int64_t dim, pq_qlinear **ql)
{
    h5_src *src = user;
    *ql = NULL;
    if (src->mode == PQ_ESM2_QMODE_DEQUANT) return PQ_OK;
    static const pq_esm2_role roles[3] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V};
    const pq_h5r_entry *e[3];
    pq_qlinear_kind kind[3];
    float act_scale[3] = {0};
    int32_t act_zp[3] = {0};
    pq_status st = PQ_OK;
    for (int i = 0; i < 3; i++) {
        char name[256];
        pq_esm2_name(roles[i], layer, name, sizeof name);
        e[i] = pq_h5r_find(src->r, name);
        /* absent, float or misshapen: the one-by-one path handles (or reports) it */
        if (!e[i] || !e[i]->quantized || e[i]->ndim != 2 || e[i]->shape[0] != dim || e[i]->shape[1] != dim)
            return PQ_OK;
        bool has_act = false;
        bool forced = src->mode == PQ_ESM2_QMODE_WEIGHT_ONLY || src->mode == PQ_ESM2_QMODE_DYNAMIC;
        if (e[i]->has_act_scale && !forced &&
            (st = pq_h5_read_act_qparams(src->path, name, &act_scale[i], &act_zp[i], &has_act)) != PQ_OK)
            return st;
        kind[i] = pq_qlinear_choose(e[i]->spec.bits, e[i]->spec.gran,
                                    src->mode == PQ_ESM2_QMODE_DYNAMIC ? "dynamic" : e[i]->scheme, has_act,
                                    src->mode == PQ_ESM2_QMODE_WEIGHT_ONLY);
        if (kind[i] != kind[0] || !pq_qlinear_specs_stack(&e[0]->spec, &e[i]->spec)) return PQ_OK;
        /* static: one input quantization for the three */
        if (kind[i] == PQ_QLINEAR_W8A8_STATIC && (act_scale[i] != act_scale[0] || act_zp[i] != act_zp[0]))
            return PQ_OK;
    }
    pq_qtensor qt[3];
    memset(qt, 0, sizeof qt);
    for (int i = 0; i < 3 && st == PQ_OK; i++) st = pq_h5r_map_qtensor(src->r, e[i], &qt[i]);
    if (st == PQ_OK) {
        char name[256];
        pq_esm2_name(PQ_ESM2_Q, layer, name, sizeof name);
        const pq_qtensor *parts[3] = {&qt[0], &qt[1], &qt[2]};
        char what[300];
        snprintf(what, sizeof what, "%s (stacked q/k/v)", name);
        st = pq_qlinear_from_qtensors_stacked(what, parts, 3, kind[0], act_scale[0], act_zp[0], src->n_threads,
                                              ql);
    }
    for (int i = 0; i < 3; i++) pq_qtensor_free(&qt[i]);
    return st;
}

pq_status pq_esm2_model_load_h5(const char *path, const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    *out = NULL;
    pq_h5r *r = NULL;
    pq_status st = pq_h5r_open(path, &r);
    if (st == PQ_OK && opts && opts->no_verify_checksums) st = pq_h5r_set_verify(r, false);
    if (st != PQ_OK) {
        pq_h5r_close(r);
        return st;
    }
    pq_esm2_config cfg = pq_h5r_meta(r)->cfg;
    if (cfg.head_dim == 0 && cfg.attention_heads > 0) cfg.head_dim = cfg.embed_dim / cfg.attention_heads;
    if (cfg.layer_norm_eps <= 0) cfg.layer_norm_eps = 1e-5f;
    cfg.token_dropout = true; /* every ESM-2 */
    h5_src src = {.r = r, .path = path, .mode = opts ? opts->quantized_mode : PQ_ESM2_QMODE_AUTO,
                  .n_threads = !opts ? 0 : opts->no_threading ? 1 : opts->n_threads};
    pq_h5r_set_threads(r, src.n_threads);
    st = pq_esm2_model_load_with_qkv(&cfg, h5_read, h5_linear, h5_qkv, &src, opts, out);
    pq_h5r_close(r);
    return st;
}

pq_status pq_esm2_model_open(const char *path, const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    if (pq_path_is_h5(path)) return pq_esm2_model_load_h5(path, opts, out);
    return pq_esm2_model_load(path, opts, out);
}
