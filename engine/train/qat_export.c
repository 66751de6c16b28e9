/* SPDX-License-Identifier: Apache-2.0 */
/* qat_export.c - write a trained model through the Proteus HDF5 writer. */
#include "train/qat_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/h5model.h"
#include "format/st_hash.h"
#include "kernels/pq_kernels.h"
#include "pq_config.h"
#include "quant/rtn.h"

/* The site of (role, layer), NULL when that tensor is not fake quantized. */
static const pq_qat_site *site_of(const pq_qat *q, pq_esm2_role role, int layer)
{
    for (int i = 0; q && i < q->n_sites; i++)
        if (q->site[i].role == role && q->site[i].layer == layer) return &q->site[i];
    return NULL;
}

/* Codes of a site with its learned steps (the rounding of the forward),
 * and the metrics against the master weights. */
static pq_status site_qtensor(const pq_trainer *tr, const pq_qat_site *s, pq_qtensor *qt)
{
    const pq_qat *q = tr->q;
    pq_status st = pq_qtensor_alloc(qt, &q->spec, s->rows, s->cols);
    if (st != PQ_OK) return st;
    pq_ops ops;
    pq_ops_init_ref(&ops);
    const float *w = tr->p->data + s->w_off;
    int8_t *row = malloc((size_t)s->cols);
    double *ss = malloc((size_t)s->rows * sizeof(double)), *es = malloc((size_t)s->rows * sizeof(double));
    float *mx = malloc((size_t)s->rows * sizeof(float));
    if (!row || !ss || !es || !mx) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto done;
    }
    memcpy(qt->scale, q->scale + s->s_off, (size_t)qt->n_scales * sizeof(float));
    if (q->zp) memcpy(qt->zero_point, q->zp + s->s_off, (size_t)qt->n_scales * sizeof(int32_t));
    for (int64_t r = 0; r < s->rows; r++) {
        double sum = 0.0, err = 0.0;
        float emax = 0.0f;
        for (int64_t g = 0; g < s->n_groups; g++) {
            float sc = qt->scale[r * s->n_groups + g], inv = 1.0f / sc;
            int32_t zp = q->zp ? qt->zero_point[r * s->n_groups + g] : 0;
            int64_t c1 = (g + 1) * s->gs < s->cols ? (g + 1) * s->gs : s->cols;
            for (int64_t c = g * s->gs; c < c1; c++) {
                float v = nearbyintf(w[r * s->cols + c] * inv) + (float)zp;
                v = v < (float)q->qmin ? (float)q->qmin : v > (float)q->qmax ? (float)q->qmax : v;
                row[c] = (int8_t)v;
                float d = w[r * s->cols + c] - (v - (float)zp) * sc;
                sum += (double)w[r * s->cols + c] * w[r * s->cols + c];
                err += (double)d * d;
                emax = fabsf(d) > emax ? fabsf(d) : emax;
            }
        }
        uint8_t *dst = (uint8_t *)qt->codes + r * qt->code_row_bytes;
        if (q->spec.bits == 4) ops.pack_i4(row, s->cols, dst);
        else memcpy(dst, row, (size_t)s->cols);
        ss[r] = sum;
        es[r] = err;
        mx[r] = emax;
    }
    pq_qmetrics_from_rows(ss, es, mx, s->rows, 0, &qt->metrics);
done:
    free(row); free(ss); free(es); free(mx);
    return st;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The mean losses as a JSON list, owned. */
