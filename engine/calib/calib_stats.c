/* SPDX-License-Identifier: Apache-2.0 */
/* calib_stats.c - exact, mergeable activation statistics (calib_stats.h). */
#include "calib/calib_stats.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[PQ_SITE_KINDS] = {"attn_in", "attn_out", "ffn_in", "ffn_mid"};

pq_status pq_calib_create(int num_layers, int embed_dim, int ffn_dim, pq_calib **out)
{
    *out = NULL;
    if (num_layers <= 0 || embed_dim <= 0 || ffn_dim <= 0 || num_layers > 4096)
        return pq_err(PQ_ERR_INTERNAL, "pq_calib_create: bad architecture %d/%d/%d", num_layers,
                      embed_dim, ffn_dim);
    pq_calib *c = calloc(1, sizeof *c);
    if (!c) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    c->num_layers = num_layers;
    c->embed_dim = embed_dim;
    c->ffn_dim = ffn_dim;
    c->n_sites = num_layers * PQ_SITE_KINDS;
    if (!(c->sites = calloc((size_t)c->n_sites, sizeof *c->sites))) goto oom;
    for (int i = 0; i < c->n_sites; i++) {
        pq_calib_site *s = &c->sites[i];
        s->layer = i / PQ_SITE_KINDS;
        s->kind = (pq_calib_kind)(i % PQ_SITE_KINDS);
        snprintf(s->name, sizeof s->name, "layer.%d.%s", s->layer, kind_names[s->kind]);
        s->dim = s->kind == PQ_SITE_FFN_MID ? ffn_dim : embed_dim;
        s->min = INFINITY;
        s->max = -INFINITY;
        if (!(s->chan_absmax = calloc((size_t)s->dim, sizeof(float)))) goto oom;
    }
    *out = c;
    return PQ_OK;
oom:
    pq_calib_free(c);
    return pq_err(PQ_ERR_RESOURCE, "out of memory for calibration statistics");
}

void pq_calib_free(pq_calib *c)
{
    if (!c) return;
    for (int i = 0; c->sites && i < c->n_sites; i++) {
        free(c->sites[i].chan_absmax);
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) free(c->sites[i].blocks[b]);
        free(c->sites[i].pending);
    }
    free(c->sites);
    free(c->model_path);
    free(c->datasets);
    free(c);
}

int pq_calib_site_index(const pq_calib *c, int layer, pq_esm2_role role)
{
    int k;
    switch (role) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: k = PQ_SITE_ATTN_IN; break;
    case PQ_ESM2_OUT: k = PQ_SITE_ATTN_OUT; break;
    case PQ_ESM2_FC1: k = PQ_SITE_FFN_IN; break;
    case PQ_ESM2_FC2: k = PQ_SITE_FFN_MID; break;
    default: return -1;
    }
    if (layer < 0 || layer >= c->num_layers) return -1;
    return layer * PQ_SITE_KINDS + k;
}

bool pq_calib_site_of_weight(const char *hf_name, char *buf, size_t n)
{
    int layer = -1;
    pq_esm2_role r = pq_esm2_role_of(hf_name, &layer);
    int k;
    switch (r) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: k = PQ_SITE_ATTN_IN; break;
    case PQ_ESM2_OUT: k = PQ_SITE_ATTN_OUT; break;
    case PQ_ESM2_FC1: k = PQ_SITE_FFN_IN; break;
    case PQ_ESM2_FC2: k = PQ_SITE_FFN_MID; break;
    default: return false;
    }
    snprintf(buf, n, "layer.%d.%s", layer, kind_names[k]);
    return true;
}

const pq_calib_site *pq_calib_find(const pq_calib *c, const char *name)
{
    for (int i = 0; i < c->n_sites; i++)
        if (!strcmp(c->sites[i].name, name)) return &c->sites[i];
    return NULL;
}

