/* SPDX-License-Identifier: Apache-2.0 */
/* api_tensors.c - the public calls that read a Proteus HDF5 model's
 * tensors (proteus.h) through the format's one reader (format/h5model.h). */
#include <stdlib.h>
#include <string.h>

#include "api/proteus.h"
#include "format/h5model.h"
#include "quant/qtensor.h"

struct pq_tensors {
    pq_h5r *r;
};

pq_status pq_tensors_open(const char *path, pq_tensors **out)
{
    pq_tensors *t = calloc(1, sizeof *t);
    if (!t) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_h5r_open(path, &t->r);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return PQ_OK;
}

void pq_tensors_close(pq_tensors *t)
{
    if (!t) return;
    pq_h5r_close(t->r);
    free(t);
}

int64_t pq_tensors_count(const pq_tensors *t)
{
    return pq_h5r_count(t->r);
}

static pq_status entry_at(const pq_tensors *t, int64_t i, const pq_h5r_entry **e)
{
    if (!(*e = pq_h5r_get(t->r, i)))
        return pq_err(PQ_ERR_CONFIG, "tensor index %lld is outside 0..%lld", (long long)i,
                      (long long)pq_h5r_count(t->r) - 1);
    return PQ_OK;
}

pq_status pq_tensor_info_at(const pq_tensors *t, int64_t i, pq_tensor_info *out)
{
    const pq_h5r_entry *e;
    pq_status st = entry_at(t, i, &e);
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->ndim = e->ndim;
    for (int d = 0; d < e->ndim && d < 8; d++) out->shape[d] = e->shape[d];
    if (e->quantized) {
        out->bits = e->spec.bits;
        out->granularity = (int)e->spec.gran;
        out->group_size = e->spec.gran == PQ_GRAN_GROUP ? e->spec.group_size : 0;
        out->symmetric = e->spec.symmetric;
        out->n_scales = pq_qspec_n_scales(&e->spec, e->shape[0], e->shape[1]);
    }
    return PQ_OK;
}

pq_status pq_tensor_read_f32(pq_tensors *t, int64_t i, float *dst)
{
    const pq_h5r_entry *e;
    pq_status st = entry_at(t, i, &e);
    return st ? st : pq_h5r_read_f32(t->r, e, dst);
}

pq_status pq_tensor_read_int8(pq_tensors *t, int64_t i, int8_t *codes, float *scale, int32_t *zero_point)
{
    const pq_h5r_entry *e;
    pq_status st = entry_at(t, i, &e);
    if (st) return st;
    if (!e->quantized || e->spec.bits != 8)
        return pq_err(PQ_ERR_CONFIG, "%s: not an int8 tensor (%s)", e->name,
                      e->quantized ? "int4" : "float");
    pq_qtensor qt = {0};
    if ((st = pq_h5r_read_qtensor(t->r, e, &qt))) return st;
    memcpy(codes, qt.codes, (size_t)(qt.rows * qt.cols));
    memcpy(scale, qt.scale, (size_t)qt.n_scales * sizeof *scale);
    for (int64_t k = 0; k < qt.n_scales; k++) zero_point[k] = qt.zero_point ? qt.zero_point[k] : 0;
    pq_qtensor_free(&qt);
    return PQ_OK;
}
