/* SPDX-License-Identifier: Apache-2.0 */
/* qtensor.h - a quantized 2-D weight in memory, in the exact layout stored in
 * the HDF5 file, with its error metrics. */
#ifndef PQ_QTENSOR_H
#define PQ_QTENSOR_H

#include <stdint.h>

#include "base/pq_err.h"
#include "quant/qspec.h"

typedef struct pq_qmetrics {
    double sqnr_db;      /* 10 log10(sum w^2 / sum (w - w_hat)^2); +inf when exact */
    double rel_l2;       /* ||w - w_hat|| / ||w|| (0 when w is all zero) */
    double max_abs_err;  /* max |w - w_hat| */
    double sum_sq;       /* sum w^2 (so partial metrics can be merged) */
    double err_sq;       /* sum (w - w_hat)^2 */
    int64_t n_nonfinite; /* NaN/Inf elements met (handled by the nan policy) */
} pq_qmetrics;

typedef struct pq_qtensor {
    pq_qspec spec;
    int64_t rows, cols;       /* [out, in] */
    int64_t n_groups;         /* scales per row (1 unless group-wise) */
    /* 8-bit: int8 [rows, cols]; 4-bit: uint8 [rows, ceil(cols/2)] packed as
     * pq_ops.pack_i4 documents, each row packed on its own. */
    void *codes;
    int64_t code_row_bytes;   /* cols (8-bit) or ceil(cols/2) (4-bit) */
    /* scale/zero_point: [1] (tensor), [rows] (channel), [rows, n_groups] (group) */
    float *scale;
    int32_t *zero_point;      /* NULL when symmetric */
    int64_t n_scales;
    pq_qmetrics metrics;
} pq_qtensor;

/* Allocate codes/scale/zero_point for rows x cols under spec. Returns
 * PQ_ERR_RESOURCE when memory runs out. */
pq_status pq_qtensor_alloc(pq_qtensor *qt, const pq_qspec *spec, int64_t rows, int64_t cols);
/* Free the buffers (NULL-safe), leave qt zeroed. */
void pq_qtensor_free(pq_qtensor *qt);

/* Dequantize rows [row0, row0+n) into dst (n * cols floats): w = (q - zp) * scale. */
void pq_qtensor_dequantize_rows(const pq_qtensor *qt, int64_t row0, int64_t n, float *dst);

/* Finish the metrics from sum_sq/err_sq. */
void pq_qmetrics_finish(pq_qmetrics *m);

#endif
