/* SPDX-License-Identifier: Apache-2.0 */
/* gptq.h - the GPTQ solve (Frantar et al., 2022) for one Linear, given the
 * Hessian of its input (quant/hessian.h).
 *
 * pq_gptq_prepare turns H into the upper Cholesky factor U of H^-1 (after
 * dead columns, the act-order permutation and damping); the factor is
 * read-only afterwards, so any number of threads and ranks quantize
 * different blocks of the Linear's rows with it. Each row's result depends on
 * the row and the factor only, never on the block it came in: the same bytes
 * for any split. Working precision: the factor is computed in fp64 (LAPACK)
 * and the solve runs in fp32 (as the reference does), its lazy block updates
 * by BLAS sgemm on fixed-shape row tiles. */
#ifndef PQ_GPTQ_H
#define PQ_GPTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "quant/gptq_factor.h"
#include "quant/qspec.h"
#include "quant/rtn.h"

typedef struct pq_gptq_opts {
    double damp;        /* damping: fraction of the mean diagonal added to it (0.01) */
    int block_size;     /* columns per lazy-update block (128), >= 1 */
    bool act_order;     /* quantize columns by descending diag(H); groups are then
                         * static (scales from the original weights) */
    int damp_retries;   /* not positive definite: retry this many times with 10x
                         * the damping each time (0: fail at once) */
} pq_gptq_opts;

#define PQ_GPTQ_OPTS_DEFAULT ((pq_gptq_opts){.damp = 0.01, .block_size = 128, .act_order = false, .damp_retries = 0})

typedef struct pq_gptq_factor pq_gptq_factor;

/* Factor H (d x d, row-major, symmetric; consumed: overwritten as scratch).
 * As the reference: dead columns (H_ii == 0) get H_ii = 1 (their weights are
 * zeroed by the quantize step); with act_order the columns are permuted by
 * descending H_ii (stable: ties keep the lower column first); then
 * H_ii += damp * mean(H_ii); U = upper Cholesky factor of H^-1, the
 * reference's cholesky / cholesky_inverse / cholesky(upper) computed as one
 * Cholesky of H with rows and columns reversed and one triangular inverse,
 * both blocked (quant/gptq_factor.h): the same factor mathematically, half
 * the flops. name
 * (copied) names the Linear in errors.
 * Errors: PQ_ERR_QUANTIZATION "Linear 'NAME': Hessian not positive definite
 * after damping D (fraction F of the mean diagonal M)..." after the allowed
 * retries; PQ_ERR_CALIBRATION for NaN/Inf in H; PQ_ERR_CONFIG for bad opts;
 * PQ_ERR_RESOURCE (also when the BLAS/LAPACK cannot be loaded). */
pq_status pq_gptq_prepare(double *H, int64_t d, const pq_gptq_opts *o, const char *name,
                          pq_gptq_factor **out);

/* pq_gptq_prepare shared by the ranks of c (collective; every rank passes
 * the same H and gets the whole factor) and n_threads threads per rank,
 * with the factorisation's block size nb (quant/gptq_factor.h):
 * pq_gptq_prepare is this with one process, PQ_GPTQ_FACTOR_NB and one
 * thread. The factor's bits depend on H, o and nb only. Errors as
 * pq_gptq_prepare's, the same on every rank, and the comm's. */
pq_status pq_gptq_prepare_with(double *H, int64_t d, const pq_gptq_opts *o, const char *name,
                               const pq_factor_comm *c, int nb, int n_threads, pq_gptq_factor **out);

/* NULL is a no-op. */
void pq_gptq_factor_free(pq_gptq_factor *f);

/* A factor as one flat image (its dimension, block size, act-order flag,
 * damping used, dead columns, permutation and U), so that the rank that
 * factored a Hessian can send it to the others bit for bit. */
size_t pq_gptq_factor_image_bytes(int64_t d);
void pq_gptq_factor_to_image(const pq_gptq_factor *f, void *image);
/* A factor from an image of pq_gptq_factor_image_bytes(d) bytes (borrowed);
 * name (copied) names the Linear in errors. PQ_ERR_PROTO for an image of
 * another dimension; PQ_ERR_RESOURCE. */
pq_status pq_gptq_factor_from_image(const void *image, int64_t d, const char *name, pq_gptq_factor **out);

int64_t pq_gptq_factor_dim(const pq_gptq_factor *f);
/* The damping fraction actually used (opts damp times 10^retries). */
double pq_gptq_factor_damp(const pq_gptq_factor *f);
/* Columns that never saw a non-zero input. */
int64_t pq_gptq_factor_n_dead(const pq_gptq_factor *f);

/* Quantize rows W[0..n_rows) (row-major, width d, borrowed; any contiguous
 * block of the Linear's rows) under spec into out, laid out exactly as
 * pq_rtn_quantize_rows writes it (codes, scales, zero points; the caller
 * allocates). Scales follow the qparams contract (pq_qparams, qspec.h):
 *   per-channel: from the row's original weights (dead columns included);
 *   group, no act-order: from the group's CURRENT (error-updated) weights when
 *     its first column is reached (the reference's find_params);
 *   group with act-order: static, from the original weights.
 * Dead columns quantize a weight of 0. The metrics (sum w^2, error^2,
 * max |err|, as rtn.h defines them) compare the dequantized weights with the
 * ORIGINAL ones. ops (borrowed) runs the column loop and the int4 packing;
 * every context gives the same bytes. n_threads: threads over row tiles (1 serial, 0 all cores).
 * Errors: PQ_ERR_CONFIG for per-tensor granularity (GPTQ needs per-channel or
 * group scales) or d != the factor's; PQ_ERR_QUANTIZATION "Linear 'NAME':
 * row R (column C) holds NaN/Inf"; PQ_ERR_RESOURCE. */
pq_status pq_gptq_quantize_rows(const pq_ops *ops, const pq_gptq_factor *f, const float *W, int64_t n_rows,
                                int64_t d, const pq_qspec *spec, int n_threads, pq_rtn_rows *out);

#endif
