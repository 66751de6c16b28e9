/* SPDX-License-Identifier: Apache-2.0 */
/* sgemm_split.h - the fp32 linear product on several threads, the same
 * bytes for any number of them.
 *
 * OpenBLAS's own threading cuts a product by the thread count, and some of
 * its kernels then sum in another order: those of the Prescott and Haswell
 * targets, which it also picks on CPUs it does not know (OpenBLAS 0.3.21 on
 * an Emerald Rapids Xeon runs the Prescott ones), and some sum a row in
 * another order depending on where it falls among the rows of the call (the
 * Prescott and Haswell ones again). Here the output columns are cut in
 * blocks of PQ_SGEMM_SPLIT_COLS whatever the thread count, the rows in the
 * caller's segments (the sequences of a batch), and each piece is one
 * single-threaded SGEMM: a token's outputs depend on its own sequence only,
 * never on the threads nor on the other sequences of its batch. */
#ifndef PQ_SGEMM_SPLIT_H
#define PQ_SGEMM_SPLIT_H

#include <stdint.h>

#include "base/pq_err.h"

#define PQ_SGEMM_SPLIT_COLS 128

/* Row segments: seg[0] = 0 < seg[1] < ... < seg[n_seg] = m; seg NULL: one,
 * all m rows. */
typedef struct pq_row_segs {
    const int64_t *seg;
    int64_t n_seg;
} pq_row_segs;

/* y[m, n] += x[m, k] w[n, k]^T (row-major, dense rows), one SGEMM per row
 * segment and column block, shared out over n_threads OpenMP threads (< 1:
 * one). Loads the BLAS first (pq_blas_load's error, y untouched). */
pq_status pq_sgemm_nt_split(const float *x, int64_t m, int64_t k, const float *w, int64_t n, float *y,
                            pq_row_segs rows, int n_threads) __attribute__((warn_unused_result));

/* The fp32 Linear: y[m, n] = bias (NULL: zeros), each row set first as
 * torch's addmm adds it, then += x[m, k] w[n, k]^T by pq_sgemm_nt_split. */
pq_status pq_linear_f32(const float *x, int64_t m, int64_t k, const float *w, const float *bias, int64_t n,
                        float *y, pq_row_segs rows, int n_threads) __attribute__((warn_unused_result));

#endif
