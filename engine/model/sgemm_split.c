/* SPDX-License-Identifier: Apache-2.0 */
/* sgemm_split.c - see sgemm_split.h. */
#include "model/sgemm_split.h"

#include <string.h>

#include "pq_config.h"
#include "model/blas.h"

pq_status pq_sgemm_nt_split(const float *x, int64_t m, int64_t k, const float *w, int64_t n, float *y,
                            pq_row_segs rows, int n_threads)
{
    pq_status st = pq_blas_load();
    if (st) return st;
    if (m <= 0 || n <= 0) return PQ_OK;
    const int64_t whole[2] = {0, m};
    const int64_t *seg = rows.seg ? rows.seg : whole, n_seg = rows.seg ? rows.n_seg : 1;
    int64_t blocks = (n + PQ_SGEMM_SPLIT_COLS - 1) / PQ_SGEMM_SPLIT_COLS;
    int before = pq_blas_get_threads();
    pq_blas_set_threads(1);
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads > 0 ? n_threads : 1)
#endif
    for (int64_t p = 0; p < n_seg * blocks; p++) {
        int64_t s = p / blocks, b = p % blocks, r0 = seg[s], mr = seg[s + 1] - r0;
        int64_t c0 = b * PQ_SGEMM_SPLIT_COLS, nc = n - c0 < PQ_SGEMM_SPLIT_COLS ? n - c0 : PQ_SGEMM_SPLIT_COLS;
        /* loaded above: pq_sgemm cannot fail */
        if (mr > 0)
            (void)!pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mr, (int)nc, (int)k, 1.0f, x + r0 * k,
                            (int)k, w + c0 * k, (int)k, 1.0f, y + r0 * n + c0, (int)n);
    }
    pq_blas_set_threads(before);
    return PQ_OK;
}

pq_status pq_linear_f32(const float *x, int64_t m, int64_t k, const float *w, const float *bias, int64_t n,
                        float *y, pq_row_segs rows, int n_threads)
{
    for (int64_t i = 0; i < m; i++) {
        if (bias) memcpy(y + i * n, bias, (size_t)n * sizeof(float));
        else memset(y + i * n, 0, (size_t)n * sizeof(float));
    }
    return pq_sgemm_nt_split(x, m, k, w, n, y, rows, n_threads);
}