pq_status pq_calib_site_add(const pq_ops *k, pq_calib_site *s, const float *x, int64_t n_tokens,
                            int64_t dim)
{
    if (dim != s->dim)
        return pq_err(PQ_ERR_INTERNAL, "calibration site %s: input width %lld, expected %lld",
                      s->name, (long long)dim, (long long)s->dim);
    if (!s->pending && !(s->pending = calloc(PQ_HIST_NBINS, sizeof *s->pending)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory for the histogram of %s", s->name);
    uint64_t nonfinite[3] = {0, 0, 0};
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t t = 0; t < n_tokens;) {
        /* a uint32 bin holds at most n_pending counts: flush before it could wrap */
        if (s->n_pending + (uint64_t)dim > UINT32_MAX) {
            pq_status st = pq_calib_site_flush(s);
            if (st) return st;
        }
        int64_t r = (int64_t)((UINT32_MAX - s->n_pending) / (uint64_t)dim);
        if (r > n_tokens - t) r = n_tokens - t;
        k->hist_ieee(x + t * dim, r, dim, s->pending, nonfinite, &mn, &mx, s->chan_absmax);
        s->n_pending += (uint64_t)(r * dim);
        t += r;
    }
    /* which zero the kernel returns is unspecified: store +0 so the bits
     * never depend on how the data was split */
    if (mn == 0.0f) mn = 0.0f;
    if (mx == 0.0f) mx = 0.0f;
    if (mn < s->min) s->min = mn;
    if (mx > s->max) s->max = mx;
    s->count += (uint64_t)(n_tokens * dim) - nonfinite[0] - nonfinite[1] - nonfinite[2];
    s->n_nan += nonfinite[0];
    s->n_posinf += nonfinite[1];
    s->n_neginf += nonfinite[2];
    s->n_tokens += (uint64_t)n_tokens;
    return PQ_OK;
}

pq_status pq_calib_site_flush(pq_calib_site *s)
{
    if (!s->pending || !s->n_pending) return PQ_OK;
    for (int b = 0; b < PQ_HIST_NBLOCKS; b++) {
        uint32_t *p = s->pending + (size_t)b * PQ_HIST_BLOCK, any = 0;
        for (int k = 0; k < PQ_HIST_BLOCK; k++) any |= p[k];
        if (!any) continue;
        if (!s->blocks[b] && !(s->blocks[b] = calloc(PQ_HIST_BLOCK, sizeof(uint64_t))))
            return pq_err(PQ_ERR_RESOURCE, "out of memory for the histogram of %s", s->name);
        for (int k = 0; k < PQ_HIST_BLOCK; k++) s->blocks[b][k] += p[k];
        memset(p, 0, PQ_HIST_BLOCK * sizeof *p);
    }
    s->n_pending = 0;
    return PQ_OK;
}

pq_status pq_calib_flush(pq_calib *c)
{
    for (int i = 0; i < c->n_sites; i++) {
        pq_status st = pq_calib_site_flush(&c->sites[i]);
        if (st) return st;
    }
    return PQ_OK;
}

void pq_calib_observe(void *user, const pq_ops *ops, int layer, pq_esm2_role role, const float *x,
                      int64_t n_tokens, int64_t dim)
{
    pq_calib *c = user;
    if (c->failed || role == PQ_ESM2_K || role == PQ_ESM2_V) return;
    int i = pq_calib_site_index(c, layer, role);
    if (i < 0) return;
    if (pq_calib_site_add(ops, &c->sites[i], x, n_tokens, dim)) c->failed = true;
}

pq_status pq_calib_merge(pq_calib *dst, pq_calib *src)
{
    pq_status st;
    if (dst->num_layers != src->num_layers || dst->embed_dim != src->embed_dim ||
        dst->ffn_dim != src->ffn_dim)
        return pq_err(PQ_ERR_CALIBRATION, "cannot merge statistics of different architectures "
                      "(%d layers, D %d, F %d vs %d, %d, %d)", dst->num_layers, dst->embed_dim,
                      dst->ffn_dim, src->num_layers, src->embed_dim, src->ffn_dim);
    if ((st = pq_calib_flush(dst)) || (st = pq_calib_flush(src))) return st;
    for (int i = 0; i < dst->n_sites; i++) {
        pq_calib_site *d = &dst->sites[i];
        const pq_calib_site *s = &src->sites[i];
        if (s->min < d->min) d->min = s->min;
        if (s->max > d->max) d->max = s->max;
        d->count += s->count;
        d->n_nan += s->n_nan;
        d->n_posinf += s->n_posinf;
        d->n_neginf += s->n_neginf;
        d->n_tokens += s->n_tokens;
        for (int64_t j = 0; j < d->dim; j++)
            if (s->chan_absmax[j] > d->chan_absmax[j]) d->chan_absmax[j] = s->chan_absmax[j];
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) {
            if (!s->blocks[b]) continue;
            if (!d->blocks[b] && !(d->blocks[b] = calloc(PQ_HIST_BLOCK, sizeof(uint64_t))))
                return pq_err(PQ_ERR_RESOURCE, "out of memory merging %s", d->name);
            for (int k = 0; k < PQ_HIST_BLOCK; k++) d->blocks[b][k] += s->blocks[b][k];
        }
    }
    dst->n_sequences += src->n_sequences;
    dst->n_skipped += src->n_skipped;
    return PQ_OK;
}

