/* SPDX-License-Identifier: Apache-2.0 */
/* qtensor.h - a quantized 2-D weight in memory, in the exact layout stored in
 * the HDF5 file, with its error metrics. */
#ifndef PQ_QTENSOR_H
#define PQ_QTENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "quant/qmetrics.h"
#include "quant/qspec.h"


typedef struct pq_qtensor {
    pq_qspec spec;
    int64_t rows, cols;       /* [out, in] */
    int64_t n_groups;         /* scales per row (1 unless group-wise) */
    /* 8-bit: int8 [rows, cols]; 4-bit: uint8 [rows, ceil(cols/2)] packed as
     * pq_ops.pack_i4 documents, each row packed on its own. */
    void *codes;
    /* When not NULL, codes lie inside this read-only mapping of a file
     * (pq_h5r_map_qtensor), unmapped by pq_qtensor_free, not freed. */
    void *codes_map;
    size_t codes_map_bytes;
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
