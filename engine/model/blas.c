/* SPDX-License-Identifier: Apache-2.0 */
/* blas.c - see blas.h. */
#include "model/blas.h"

#include <stdbool.h>
#include <stdlib.h>

#include "pq_config.h"
#include "base/log.h"
#include "base/pq_dl.h"

/* A test build names a library that is not there (tests/model/meson.build). */
#ifndef PQ_TEST_BLAS_SONAME
#define PQ_TEST_BLAS_SONAME PQ_BLAS_SONAME
#endif

static __typeof__(cblas_sgemm) *sgemm_fn;
static __typeof__(cblas_dsyrk) *dsyrk_fn;
static __typeof__(cblas_dgemm) *dgemm_fn;
static __typeof__(cblas_dtrsm) *dtrsm_fn;
typedef void lapack_potr_fn(const char *uplo, const int *n, double *a, const int *lda, int *info);
static lapack_potr_fn *dpotrf_fn, *dpotri_fn;
typedef void lapack_trtri_fn(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
static lapack_trtri_fn *dtrtri_fn;
static void (*set_threads_fn)(int);
static int (*get_threads_fn)(void);
/* the pthread server's fork handler; absent in the OpenMP and serial builds */
static int (*pool_shutdown_fn)(void);
static char *(*corename_fn)(void);
static bool core_set_here;

/* OpenBLAS picks its kernels from the CPU's model number, read once when the
 * library is loaded, and falls back to its SSE3 ("Prescott") kernels for a
 * model its release does not know: Debian 12's 0.3.21 on an Emerald Rapids
 * Xeon, where the fp32 products then run 3.3x slower (a t6 GPTQ: 10.7 s
 * against 3.3 s). Every AVX-512 target of OpenBLAS (SkylakeX, Cooperlake,
 * SapphireRapids, and Zen 4 from 0.3.22) runs the SkylakeX SGEMM and DGEMM
 * kernels, so a CPU with the AVX-512 subsets they use gets those; a user's
 * own OPENBLAS_CORETYPE is left as it is. */
static void choose_core(void)
{
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0)
        core_set_here = true;
}

static void loaded(void)
{
    if (pool_shutdown_fn) pool_shutdown_fn();
    PQ_LOG_DEBUG("BLAS: %s, kernels %s%s", PQ_TEST_BLAS_SONAME, pq_blas_core(),
                 core_set_here ? " (OPENBLAS_CORETYPE=SkylakeX: this CPU has AVX-512)" : "");
}

static const pq_dl_sym syms[] = {
    {"cblas_sgemm", (void **)&sgemm_fn, false},
    {"cblas_dsyrk", (void **)&dsyrk_fn, false},
    {"cblas_dgemm", (void **)&dgemm_fn, false},
    {"cblas_dtrsm", (void **)&dtrsm_fn, false},
    {"dpotrf_", (void **)&dpotrf_fn, true},
    {"dpotri_", (void **)&dpotri_fn, true},
    {"dtrtri_", (void **)&dtrtri_fn, true},
    {"openblas_set_num_threads", (void **)&set_threads_fn, true},
    {"openblas_get_num_threads", (void **)&get_threads_fn, true},
    {"blas_thread_shutdown_", (void **)&pool_shutdown_fn, true},
    {"openblas_get_corename", (void **)&corename_fn, true},
};

static pq_dl_lib lib = {.soname = PQ_TEST_BLAS_SONAME, .package = "libopenblas0", .kind = PQ_ERR_RESOURCE,
                        .syms = syms, .n_syms = (int)(sizeof syms / sizeof syms[0]),
                        .before = choose_core, .loaded = loaded};

pq_status pq_blas_load(void)
{
    return pq_dl_load(&lib);
}

pq_status pq_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n,
                   int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                   int ldc)
{
    if (!sgemm_fn) {
        pq_status st = pq_blas_load();
        if (st) return st;
    }
    sgemm_fn(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return PQ_OK;
}

pq_status pq_dsyrk(enum CBLAS_ORDER order, enum CBLAS_UPLO uplo, enum CBLAS_TRANSPOSE trans, int n, int k,
                   double alpha, const double *a, int lda, double beta, double *c, int ldc)
{
    if (!dsyrk_fn) {
        pq_status st = pq_blas_load();
        if (st) return st;
    }
    dsyrk_fn(order, uplo, trans, n, k, alpha, a, lda, beta, c, ldc);
    return PQ_OK;
}

pq_status pq_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n,
                   int k, double alpha, const double *a, int lda, const double *b, int ldb, double beta,
                   double *c, int ldc)
{
    if (!dgemm_fn) {
        pq_status st = pq_blas_load();
        if (st) return st;
    }
    dgemm_fn(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return PQ_OK;
}

pq_status pq_dtrsm(enum CBLAS_ORDER order, enum CBLAS_SIDE side, enum CBLAS_UPLO uplo, enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_DIAG diag, int m, int n, double alpha, const double *a, int lda, double *b, int ldb)
{
    if (!dtrsm_fn) {
        pq_status st = pq_blas_load();
        if (st) return st;
    }
    dtrsm_fn(order, side, uplo, ta, diag, m, n, alpha, a, lda, b, ldb);
    return PQ_OK;
}

static pq_status lapack_potr(lapack_potr_fn **fn, const char *what, char uplo, int n, double *a, int lda,
                             int *info)
{
    if (!sgemm_fn) {
        pq_status st = pq_blas_load();
        if (st) return st;
    }
    if (!*fn)
        return pq_err(PQ_ERR_RESOURCE, "%s has no LAPACK (%s): install libopenblas0 (which ships it)",
                      PQ_TEST_BLAS_SONAME, what);
    (*fn)(&uplo, &n, a, &lda, info);
    return PQ_OK;
}

pq_status pq_dpotrf(char uplo, int n, double *a, int lda, int *info)
{
    return lapack_potr(&dpotrf_fn, "dpotrf_", uplo, n, a, lda, info);
}

pq_status pq_dpotri(char uplo, int n, double *a, int lda, int *info)
{
    return lapack_potr(&dpotri_fn, "dpotri_", uplo, n, a, lda, info);
}

pq_status pq_dtrtri(char uplo, char diag, int n, double *a, int lda, int *info)
{
    if (!sgemm_fn) {
        pq_status st = pq_blas_load();
        if (st) return st;
    }
    if (!dtrtri_fn)
        return pq_err(PQ_ERR_RESOURCE, "%s has no LAPACK (%s): install libopenblas0 (which ships it)",
                      PQ_TEST_BLAS_SONAME, "dtrtri_");
    dtrtri_fn(&uplo, &diag, &n, a, &lda, info);
    return PQ_OK;
}

const char *pq_blas_core(void)
{
    const char *c = corename_fn ? corename_fn() : NULL;
    return c ? c : "unknown";
}

int pq_blas_get_threads(void)
{
    return get_threads_fn ? get_threads_fn() : 1;
}

void pq_blas_set_threads(int n)
{
    if (set_threads_fn) set_threads_fn(n);
}
