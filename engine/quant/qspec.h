/* SPDX-License-Identifier: Apache-2.0 */
/* qspec.h - what a quantized tensor is: bits, granularity, symmetry, and the
 * integer range and qparams contract (docs/FORMAT.md, "Numeric contract"). */
#ifndef PQ_QSPEC_H
#define PQ_QSPEC_H

#include <stdbool.h>
#include <stdint.h>

typedef enum pq_granularity {
    PQ_GRAN_TENSOR = 0,  /* one scale for the tensor */
    PQ_GRAN_CHANNEL,     /* one scale per output row */
    PQ_GRAN_GROUP        /* one scale per (row, group of group_size input columns) */
} pq_granularity;

typedef struct pq_qspec {
    int bits;                /* 8 or 4 */
    pq_granularity gran;
    int group_size;          /* PQ_GRAN_GROUP only: 32..256 */
    bool symmetric;
} pq_qspec;

/* What to do with NaN/+-Inf in a weight.
 * ERROR: fail with PQ_ERR_QUANTIZATION naming tensor, row and column.
 * ZERO: non-finite values count as 0 for the statistics and quantize to the
 *       code of 0 (the zero point); they contribute 0 to the metrics.
 * KEEP_FLOAT: the caller keeps such tensors in float; rtn treats it as ERROR. */
typedef enum pq_nan_policy { PQ_NAN_ERROR = 0, PQ_NAN_ZERO, PQ_NAN_KEEP_FLOAT } pq_nan_policy;

/* Integer range: symmetric int8 [-127,127], asymmetric int8 [-128,127],
 * symmetric int4 [-7,7], asymmetric int4 [-8,7]. */
void pq_qspec_range(const pq_qspec *s, int32_t *qmin, int32_t *qmax);

/* Number of scales along the columns: 1 (tensor/channel) or ceil(cols/gs). */
int64_t pq_qspec_groups(const pq_qspec *s, int64_t cols);

/* Bytes of one row of cols codes as stored: 8-bit one byte per code, 4-bit
 * two codes per byte (low nibble first), each row packed on its own. */
int64_t pq_qspec_row_bytes(const pq_qspec *s, int64_t cols);

/* Scales (and zero points) of rows x cols: 1 per tensor, else rows x groups. */
int64_t pq_qspec_n_scales(const pq_qspec *s, int64_t rows, int64_t cols);

/* The smallest scale: torch.finfo(float32).eps, as PyTorch's observers use. */
#define PQ_SCALE_EPS 1.1920928955078125e-07f

/* qparams from an observed finite range [mn, mx] (mn <= mx), exactly as
 * torch.ao MinMaxObserver._calculate_qparams does in fp32:
 *   min_neg = min(mn, 0), max_pos = max(mx, 0)           (zero representable)
 *   symmetric:  scale = max(max(-min_neg, max_pos) / ((qmax-qmin)/2), eps), zp = 0
 *   asymmetric: scale = max((max_pos - min_neg) / (qmax-qmin), eps),
 *               zp = clamp(qmin - nearbyint(min_neg / scale), qmin, qmax)
 * A range with no finite element (mn=+inf, mx=-inf) gives scale 1, zp 0. */
void pq_qparams(float mn, float mx, int32_t qmin, int32_t qmax, bool symmetric,
                float *scale, int32_t *zp);

const char *pq_granularity_name(pq_granularity g);

#endif
