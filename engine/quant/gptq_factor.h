/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_factor.h - the dense linear algebra of the GPTQ factor (quant/gptq.h),
 * blocked so that any number of ranks and threads share it and get the same
 * bits.
 *
 * Given A (n x n, column-major, the lower triangle read; every rank holds
 * the same A), the lower Cholesky factor L (L L^T = A) and X = L^-1 are
 * computed block by block with a FIXED block size nb, every block operation
 * one LAPACK/BLAS call on one BLAS thread:
 *   Cholesky, right-looking, for each block column k: dpotrf on A_kk; dtrsm
 *     on the panel A_ik (i > k); dsyrk on A_ii and dgemm on A_ij (k < j < i)
 *     for the trailing matrix;
 *   inverse, by block columns j (each independent of the others): dtrtri on
 *     L_jj; for i > j, T = sum_{k=j..i-1} L_ik X_kj as one dgemm (the row
 *     block of L times the column block of X above row block i), then
 *     X_ij = -L_ii^-1 T (dtrsm).
 * A block's value is a function of the blocks it is computed from and the
 * shapes, and the updates of a block come in a fixed order, so the result
 * does not depend on which rank or thread ran which block: it is what one
 * process computes with the same nb. Ranks own the Cholesky's block rows
 * (row i by rank i mod N) and the inverse's block columns (by cost, greedy);
 * the blocks a step needs travel by the comm's broadcast.
 *
 * The engine never calls MPI: a comm is a set of callbacks (worker/ gives
 * the MPI one; pq_factor_comm_local is the one-process comm). */
#ifndef PQ_GPTQ_FACTOR_H
#define PQ_GPTQ_FACTOR_H

#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

/* The block size of every factorisation Proteus writes (whatever the rank
 * or thread count). */
#define PQ_GPTQ_FACTOR_NB 256

typedef struct pq_factor_comm {
    int rank, n_ranks;
    /* n bytes at buf of rank `owner` reach every rank's buf */
    pq_status (*bcast)(void *user, int owner, void *buf, size_t n);
    /* the status of the lowest failing rank, on every rank */
    pq_status (*agree)(void *user, pq_status local);
    void *user;
} pq_factor_comm;

/* rank 0 of 1: the callbacks are no-ops */
extern const pq_factor_comm pq_factor_comm_local;

/* L and X = L^-1 of A as above, on every rank of c (collective).
 * A: n x n column-major (lda n), its lower triangle overwritten by L (the
 * strict upper triangle untouched). X: n x n floats, column-major, written
 * whole (X(r, c) = 0 for r < c) on every rank. nb >= 1; n_threads >= 1
 * threads per rank run independent blocks at once.
 * *bad_col: 0, or the 1-based column at which A is not positive definite
 * (the Cholesky's pivot, counted as dpotrf counts it; X untouched); the
 * same on every rank. Errors (the same on every rank through agree):
 * PQ_ERR_RESOURCE (memory, or the BLAS/LAPACK cannot be loaded), the
 * comm's. */
pq_status pq_gptq_chol_inv(double *A, int64_t n, int nb, const pq_factor_comm *c, int n_threads, float *X,
                           int64_t *bad_col);

#endif
