/* SPDX-License-Identifier: Apache-2.0 */
/* result.c - a unit's result layout and buffers (result.h). */
#include "pipeline/result.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pq_unit_layout_of(const pq_plan *p, const pq_unit *u, pq_unit_layout *l)
{
    const pq_plan_tensor *pt = &p->tensors[u->tensor];
    const pq_qspec *s = &pt->spec;
    l->n_rows = u->n_rows;
    l->row_bytes = pq_qspec_row_bytes(s, pt->cols);
    l->n_scales = pq_qspec_n_scales(s, u->n_rows, pt->cols);
    l->codes = (size_t)(u->n_rows * l->row_bytes);
    l->scale = (size_t)l->n_scales * sizeof(float);
    l->zero_point = s->symmetric ? 0 : (size_t)l->n_scales * sizeof(int32_t);
    l->row_sum_sq = (size_t)u->n_rows * sizeof(double);
    l->row_err_sq = (size_t)u->n_rows * sizeof(double);
    l->row_max_err = (size_t)u->n_rows * sizeof(float);
}

void pq_unit_result_parts(pq_unit_result *r, const pq_unit_layout *l, pq_result_part parts[PQ_RESULT_PARTS])
{
    parts[0] = (pq_result_part){"codes", &r->codes, l->codes};
    parts[1] = (pq_result_part){"scales", (void **)&r->scale, l->scale};
    parts[2] = (pq_result_part){"zero points", (void **)&r->zero_point, l->zero_point};
    parts[3] = (pq_result_part){"row sums", (void **)&r->row_sum_sq, l->row_sum_sq};
    parts[4] = (pq_result_part){"row errors", (void **)&r->row_err_sq, l->row_err_sq};
    parts[5] = (pq_result_part){"row max errors", (void **)&r->row_max_err, l->row_max_err};
}

pq_status pq_unit_result_alloc(pq_unit_result *r, const pq_unit *u, const pq_unit_layout *l, bool with_codes)
{
    pq_result_part parts[PQ_RESULT_PARTS];
    memset(r, 0, sizeof *r);
    r->unit_id = u->id;
    r->n_rows = u->n_rows;
    r->code_bytes = (int64_t)l->codes;
    r->n_scales = l->n_scales;
    pq_unit_result_parts(r, l, parts);
    for (int i = with_codes ? 0 : 1; i < PQ_RESULT_PARTS; i++) {
        if (!parts[i].bytes) continue;
        if (!(*parts[i].data = malloc(parts[i].bytes))) {
            pq_unit_result_free(r);
            return pq_err(PQ_ERR_RESOURCE, "out of memory for the result of unit %d", u->id);
        }
    }
    return PQ_OK;
}

void pq_unit_result_free(pq_unit_result *r)
{
    if (!r) return;
    free(r->codes);
    free(r->scale);
    free(r->zero_point);
    free(r->row_sum_sq);
    free(r->row_err_sq);
    free(r->row_max_err);
    memset(r, 0, sizeof *r);
}

double pq_unit_result_sqnr(const pq_unit_result *r)
{
    double s = 0, e = 0;
    for (int64_t i = 0; i < r->n_rows; i++) {
        s += r->row_sum_sq[i];
        e += r->row_err_sq[i];
    }
    return e == 0 ? INFINITY : 10.0 * log10(s / e);
}
