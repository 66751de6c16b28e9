/* SPDX-License-Identifier: Apache-2.0 */
/* qtensor.c - allocation, dequantization and metrics of quantized 2-D weights. */
#include "quant/qtensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/pq_kernels.h"

pq_status pq_qtensor_alloc(pq_qtensor *qt, const pq_qspec *spec, int64_t rows, int64_t cols)
{
    memset(qt, 0, sizeof *qt);
    if (rows < 0 || cols < 0 || (spec->bits != 8 && spec->bits != 4) ||
        (spec->gran == PQ_GRAN_GROUP && spec->group_size <= 0))
        return pq_err(PQ_ERR_INTERNAL, "pq_qtensor_alloc: bad shape [%lld, %lld] or spec (bits %d, group %d)",
                      (long long)rows, (long long)cols, spec->bits, spec->group_size);
    qt->spec = *spec;
    qt->rows = rows;
    qt->cols = cols;
    qt->n_groups = pq_qspec_groups(spec, cols);
    qt->code_row_bytes = pq_qspec_row_bytes(spec, cols);
    qt->n_scales = spec->gran == PQ_GRAN_TENSOR ? 1 : rows * qt->n_groups;
    /* +1: malloc(0) may return NULL, which would read as out of memory. */
    qt->codes = malloc((size_t)(rows * qt->code_row_bytes) + 1);
    qt->scale = malloc((size_t)qt->n_scales * sizeof(float) + 1);
    if (!spec->symmetric) qt->zero_point = malloc((size_t)qt->n_scales * sizeof(int32_t) + 1);
    if (!qt->codes || !qt->scale || (!spec->symmetric && !qt->zero_point)) {
        pq_qtensor_free(qt);
        return pq_err(PQ_ERR_RESOURCE, "out of memory for a quantized [%lld, %lld] tensor",
                      (long long)rows, (long long)cols);
    }
    return PQ_OK;
}

void pq_qtensor_free(pq_qtensor *qt)
{
    if (!qt) return;
    if (qt->codes_map) munmap(qt->codes_map, qt->codes_map_bytes);
    else free(qt->codes);
    free(qt->scale);
    free(qt->zero_point);
    memset(qt, 0, sizeof *qt);
}

/* Scale index of (row, group) for any granularity. */
static int64_t scale_index(const pq_qtensor *qt, int64_t r, int64_t g)
{
    return qt->spec.gran == PQ_GRAN_TENSOR ? 0 : r * qt->n_groups + g;
}

void pq_qtensor_dequantize_rows(const pq_qtensor *qt, int64_t row0, int64_t n, float *dst)
{
    /* every context dequantizes to the same bits (one exact int-to-float
     * conversion and one product), so the reference serves every caller */
    pq_ops ref;
    pq_ops_init_ref(&ref);
    const pq_ops *k = &ref;
    const int64_t cols = qt->cols;
    const int64_t gs = qt->spec.gran == PQ_GRAN_GROUP ? qt->spec.group_size : (cols ? cols : 1);
    /* 4-bit rows are unpacked in even-aligned chunks into a stack buffer, so
     * this never allocates and cannot fail. */
    enum { CHUNK = 512 };
    int8_t buf[CHUNK];
    for (int64_t r = row0; r < row0 + n; r++) {
        const unsigned char *row = (const unsigned char *)qt->codes + r * qt->code_row_bytes;
        float *y = dst + (r - row0) * cols;
        for (int64_t c0 = 0; c0 < cols; c0 += CHUNK) {
            int64_t len = cols - c0 < CHUNK ? cols - c0 : CHUNK;
            const int8_t *q;
            if (qt->spec.bits == 8) {
                q = (const int8_t *)row + c0;
            } else {
                k->unpack_i4(row + c0 / 2, len, buf);
                q = buf;
            }
            /* split the chunk at group boundaries */
            for (int64_t c = c0; c < c0 + len;) {
                int64_t g = c / gs;
                int64_t end = (g + 1) * gs;
                if (end > c0 + len) end = c0 + len;
                int64_t si = scale_index(qt, r, g);
                int32_t zp = qt->zero_point ? qt->zero_point[si] : 0;
                k->dequantize_row(q + (c - c0), end - c, qt->scale[si], zp, y + c);
                c = end;
            }
        }
    }
}

void pq_qmetrics_finish(pq_qmetrics *m)
{
    m->rel_l2 = m->sum_sq > 0.0 ? sqrt(m->err_sq / m->sum_sq) : 0.0;
    if (m->err_sq == 0.0)
        m->sqnr_db = INFINITY;
    else
        m->sqnr_db = 10.0 * log10(m->sum_sq / m->err_sq);
}
