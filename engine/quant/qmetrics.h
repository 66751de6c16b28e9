/* SPDX-License-Identifier: Apache-2.0 */
/* qmetrics.h - how far a quantized tensor is from its float weights. */
#ifndef PQ_QMETRICS_H
#define PQ_QMETRICS_H

#include <stdint.h>

typedef struct pq_qmetrics {
    double sqnr_db;      /* 10 log10(sum w^2 / sum (w - w_hat)^2); +inf when exact */
    double rel_l2;       /* ||w - w_hat|| / ||w|| (0 when w is all zero) */
    double max_abs_err;  /* max |w - w_hat| */
    double sum_sq;       /* sum w^2 (so partial metrics can be merged) */
    double err_sq;       /* sum (w - w_hat)^2 */
    int64_t n_nonfinite; /* NaN/Inf elements met (handled by the nan policy) */
} pq_qmetrics;

#endif
