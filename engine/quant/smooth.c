/* SPDX-License-Identifier: Apache-2.0 */
/* smooth.c - SmoothQuant factors, and applying them to tensors (smooth.h). */
#include "quant/smooth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/esm2.h"

bool pq_smooth_alpha_ok(double alpha)
{
    return alpha > 0.0 && alpha <= 1.0;
}

pq_status pq_smooth_create(int num_layers, int64_t dim, double alpha, pq_smooth **out)
{
    *out = NULL;
    pq_smooth *s = calloc(1, sizeof *s);
    if (!s) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    s->alpha = alpha;
    s->num_layers = num_layers;
    s->n_sites = 2 * num_layers;
    if (!(s->sites = calloc((size_t)(s->n_sites ? s->n_sites : 1), sizeof *s->sites))) goto oom;
    for (int i = 0; i < s->n_sites; i++) {
        pq_smooth_site *ss = &s->sites[i];
        ss->layer = i / 2;
        ss->kind = i % 2 ? PQ_SITE_FFN_IN : PQ_SITE_ATTN_IN;
        ss->dim = dim;
        snprintf(ss->site, sizeof ss->site, "layer.%d.%s", ss->layer, i % 2 ? "ffn_in" : "attn_in");
        if (!(ss->s = malloc((size_t)(dim ? dim : 1) * sizeof *ss->s))) goto oom;
        for (int64_t j = 0; j < dim; j++) ss->s[j] = 1.0f;
    }
    *out = s;
    return PQ_OK;
oom:
    pq_smooth_free(s);
    return pq_err(PQ_ERR_RESOURCE, "out of memory for the smoothing factors");
}

void pq_smooth_free(pq_smooth *s)
{
    if (!s) return;
    for (int i = 0; s->sites && i < s->n_sites; i++) {
        free(s->sites[i].s);
        free(s->sites[i].act_absmax);
        free(s->sites[i].w_absmax);
    }
    free(s->sites);
    free(s);
}

/* x^e in fp32 as torch's pow(tensor, scalar) on the CPU: the exponent 0.5
 * is a square root, 1 gives x, 0 gives 1, others powf. */
static float pow_f32(float x, double e)
{
    if (e == 0.5) return sqrtf(x);
    if (e == 1.0) return x;
    if (e == 0.0) return 1.0f;
    return powf(x, (float)e);
}

void pq_smooth_factors(const float *act_absmax, const float *w_absmax, int64_t dim, double alpha,
                       float *s)
{
    for (int64_t j = 0; j < dim; j++) {
        float w = fmaxf(w_absmax[j], PQ_SMOOTH_MIN);
        float v = pow_f32(act_absmax[j], alpha) / pow_f32(w, 1.0 - alpha);
        s[j] = fmaxf(v, PQ_SMOOTH_MIN); /* fmaxf: a NaN quotient (0/0 cannot happen) clamps too */
    }
}

pq_status pq_smooth_weight_absmax(const pq_st_model *m, const char *const *names, int n, int64_t dim,
                                  float *out)
{
    pq_status st = PQ_OK;
    float *row = malloc((size_t)(dim ? dim : 1) * sizeof *row);
    if (!row) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t j = 0; j < dim; j++) out[j] = 0.0f;
    for (int k = 0; k < n && !st; k++) {
        const pq_st_tensor *t = pq_st_find(m, names[k]);
        if (!t || t->ndim != 2 || t->shape[1] != dim) {
            st = pq_err(PQ_ERR_FORMAT, "smoothquant: Linear weight '%s' %s (expected [*, %lld])", names[k],
                        t ? "has the wrong shape" : "is missing", (long long)dim);
            break;
        }
        for (int64_t r = 0; r < t->shape[0] && !st; r++) {
            if ((st = pq_st_read_rows_f32(m, t, r, 1, row))) break;
            for (int64_t j = 0; j < dim; j++) {
                float a = fabsf(row[j]);
                if (!isfinite(a)) {
                    st = pq_err(PQ_ERR_CALIBRATION, "smoothquant: '%s' holds NaN/Inf (row %lld, column %lld): "
                                "no smoothing factor can be computed", names[k], (long long)r, (long long)j);
                    break;
                }
                if (a > out[j]) out[j] = a;
            }
        }
        pq_st_release(m, t);
    }
    free(row);
    return st;
}

