/* SPDX-License-Identifier: Apache-2.0 */
/* rtn.h - round-to-nearest quantization of the rows of a 2-D fp32 weight,
 * with PyTorch MinMax qparams (qspec.h) and per-row error metrics.
 *
 * A work unit is a whole tensor or a block of rows. Every row is observed and
 * quantized on its own while it is hot in cache, so the bytes produced do not
 * depend on how rows are split across ranks or threads. */
#ifndef PQ_RTN_H
#define PQ_RTN_H

#include <stdint.h>

#include "base/pq_err.h"
#include "kernels/pq_kernels.h"
#include "quant/qspec.h"
#include "quant/qtensor.h"

/* Every call runs its kernels from the context ops (borrowed; the caller's
 * selection, kernels/pq_kernels.h). n_threads: threads over rows (OpenMP,
 * static schedule): 1 = serial, 0 = all cores; inside an OpenMP parallel
 * region always 1. The output is identical for any ops and n_threads. */

/* Range of the finite elements of w[0..n_elems) (pass 1 of per-tensor
 * granularity): *mn = +inf, *mx = -inf when none is finite; *n_nonfinite
 * counts NaN/Inf. Borrows w. PQ_ERR_INTERNAL for n_elems < 0. */
pq_status pq_rtn_tensor_range(const pq_ops *ops, const float *w, int64_t n_elems, float *mn, float *mx,
                              int64_t *n_nonfinite);

/* Output buffers of pq_rtn_quantize_rows, all allocated by the caller:
 *   codes:      n_rows * code_row_bytes (cols for 8-bit, ceil(cols/2) for 4-bit
 *               packed as pq_ops.pack_i4 documents, each row on its own)
 *   scale:      n_rows * n_groups floats, or 1 for per-tensor
 *   zero_point: same count as scale; NULL (unused) when symmetric
 *   row_sum_sq, row_err_sq, row_max_err: one entry per row: sum w^2, sum
 *               (w - w_hat)^2 and max |w - w_hat| with w_hat the fp32
 *               dequantized value, in double. The sums use a fixed order: 8
 *               partial sums by column mod 8, each in column order, combined
 *               as ((0+1)+(2+3))+((4+5)+(6+7)); so they depend only on the
 *               row. May all be NULL to skip the metric pass.
 *   n_nonfinite: set on return: NaN/Inf elements met (policy ZERO). */
typedef struct pq_rtn_rows {
    void *codes;
    float *scale;
    int32_t *zero_point;
    double *row_sum_sq;
    double *row_err_sq;
    float *row_max_err;
    int64_t n_nonfinite;
} pq_rtn_rows;

/* Quantize rows w[0..n_rows) of width cols (row-major, borrowed) under spec.
 * tensor_range: per-tensor granularity only, the whole tensor's finite
 * [min, max] (pq_rtn_tensor_range), so that blocks of rows of one tensor share
 * one scale; NULL for the other granularities, or for per-tensor when w is the
 * whole tensor (the range is then observed here). tensor_name and row_offset
 * (the index of w's first row in the tensor) only name things in errors.
 * Errors: PQ_ERR_QUANTIZATION for NaN/Inf under ERROR/KEEP_FLOAT ("tensor
 * 'NAME': row R (column C) holds NaN; ..."; the lowest such row is reported
 * whatever the thread count); PQ_ERR_CONFIG for a bad spec; PQ_ERR_RESOURCE. */
pq_status pq_rtn_quantize_rows(const pq_ops *ops, int n_threads, const float *w, int64_t n_rows,
                               int64_t cols, const pq_qspec *spec, pq_nan_policy pol,
                               const float tensor_range[2], const char *tensor_name,
                               int64_t row_offset, pq_rtn_rows *out);

/* Quantize a whole [rows, cols] tensor into *out (allocated here; the caller
 * frees it with pq_qtensor_free, also on failure it is left empty) and fill
 * out->metrics. */
pq_status pq_rtn_quantize(const pq_ops *ops, int n_threads, const float *w, int64_t rows,
                          int64_t cols, const pq_qspec *spec, pq_nan_policy pol,
                          const char *tensor_name, pq_qtensor *out);

/* Merge per-row metrics into m: sums rows sequentially in row order, so the
 * result is the same however rows were split across ranks and threads. */
void pq_qmetrics_from_rows(const double *row_sum_sq, const double *row_err_sq,
                           const float *row_max_err, int64_t n_rows, int64_t n_nonfinite,
                           pq_qmetrics *m);

#endif
