/* SPDX-License-Identifier: Apache-2.0 */
/* qat.c - fake-quantization sites of an ESM-2 training run, initialised by
 * RTN. */
#include "train/qat.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/pq_kernels.h"
#include "pq_config.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"
#include "train/fake_quant.h"

static const pq_esm2_role k_sites[] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2};
#define N_SITE_ROLES ((int)(sizeof k_sites / sizeof k_sites[0]))

int pq_qat_act_kind(pq_esm2_role role)
{
    switch (role) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: return 0;
    case PQ_ESM2_OUT: return 1;
    case PQ_ESM2_FC1: return 2;
    case PQ_ESM2_FC2: return 3;
    default: return -1;
    }
}

pq_status pq_qat_create(const pq_train_params *p, const float *w, const pq_qspec *spec, bool act_static,
                        pq_qat **out)
{
    *out = NULL;
    if (spec->gran == PQ_GRAN_TENSOR)
        return pq_err(PQ_ERR_CONFIG, "quantization-aware training needs per-channel or grouped scales");
    pq_ops ops;
    pq_ops_init_ref(&ops);
    pq_qat *q = calloc(1, sizeof *q);
    if (!q) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    q->spec = *spec;
    pq_qspec_range(spec, &q->qmin, &q->qmax);
    int L = p->cfg.num_layers;
    q->site = calloc((size_t)L * N_SITE_ROLES, sizeof *q->site);
    if (!q->site) goto nomem;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < N_SITE_ROLES; i++) {
            const pq_train_tensor *t = pq_train_find(p, k_sites[i], l);
            pq_qat_site *s = &q->site[q->n_sites++];
            s->role = k_sites[i];
            s->layer = l;
            s->w_off = t->off;
            s->rows = t->rows;
            s->cols = t->cols;
            s->gs = spec->gran == PQ_GRAN_GROUP ? spec->group_size : t->cols;
            s->n_groups = pq_qspec_groups(spec, t->cols);
            s->s_off = q->n_scales;
            q->n_scales += s->rows * s->n_groups;
        }
    q->act_off = q->n_scales;
    q->n_act = act_static ? 4 * L : 0;
    q->n_scales += q->n_act;
    q->scale = malloc((size_t)q->n_scales * sizeof(float));
    if (!spec->symmetric) q->zp = calloc((size_t)q->n_scales, sizeof(int32_t));
    if (!q->scale || (!spec->symmetric && !q->zp)) goto nomem;
    for (int i = 0; i < q->n_act; i++) q->scale[q->act_off + i] = 1.0f;
    for (int i = 0; i < q->n_sites; i++) {
        const pq_qat_site *s = &q->site[i];
        char name[256];
        pq_esm2_name(s->role, s->layer, name, sizeof name);
        pq_qtensor qt;
        memset(&qt, 0, sizeof qt);
        pq_status st = pq_rtn_quantize(&ops, 1, w + s->w_off, s->rows, s->cols, spec, PQ_NAN_ERROR, name, &qt);
        if (st == PQ_OK) {
            memcpy(q->scale + s->s_off, qt.scale, (size_t)qt.n_scales * sizeof(float));
            if (q->zp) memcpy(q->zp + s->s_off, qt.zero_point, (size_t)qt.n_scales * sizeof(int32_t));
        }
        pq_qtensor_free(&qt);
        if (st != PQ_OK) {
            pq_qat_free(q);
            return st;
        }
    }
    *out = q;
    return PQ_OK;
nomem:
    pq_qat_free(q);
    return pq_err(PQ_ERR_RESOURCE, "out of memory for the quantization-aware training state");
}

void pq_qat_free(pq_qat *q)
{
    if (!q) return;
    free(q->site);
    free(q->scale);
    free(q->zp);
    free(q);
}

/* Row blocks of the sites: fixed, so the split does not follow the threads. */
#define ROWS 16

/* Forward (grad NULL: w_hat from w) or backward (grad in place, dscale)
 * of every site, row blocks in parallel. */
static void sites_pass(const pq_qat *q, const float *w, float *w_hat, float *grad, float *dscale, int n_threads)
{
    (void)n_threads;
    for (int i = 0; i < q->n_sites; i++) {
        const pq_qat_site *s = &q->site[i];
        int64_t nb = (s->rows + ROWS - 1) / ROWS;
        const int32_t *z = q->zp ? q->zp + s->s_off : NULL;
        const float *sc = q->scale + s->s_off;
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
#endif
        for (int64_t b = 0; b < nb; b++) {
            int64_t r0 = b * ROWS, r1 = (b + 1) * ROWS < s->rows ? (b + 1) * ROWS : s->rows;
            if (grad)
                pq_fq_weight_bwd_ref(w + s->w_off, grad + s->w_off, r0, r1, s->cols, s->gs, sc, z, q->qmin, q->qmax,
                                     grad + s->w_off, dscale + s->s_off);
            else
                pq_fq_weight_fwd_ref(w + s->w_off, r0, r1, s->cols, s->gs, sc, z, q->qmin, q->qmax, w_hat + s->w_off);
        }
    }
}

void pq_qat_apply(const pq_qat *q, const float *w, int64_t n_floats, float *w_hat, int n_threads)
{
    if (w_hat != w) memcpy(w_hat, w, (size_t)n_floats * sizeof(float));
    sites_pass(q, w, w_hat, NULL, NULL, n_threads);
}

void pq_qat_backward(const pq_qat *q, const float *w, float *grad, float *dscale, int n_threads)
{
    sites_pass(q, w, NULL, grad, dscale, n_threads);
}