static char *curve_json(const pq_trainer *tr)
{
    size_t cap = (size_t)tr->step * 24 + 8, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    n += (size_t)snprintf(s + n, cap - n, "[");
    for (int64_t i = 0; i < tr->step; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s%.6f", i ? "," : "", tr->curve[i]);
    snprintf(s + n, cap - n, "]");
    return s;
}

pq_status pq_qat_export(const pq_trainer *tr, const char *src_path, const char *out_path,
                        const pq_qat_export_info *info)
{
    pq_st_model *st_m = NULL;
    pq_h5w *w = NULL;
    float *buf = NULL;
    char *curve = NULL;
    char hex[65];
    const pq_train_params *p = tr->p;
    pq_status st = pq_st_open(src_path, &st_m);
    if (st != PQ_OK) return st;
    if ((st = pq_st_hash_tree(st_m, PQ_HASH_CHUNK_BYTES, tr->o.n_threads, hex)) != PQ_OK) goto done;
    bool act_static = tr->q && tr->q->n_act;
    const char *scheme = act_static ? "static" : tr->o.act_int8 ? "dynamic" : tr->q && tr->q->spec.bits == 4 ? "w4a16" : "w8a16";
    pq_h5_meta meta = {.architecture = p->cfg.arch ? p->cfg.arch->name : "esm2_custom",
                       .model_name = base_name(src_path), .source_sha256 = hex,
                       .source_hash_chunk_bytes = PQ_HASH_CHUNK_BYTES, .created_by = "proteus " PQ_VERSION,
                       .config_json = info && info->recipe_json ? info->recipe_json : "{}", .num_ranks = 1,
                       .cfg = p->cfg};
    if ((st = pq_h5w_create(out_path, &meta, &w)) != PQ_OK) goto done;
    for (int64_t i = 0; i < pq_st_count(st_m); i++) {
        const pq_st_tensor *t = pq_st_get(st_m, i);
        int layer = -1;
        pq_esm2_role role = pq_esm2_role_of(t->name, &layer);
        const pq_qat_site *s = site_of(tr->q, role, layer);
        if (s) {
            pq_qtensor qt;
            memset(&qt, 0, sizeof qt);
            st = site_qtensor(tr, s, &qt);
            if (st == PQ_OK) st = pq_h5w_put_qtensor(w, t->name, &qt, scheme, "qat");
            if (st == PQ_OK && act_static)
                st = pq_h5w_put_act_qparams(w, t->name,
                                            tr->q->scale[tr->q->act_off + 4 * layer + pq_qat_act_kind(role)], NULL);
            pq_qtensor_free(&qt);
            if (st != PQ_OK) goto done;
            continue;
        }
        const pq_train_tensor *tt = pq_train_find(p, role, layer);
        if (!tt && role == PQ_ESM2_LM_DECODER) tt = pq_train_find(p, PQ_ESM2_EMBED, -1); /* tied copy */
        const float *src = NULL;
        if (tt && tt->n_elems == t->n_elems) {
            src = p->data + tt->off;
        } else {
            free(buf);
            if (!(buf = malloc((size_t)(t->n_elems ? t->n_elems : 1) * sizeof(float)))) {
                st = pq_err(PQ_ERR_RESOURCE, "out of memory");
                goto done;
            }
            int64_t rows = t->ndim >= 2 ? t->shape[0] : (t->n_elems ? 1 : 0);
            if ((st = pq_st_read_rows_f32(st_m, t, 0, rows, buf)) != PQ_OK) goto done;
            src = buf;
        }
        if ((st = pq_h5w_put_float(w, t->name, t->ndim, t->shape, src, false)) != PQ_OK) goto done;
    }
    if (!(curve = curve_json(tr))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    if ((st = pq_h5w_provenance(w, "qat_curve", curve)) != PQ_OK) goto done;
    if (info && info->command_line && (st = pq_h5w_provenance(w, "command_line", info->command_line)) != PQ_OK)
        goto done;
    if (info && info->recipe_json && (st = pq_h5w_provenance(w, "qat_recipe", info->recipe_json)) != PQ_OK)
        goto done;
    if (info && info->eval_json && (st = pq_h5w_provenance(w, "qat_eval", info->eval_json)) != PQ_OK) goto done;
    st = pq_h5w_commit(w);
    w = NULL;
done:
    pq_h5w_abort(w);
    free(buf);
    free(curve);
    pq_st_close(st_m);
    return st;
}
