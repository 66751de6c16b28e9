/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_factor.c - see gptq_factor.h: a blocked Cholesky and triangular
 * inverse whose every block operation is one BLAS/LAPACK call. */
#include "quant/gptq_factor.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "model/blas.h"

static pq_status local_bcast(void *user, int owner, void *buf, size_t n)
{
    (void)user, (void)owner, (void)buf, (void)n;
    return PQ_OK;
}

static pq_status local_agree(void *user, pq_status local)
{
    (void)user;
    return local;
}

const pq_factor_comm pq_factor_comm_local = {.rank = 0, .n_ranks = 1, .bcast = local_bcast,
                                             .agree = local_agree};

/* block b: rows/columns [b*nb, b*nb + bsz) */
static inline int bsz(int64_t n, int nb, int64_t b)
{
    const int64_t r = n - b * nb;
    return (int)(r < nb ? r : nb);
}

#define AT(A, n, i, j) ((A) + (int64_t)(i) + (int64_t)(j) * (n))

static inline int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The blocks (i, k) of column block k, i in [k0, nbk), that rank r owns
 * (block row i mod N == r, or every i with from_all), packed one after
 * the other into buf (each column-major, its own leading dimension) by r
 * and broadcast to every rank, which unpacks them into A. */
static pq_status share_blocks(const pq_factor_comm *c, double *A, int64_t n, int nb, int64_t k, int64_t i_first,
                              double *buf)
{
    const int64_t nbk = (n + nb - 1) / nb, k0 = k * nb;
    const int bk = bsz(n, nb, k);
    pq_status st = PQ_OK;
    for (int r = 0; r < c->n_ranks && !st; r++) {
        int64_t len = 0;
        for (int64_t i = i_first; i < nbk; i++)
            if (i % c->n_ranks == r) len += (int64_t)bsz(n, nb, i) * bk;
        if (!len) continue;
        double *p = buf;
        if (c->rank == r)
            for (int64_t i = i_first; i < nbk; i++) {
                if (i % c->n_ranks != r) continue;
                const int bi = bsz(n, nb, i);
                for (int j = 0; j < bk; j++, p += bi) memcpy(p, AT(A, n, i * nb, k0 + j), (size_t)bi * sizeof *p);
            }
        st = c->bcast(c->user, r, buf, (size_t)len * sizeof *buf);
        if (st || c->rank == r) continue;
        for (int64_t i = i_first; i < nbk; i++) {
            if (i % c->n_ranks != r) continue;
            const int bi = bsz(n, nb, i);
            for (int j = 0; j < bk; j++, p += bi) memcpy(AT(A, n, i * nb, k0 + j), p, (size_t)bi * sizeof *p);
        }
    }
    return st;
}

