/* SPDX-License-Identifier: Apache-2.0 */
/* qat_init.c - the QAT state started from a file `proteus quantize` wrote
 * (GPTQ's codes and steps, the static scheme's input steps). */
#include <stdlib.h>
#include <string.h>

#include "format/h5model.h"
#include "quant/qtensor.h"
#include "train/qat.h"

/* Site s from the file's tensor e: steps, zero points, dequantized weights. */
static pq_status init_site(const pq_qat *q, const pq_qat_site *s, pq_h5r *r, const pq_h5r_entry *e,
                           const char *path, const char *name, float *w)
{
    const pq_qspec *a = &q->spec;
    if (!e || !e->quantized)
        return pq_err(PQ_ERR_CONFIG, "%s: tensor %s is %s, the training quantizes it", path, name,
                      e ? "stored in float" : "missing");
    if (e->spec.bits != a->bits || e->spec.gran != a->gran || e->spec.symmetric != a->symmetric ||
        (a->gran == PQ_GRAN_GROUP && e->spec.group_size != a->group_size) || e->shape[0] != s->rows ||
        e->shape[1] != s->cols)
        return pq_err(PQ_ERR_CONFIG, "%s: tensor %s is stored as %d-bit %s%s, the training uses %d-bit %s%s", path,
                      name, e->spec.bits, pq_granularity_name(e->spec.gran), e->spec.symmetric ? "" : " asymmetric",
                      a->bits, pq_granularity_name(a->gran), a->symmetric ? "" : " asymmetric");
    pq_qtensor qt;
    memset(&qt, 0, sizeof qt);
    pq_status st = pq_h5r_read_qtensor(r, e, &qt);
    if (st == PQ_OK) st = pq_h5r_read_f32(r, e, w + s->w_off);
    if (st == PQ_OK) {
        memcpy(q->scale + s->s_off, qt.scale, (size_t)(s->rows * s->n_groups) * sizeof(float));
        if (q->zp) memcpy(q->zp + s->s_off, qt.zero_point, (size_t)(s->rows * s->n_groups) * sizeof(int32_t));
    }
    pq_qtensor_free(&qt);
    return st;
}

pq_status pq_qat_init_file(pq_qat *q, const pq_train_params *p, float *w, const char *path, bool weights,
                           bool acts)
{
    (void)p;
    pq_h5r *r = NULL;
    pq_status st = pq_h5r_open(path, &r);
    for (int i = 0; st == PQ_OK && i < q->n_sites; i++) {
        const pq_qat_site *s = &q->site[i];
        char name[256];
        pq_esm2_name(s->role, s->layer, name, sizeof name);
        if (weights) st = init_site(q, s, r, pq_h5r_find(r, name), path, name, w);
        int k = pq_qat_act_kind(s->role);
        if (st != PQ_OK || !acts || !q->n_act || s->role == PQ_ESM2_K || s->role == PQ_ESM2_V) continue;
        float sc = 0.0f;
        int32_t zp = 0;
        bool found = false;
        if ((st = pq_h5_read_act_qparams(path, name, &sc, &zp, &found)) != PQ_OK) break;
        if (!found || zp)
            st = pq_err(PQ_ERR_CONFIG, "%s: tensor %s has %s, static training needs a symmetric act_scale", path,
                        name, found ? "an act_zero_point" : "no act_scale");
        else
            q->scale[q->act_off + 4 * s->layer + k] = sc;
    }
    pq_h5r_close(r);
    return st;
}
