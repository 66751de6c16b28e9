/* SPDX-License-Identifier: Apache-2.0 */
/* linear_grad.c - Linear forward and backward through OpenBLAS SGEMM. */
#include "train/linear_grad.h"

#include <string.h>

#include "model/blas.h"
#include "pq_config.h"

/* Output rows per SGEMM call. Each block runs on one BLAS thread and the
 * blocks do not depend on the thread count, so neither do the bits:
 * OpenBLAS picks its kernel (and with it the summation order) from the
 * shape and its own thread count. */
#define BLOCK_ROWS 64

/* C[M, N] = alpha op(A) op(B) + beta C, row-major, as blocks of BLOCK_ROWS
 * rows of C side by side over n_threads. */
static pq_status gemm_rows(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                           int64_t ldc, int n_threads)
{
    int64_t nb = (M + BLOCK_ROWS - 1) / BLOCK_ROWS;
    _Atomic int failed = 0;
    (void)n_threads;
    pq_blas_set_threads(1);
#if PQ_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n_threads > 1)
#endif
    for (int64_t i = 0; i < nb; i++) {
        int64_t r0 = i * BLOCK_ROWS, m = M - r0 < BLOCK_ROWS ? M - r0 : BLOCK_ROWS;
        const float *a = ta == CblasNoTrans ? A + r0 * lda : A + r0;
        if (pq_sgemm(CblasRowMajor, ta, tb, (int)m, (int)N, (int)K, 1.0f, a, (int)lda, B, (int)ldb, beta,
                     C + r0 * ldc, (int)ldc) != PQ_OK)
            failed = 1;
    }
    pq_blas_set_threads(n_threads);
    return failed ? pq_blas_load() : PQ_OK;
}

pq_status pq_linear_fwd(const float *x, int64_t n, int64_t in, const float *W, const float *b, int64_t out,
                        float *y, int n_threads)
{
    /* bias first, then accumulate the product, as torch's addmm */
    for (int64_t i = 0; i < n; i++) {
        if (b) memcpy(y + i * out, b, (size_t)out * sizeof(float));
        else memset(y + i * out, 0, (size_t)out * sizeof(float));
    }
    return gemm_rows(CblasNoTrans, CblasTrans, n, out, in, x, in, W, in, 1.0f, y, out, n_threads);
}

pq_status pq_linear_bwd(const float *dy, const float *x, int64_t n, int64_t in, const float *W, int64_t out,
                        float *dW, float *db, float *dx, int accumulate, int n_threads)
{
    pq_status st = gemm_rows(CblasTrans, CblasNoTrans, out, in, n, dy, out, x, in, 1.0f, dW, in, n_threads);
    if (st != PQ_OK) return st;
    if (db)
        for (int64_t r = 0; r < n; r++) {
            const float *dyr = dy + r * out;
            for (int64_t j = 0; j < out; j++) db[j] += dyr[j];
        }
    if (!dx) return PQ_OK;
    return gemm_rows(CblasNoTrans, CblasNoTrans, n, in, out, dy, out, W, in, accumulate ? 1.0f : 0.0f, dx, in,
                     n_threads);
}