/* Right-looking blocked Cholesky (lower), block rows owned by i mod N. */
static pq_status cholesky(double *A, int64_t n, int nb, const pq_factor_comm *c, int nt, double *buf,
                          int64_t *bad_col)
{
    const int64_t nbk = (n + nb - 1) / nb;
    const int N = c->n_ranks, me = c->rank;
    int64_t *pair_i = malloc((size_t)(nbk * (nbk + 1) / 2 + 1) * sizeof *pair_i);
    int64_t *pair_j = malloc((size_t)(nbk * (nbk + 1) / 2 + 1) * sizeof *pair_j);
    pq_status st = c->agree(c->user, pair_i && pair_j ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory"));
    int fail = 0;
    for (int64_t k = 0; k < nbk && !st; k++) {
        const int64_t k0 = k * nb;
        const int bk = bsz(n, nb, k), ok = (int)(k % N);
        /* the pivot's status travels with its info (-1: the call failed),
         * so the step needs no agreement of its own */
        int info = 0;
        if (me == ok && pq_dpotrf('L', bk, AT(A, n, k0, k0), (int)n, &info)) info = -1;
        int32_t iv = info;
        if (N > 1 && (st = c->bcast(c->user, ok, &iv, sizeof iv))) break;
        if (iv < 0) {
            st = pq_err(PQ_ERR_RESOURCE, "LAPACK's dpotrf failed in the GPTQ factor");
            break;
        }
        if (iv) {
            *bad_col = k0 + iv;
            break;
        }
        if (N > 1 && (st = share_blocks(c, A, n, nb, k, k, buf))) break;
        /* the panel: own block rows below k */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
        for (int64_t i = k + 1; i < nbk; i++) {
            if (i % N != me) continue;
            if (pq_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, bsz(n, nb, i), bk, 1.0,
                         AT(A, n, k0, k0), (int)n, AT(A, n, i * nb, k0), (int)n))
            {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                fail = 1;
            }
        }
        if (N > 1 && (st = share_blocks(c, A, n, nb, k, k + 1, buf))) break;
        /* the trailing matrix: own blocks (i, j), k < j <= i */
        int64_t np = 0;
        for (int64_t i = k + 1; i < nbk; i++)
            if (i % N == me)
                for (int64_t j = k + 1; j <= i; j++) pair_i[np] = i, pair_j[np++] = j;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
        for (int64_t q = 0; q < np; q++) {
            const int64_t i = pair_i[q], j = pair_j[q];
            const int bi = bsz(n, nb, i), bj = bsz(n, nb, j);
            pq_status e;
            if (i == j)
                e = pq_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, bi, bk, -1.0, AT(A, n, i * nb, k0), (int)n,
                             1.0, AT(A, n, i * nb, i * nb), (int)n);
            else
                e = pq_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, bi, bj, bk, -1.0, AT(A, n, i * nb, k0),
                             (int)n, AT(A, n, j * nb, k0), (int)n, 1.0, AT(A, n, i * nb, j * nb), (int)n);
            if (e)
            {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                fail = 1;
            }
        }
    }
    /* the BLAS was loaded (and agreed) before: a failed call cannot happen,
     * and is reported once at the end */
    if (!st && fail) st = pq_err(PQ_ERR_RESOURCE, "a BLAS call failed in the GPTQ factor");
    st = c->agree(c->user, st);
    free(pair_i);
    free(pair_j);
    return st;
}

/* Column block j of X = L^-1 into X (floats), W an fp64 work panel of
 * (n - j*nb) x nb (leading dimension m). */
static pq_status inverse_column(const double *A, int64_t n, int nb, int64_t j, double *W, float *X)
{
    const int64_t nbk = (n + nb - 1) / nb, j0 = j * nb, m = n - j0;
    const int bj = bsz(n, nb, j);
    int info = 0;
    for (int c = 0; c < bj; c++) {
        memset(W + c * m, 0, (size_t)c * sizeof *W);
        memcpy(W + c * m + c, AT(A, n, j0 + c, j0 + c), (size_t)(bj - c) * sizeof *W);
    }
    pq_status st = pq_dtrtri('L', 'N', bj, W, (int)m, &info);
    if (!st && info) st = pq_err(PQ_ERR_INTERNAL, "a zero pivot in the GPTQ factor's inverse");
    for (int64_t i = j + 1; i < nbk && !st; i++) {
        const int64_t i0 = i * nb;
        const int bi = bsz(n, nb, i);
        double *Wi = W + (i0 - j0);
        /* T = L(i, j..i-1) X(j..i-1, j): one call, its inner dimension the
         * blocks j..i-1 */
        st = pq_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, bi, bj, (int)(i0 - j0), 1.0, AT(A, n, i0, j0),
                      (int)n, W, (int)m, 0.0, Wi, (int)m);
        if (!st)
            st = pq_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, bi, bj, -1.0,
                          AT(A, n, i0, i0), (int)n, Wi, (int)m);
    }
    for (int c = 0; c < bj && !st; c++) {
        float *xc = X + (j0 + c) * n;
        memset(xc, 0, (size_t)(j0 + c) * sizeof *xc);
        for (int64_t r = c; r < m; r++) xc[j0 + r] = (float)W[c * m + r];
    }
    return st;
}