pq_status pq_calib_check(const pq_calib *c, bool allow_nonfinite)
{
    for (int i = 0; i < c->n_sites; i++) {
        const pq_calib_site *s = &c->sites[i];
        if (s->n_tokens == 0)
            return pq_err(PQ_ERR_CALIBRATION, "site %s never fired: no calibration token reached "
                          "it", s->name);
        if (!allow_nonfinite && (s->n_nan || s->n_posinf || s->n_neginf))
            return pq_err(PQ_ERR_CALIBRATION, "site %s: non-finite activations (%llu NaN, %llu "
                          "+Inf, %llu -Inf)", s->name, (unsigned long long)s->n_nan,
                          (unsigned long long)s->n_posinf, (unsigned long long)s->n_neginf);
        if (s->count == 0)
            return pq_err(PQ_ERR_CALIBRATION, "site %s: no finite activation value", s->name);
    }
    return PQ_OK;
}

float pq_calib_bin_value(int block, int index)
{
    uint32_t u = ((uint32_t)block << 23) | ((uint32_t)index << PQ_HIST_SHIFT);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

float pq_calib_trunc(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u &= ~((1u << PQ_HIST_SHIFT) - 1u);
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Count of fine bin (b, k): stored plus pending. */
static uint64_t bin_count(const pq_calib_site *s, int b, int k)
{
    uint64_t v = s->blocks[b] ? s->blocks[b][k] : 0;
    return v + (s->pending ? s->pending[(size_t)b * PQ_HIST_BLOCK + k] : 0);
}

static bool block_used(const pq_calib_site *s, int b)
{
    if (s->blocks[b]) return true;
    if (!s->pending || !s->n_pending) return false;
    for (int k = 0; k < PQ_HIST_BLOCK; k++)
        if (s->pending[(size_t)b * PQ_HIST_BLOCK + k]) return true;
    return false;
}

void pq_calib_site_bins(const pq_calib_site *s, pq_calib_bin_fn fn, void *user)
{
    /* negative values: largest magnitude first */
    for (int b = PQ_HIST_NBLOCKS - 1; b >= PQ_HIST_NBLOCKS / 2; b--) {
        if (!block_used(s, b)) continue;
        for (int k = PQ_HIST_BLOCK - 1; k >= 0; k--) {
            uint64_t v = bin_count(s, b, k);
            if (v) fn(user, pq_calib_bin_value(b, k), v);
        }
    }
    for (int b = 0; b < PQ_HIST_NBLOCKS / 2; b++) {
        if (!block_used(s, b)) continue;
        for (int k = 0; k < PQ_HIST_BLOCK; k++) {
            uint64_t v = bin_count(s, b, k);
            if (v) fn(user, pq_calib_bin_value(b, k), v);
        }
    }
}
