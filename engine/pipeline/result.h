/* SPDX-License-Identifier: Apache-2.0 */
/* result.h - one work unit's result: its layout (written here once, for
 * whoever computes, sends, receives or writes it) and its buffers. */
#ifndef PQ_RESULT_H
#define PQ_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "pipeline/plan.h"

/* The bytes of each buffer of unit u's result, as the plan dictates. */
typedef struct pq_unit_layout {
    int64_t n_rows;
    int64_t row_bytes;         /* bytes of one row of codes (pq_qspec_row_bytes) */
    int64_t n_scales;          /* n_rows x groups, or 1 for per-tensor */
    size_t codes, scale, zero_point, row_sum_sq, row_err_sq, row_max_err;  /* 0: absent */
} pq_unit_layout;

void pq_unit_layout_of(const pq_plan *p, const pq_unit *u, pq_unit_layout *l);

/* The result of one work unit, in the exact layout of the output datasets. */
typedef struct pq_unit_result {
    int32_t unit_id;
    int64_t n_rows;
    int64_t code_bytes;        /* n_rows * row_bytes */
    void *codes;               /* NULL when another rank wrote them into the output */
    int64_t n_scales;
    float *scale;
    int32_t *zero_point;       /* NULL when symmetric */
    double *row_sum_sq, *row_err_sq;
    float *row_max_err;
    int64_t n_nonfinite;
} pq_unit_result;

/* Allocate r's buffers for unit u by layout l (codes only when with_codes).
 * Returns owned buffers (pq_unit_result_free); PQ_ERR_RESOURCE naming the
 * unit when memory runs out (r is then empty). */
pq_status pq_unit_result_alloc(pq_unit_result *r, const pq_unit *u, const pq_unit_layout *l, bool with_codes);

/* Free r's buffers and empty it. NULL is fine. */
void pq_unit_result_free(pq_unit_result *r);

/* The buffers of a result in the order they travel, with their names and
 * sizes: codes, scales, zero points, row sums, row errors, row max errors. */
#define PQ_RESULT_PARTS 6
typedef struct pq_result_part {
    const char *name;
    void **data;               /* where r keeps the buffer */
    size_t bytes;              /* 0: absent (zero points of a symmetric spec) */
} pq_result_part;

void pq_unit_result_parts(pq_unit_result *r, const pq_unit_layout *l, pq_result_part parts[PQ_RESULT_PARTS]);

/* SQNR of the unit in dB from its row sums (INFINITY without error). */
double pq_unit_result_sqnr(const pq_unit_result *r);

#endif