/* X = L^-1 by block columns, each on the rank the greedy share gives it
 * (cost ~ its blocks below the diagonal squared: largest first to the
 * least-loaded rank, the same on every rank), then every column block
 * broadcast from its rank. */
static pq_status inverse(const double *A, int64_t n, int nb, const pq_factor_comm *c, int nt, float *X)
{
    const int64_t nbk = (n + nb - 1) / nb;
    const int N = c->n_ranks;
    int *owner = malloc((size_t)nbk * sizeof *owner);
    double *load = calloc((size_t)N, sizeof *load);
    int64_t *mine = malloc((size_t)nbk * sizeof *mine);
    double *W = malloc((size_t)nt * (size_t)n * (size_t)nb * sizeof *W);
    pq_status st = PQ_OK;
    if (!owner || !load || !mine || !W) st = pq_err(PQ_ERR_RESOURCE, "out of memory for the GPTQ factor's inverse");
    if ((st = c->agree(c->user, st))) goto done;
    int64_t n_mine = 0;
    for (int64_t j = 0; j < nbk; j++) {
        int best = 0;
        for (int r = 1; r < N; r++)
            if (load[r] < load[best]) best = r;
        owner[j] = best;
        load[best] += (double)(nbk - j) * (double)(nbk - j);
        if (best == c->rank) mine[n_mine++] = j;
    }
    int fail = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
    for (int64_t q = 0; q < n_mine; q++)
        if (inverse_column(A, n, nb, mine[q], W + (size_t)thread_id() * (size_t)n * (size_t)nb, X))
        {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            fail = 1;
        }
    if (fail) st = pq_err(PQ_ERR_RESOURCE, "the BLAS/LAPACK could not be loaded for the GPTQ factor's inverse");
    if ((st = c->agree(c->user, st))) goto done;
    for (int64_t j = 0; j < nbk && N > 1 && !st; j++)
        st = c->bcast(c->user, owner[j], X + j * nb * n, (size_t)bsz(n, nb, j) * (size_t)n * sizeof *X);
    st = c->agree(c->user, st);
done:
    free(owner);
    free(load);
    free(mine);
    free(W);
    return st;
}

pq_status pq_gptq_chol_inv(double *A, int64_t n, int nb, const pq_factor_comm *c, int n_threads, float *X,
                           int64_t *bad_col)
{
    *bad_col = 0;
    if (n < 1 || nb < 1 || n_threads < 1)
        return pq_err(PQ_ERR_INTERNAL, "bad GPTQ factor shape (n %lld, block %d, threads %d)", (long long)n, nb,
                      n_threads);
    /* the BLAS and LAPACK present (a call of order 0 does nothing else) */
    double one = 1.0;
    int info0 = 0;
    pq_status st = pq_blas_load();
    if (!st) st = pq_dpotrf('L', 0, &one, 1, &info0);
    if (!st) st = pq_dtrtri('L', 'N', 0, &one, 1, &info0);
    double *buf = NULL;
    if (!st && c->n_ranks > 1 && !(buf = malloc((size_t)n * (size_t)nb * sizeof *buf)))
        st = pq_err(PQ_ERR_RESOURCE, "out of memory for the GPTQ factor");
    if ((st = c->agree(c->user, st))) goto done;
    /* one BLAS thread per call: the bits of a threaded call depend on the
     * thread count; the threads here run independent blocks instead */
    const int nt_blas = pq_blas_get_threads();
    if (nt_blas != 1) pq_blas_set_threads(1);
    st = cholesky(A, n, nb, c, n_threads, buf, bad_col);
    if (!st && !*bad_col) st = inverse(A, n, nb, c, n_threads, X);
    if (nt_blas != 1) pq_blas_set_threads(nt_blas);
done:
    free(buf);
    return st;
}