pq_status pq_smooth_compute(const pq_st_model *m, const pq_calib *c, double alpha, pq_smooth **out)
{
    pq_status st;
    pq_smooth *s = NULL;
    *out = NULL;
    if (!pq_smooth_alpha_ok(alpha))
        return pq_err(PQ_ERR_CONFIG, "smoothquant_alpha %g is not in (0, 1]", alpha);
    if ((st = pq_calib_check(c, false))) return st;
    if ((st = pq_smooth_create(c->num_layers, c->embed_dim, alpha, &s))) return st;
    for (int i = 0; i < s->n_sites; i++) {
        pq_smooth_site *ss = &s->sites[i];
        const pq_calib_site *cs = pq_calib_find(c, ss->site);
        if (!cs || cs->dim != ss->dim) {
            st = pq_err(PQ_ERR_CALIBRATION, "smoothquant: calibration site %s is %s", ss->site,
                        cs ? "of another width" : "not in the statistics");
            goto fail;
        }
        char names[3][128];
        const char *np[3] = {names[0], names[1], names[2]};
        int n = 0;
        if (ss->kind == PQ_SITE_ATTN_IN) {
            pq_esm2_name(PQ_ESM2_Q, ss->layer, names[n++], sizeof names[0]);
            pq_esm2_name(PQ_ESM2_K, ss->layer, names[n++], sizeof names[0]);
            pq_esm2_name(PQ_ESM2_V, ss->layer, names[n++], sizeof names[0]);
        } else {
            pq_esm2_name(PQ_ESM2_FC1, ss->layer, names[n++], sizeof names[0]);
        }
        ss->act_absmax = malloc((size_t)ss->dim * sizeof *ss->act_absmax);
        ss->w_absmax = malloc((size_t)ss->dim * sizeof *ss->w_absmax);
        if (!ss->act_absmax || !ss->w_absmax) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto fail;
        }
        memcpy(ss->act_absmax, cs->chan_absmax, (size_t)ss->dim * sizeof *ss->act_absmax);
        if ((st = pq_smooth_weight_absmax(m, np, n, ss->dim, ss->w_absmax))) goto fail;
        pq_smooth_factors(ss->act_absmax, ss->w_absmax, ss->dim, alpha, ss->s);
    }
    *out = s;
    return PQ_OK;
fail:
    pq_smooth_free(s);
    return st;
}

const pq_smooth_site *pq_smooth_site_of(const pq_smooth *s, const char *hf_name, bool *divide)
{
    int layer = -1, kind;
    if (!s) return NULL;
    switch (pq_esm2_role_of(hf_name, &layer)) {
    case PQ_ESM2_LN_ATTN_W: case PQ_ESM2_LN_ATTN_B: *divide = true; kind = 0; break;
    case PQ_ESM2_LN_FFN_W: case PQ_ESM2_LN_FFN_B: *divide = true; kind = 1; break;
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: *divide = false; kind = 0; break;
    case PQ_ESM2_FC1: *divide = false; kind = 1; break;
    default: return NULL;
    }
    if (layer < 0 || layer >= s->num_layers) return NULL;
    return &s->sites[layer * 2 + kind];
}

bool pq_smooth_apply(const pq_smooth *s, const char *hf_name, const float *src, int64_t rows,
                     int64_t cols, float *dst)
{
    bool divide = false;
    const pq_smooth_site *ss = pq_smooth_site_of(s, hf_name, &divide);
    if (!ss) return false;
    const float *f = ss->s;
    if (divide) {
        int64_t n = rows * cols; /* a 1-D LayerNorm tensor of dim values */
        for (int64_t j = 0; j < n; j++) dst[j] = src[j] / f[j % ss->dim];
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) dst[r * cols + j] = src[r * cols + j] * f[j];
    }
    return true;
}

bool pq_smooth_site_range(const pq_smooth *s, const pq_calib_site *cs, pq_calib_range *r)
{
    if (!s || (cs->kind != PQ_SITE_ATTN_IN && cs->kind != PQ_SITE_FFN_IN) || cs->layer < 0 ||
        cs->layer >= s->num_layers)
        return false;
    const pq_smooth_site *ss = &s->sites[cs->layer * 2 + (cs->kind == PQ_SITE_FFN_IN)];
    if (ss->dim != cs->dim) return false;
    float amax = 0.0f;
    for (int64_t j = 0; j < ss->dim; j++) {
        float v = cs->chan_absmax[j] / ss->s[j];
        if (v > amax) amax = v;
    }
    memset(r, 0, sizeof *r);
    r->lo = -amax;
    r->hi = amax;
    r->amax = amax;
    r->kl = NAN;
    r->mse = NAN;
    return true;
}
