/* SPDX-License-Identifier: Apache-2.0 */
/* blas.h - OpenBLAS's SGEMM, loaded by the commands that run the model.
 *
 * `proteus quantize` never multiplies matrices, and linking OpenBLAS would
 * cost each of its ranks ~4 ms at start (pq_dl.h). The pthread build of
 * OpenBLAS also starts one worker per core when it is loaded, and an idle
 * worker spins (sched_yield) for 2^28 cycles, about 70 ms, before it sleeps:
 * on a node with several ranks they would compete with the ranks' MPI
 * messages (measured with 2 ranks on 2 cores: 40-50 ms of each run's
 * start-up). pq_blas_load therefore stops that pool right after loading; the
 * first threaded call starts it again (the library does the same around
 * fork()). */
#ifndef PQ_BLAS_H
#define PQ_BLAS_H

#include <cblas.h>

#include "base/pq_err.h"

/* Load the BLAS (the soname the build was configured with, meson option
 * blas_soname). Every constructor of something that calls pq_sgemm calls it
 * first, so that a missing library fails there; cheap after the first call.
 * PQ_ERR_RESOURCE when it cannot be loaded, the detail naming the library
 * and the package to install; every later call gives the same. */
pq_status pq_blas_load(void);

/* cblas_sgemm. Loads the BLAS first if nothing has (pq_blas_load's error
 * when that fails, c untouched); always PQ_OK after a successful load. */
pq_status pq_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n,
                   int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                   int ldc) __attribute__((warn_unused_result));

/* cblas_dsyrk, as pq_sgemm (GPTQ Hessians, quant/hessian.c). */
pq_status pq_dsyrk(enum CBLAS_ORDER order, enum CBLAS_UPLO uplo, enum CBLAS_TRANSPOSE trans, int n, int k,
                   double alpha, const double *a, int lda, double beta, double *c, int ldc)
    __attribute__((warn_unused_result));

/* cblas_dgemm and cblas_dtrsm, as pq_sgemm (the blocked GPTQ factor,
 * quant/gptq_factor.c). */
pq_status pq_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n,
                   int k, double alpha, const double *a, int lda, const double *b, int ldb, double beta,
                   double *c, int ldc) __attribute__((warn_unused_result));
pq_status pq_dtrsm(enum CBLAS_ORDER order, enum CBLAS_SIDE side, enum CBLAS_UPLO uplo, enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_DIAG diag, int m, int n, double alpha, const double *a, int lda, double *b, int ldb)
    __attribute__((warn_unused_result));

/* LAPACK dpotrf / dpotri (column-major, uplo 'U' or 'L'), from the same
 * library (OpenBLAS ships LAPACK): *info as LAPACK sets it (> 0: not
 * positive definite / singular at that 1-based column). The load error as
 * pq_sgemm's; PQ_ERR_RESOURCE when the library has no LAPACK. */
pq_status pq_dpotrf(char uplo, int n, double *a, int lda, int *info) __attribute__((warn_unused_result));
pq_status pq_dpotri(char uplo, int n, double *a, int lda, int *info) __attribute__((warn_unused_result));
/* LAPACK dtrtri (triangular inverse in place; diag 'N' or 'U'), as
 * pq_dpotrf: *info > 0 when that 1-based diagonal element is zero. */
pq_status pq_dtrtri(char uplo, char diag, int n, double *a, int lda, int *info)
    __attribute__((warn_unused_result));

/* The kernels OpenBLAS runs (openblas_get_corename: "SkylakeX", "Haswell",
 * ...); "unknown" before a load or with a BLAS that does not say. On a CPU
 * with AVX-512 the load sets OPENBLAS_CORETYPE=SkylakeX unless the
 * environment already names a core (blas.c says why). */
const char *pq_blas_core(void);

/* openblas_get_num_threads; 1 with a BLAS that has no such call or before
 * the BLAS is loaded. */
int pq_blas_get_threads(void);

/* openblas_set_num_threads; a no-op with a BLAS that has no such call or
 * before the BLAS is loaded. */
void pq_blas_set_threads(int n);

#endif
