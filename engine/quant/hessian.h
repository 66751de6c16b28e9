/* SPDX-License-Identifier: Apache-2.0 */
/* hessian.h - exactly reproducible GPTQ Hessian accumulator for one input
 * site: H = 2/n * sum_t x_t x_t^T over the calibration tokens.
 *
 * Why exact: the bytes Proteus writes must not depend on how many ranks or
 * threads ran it, and a floating-point sum depends on the order of its terms.
 * So each sequence's partial X^T X is computed in fp64, tile by tile on a
 * fixed grid of PQ_HESSIAN_TILE x PQ_HESSIAN_TILE tiles of the upper
 * triangle (dsyrk on a diagonal tile, dgemm off it, on the fp64 copy of the
 * tile's columns of the sequence's rows, one BLAS thread: a partial entry's
 * summation order is then a function of the tile and sequence shapes
 * only), and each entry of that partial is rounded once to a 128-bit
 * two's-complement integer with 63 fraction bits (Q64.63). The accumulator
 * adds those integers: integer addition is exact, associative and
 * commutative, so the sum does not depend on how sequences are split among
 * calls, threads or ranks, nor on the order of the calls. Threads share a
 * call by tiles, each tile's entries written by one thread, so a rank holds
 * one accumulator whatever its thread count, plus a few tiles of scratch per
 * thread. Rounding to 2^-63 loses nothing that matters next to the fp64
 * partial's own rounding for activations of ordinary size
 * (|x_i x_j| >> 2^-63); it is the same for every split, which is what
 * counts.
 *
 * Range: each partial entry must be finite with |v| < 2^63, and each
 * accumulated entry must stay within (-2^64, 2^64): otherwise the call fails
 * with PQ_ERR_CALIBRATION naming the site. Only the upper triangle is kept. */
#ifndef PQ_HESSIAN_H
#define PQ_HESSIAN_H

#include <stdint.h>

#include "base/pq_err.h"
#include "kernels/pq_kernels.h"

/* Binary point of the accumulator: an entry's integer is round(v * 2^63). */
#define PQ_HESSIAN_FRAC_BITS 63
/* The tile grid of the partials (fixed: the bits depend on it). A site of
 * width <= PQ_HESSIAN_TILE is one tile: one dsyrk per sequence. 2048: the
 * per-call BLAS shapes keep the build at the rate of one whole dsyrk per
 * sequence (1024 measured ~8 % slower at width 5120), and a thread's
 * scratch (one tile partial, 32 MiB) stays small next to a 20480-wide
 * accumulator (3.4 GB). */
#define PQ_HESSIAN_TILE 2048

typedef struct pq_hessian pq_hessian;

/* An empty accumulator (zero sum, zero tokens) for a site of width d >= 1.
 * name (copied) names the site in every error ("layers.3.attn.q_in").
 * PQ_ERR_CONFIG for d < 1; PQ_ERR_RESOURCE. */
pq_status pq_hessian_create(int64_t d, const char *name, pq_hessian **out);

/* NULL is a no-op. */
void pq_hessian_free(pq_hessian *h);

int64_t pq_hessian_dim(const pq_hessian *h);
const char *pq_hessian_name(const pq_hessian *h);
/* Tokens added so far (over every add, merge and word reduction). */
int64_t pq_hessian_tokens(const pq_hessian *h);

/* Add sum_t x_t x_t^T over ONE sequence's rows x[t*ld + 0..d), t in
 * [0, n_tokens) (borrowed; ld >= d), and count its tokens: one thread,
 * pq_hessian_add_seqs with one sequence. n_tokens == 0 is a no-op. */
pq_status pq_hessian_add(pq_hessian *h, const pq_ops *ops, const float *x, int64_t n_tokens, int64_t ld);

/* Add each of n_seqs sequences, sequence q the rows
 * x[t*ld + 0..d), t in [offsets[q], offsets[q+1]) (borrowed; offsets
 * non-decreasing, ld >= d), as a partial of its own, and count their
 * tokens; n_threads >= 1 threads share the tiles. The sum after any set of
 * calls depends only on which sequences were added (not on the calls,
 * their grouping or the thread counts). ops may be NULL (reserved for
 * kernel-context conversions). Not thread-safe on one h.
 * Errors (h unchanged): PQ_ERR_CALIBRATION "site 'NAME': ..." for NaN/Inf in
 * x (naming token, counted from offsets[0], and column), a partial entry
 * with |v| >= 2^63 or an accumulated entry leaving (-2^64, 2^64);
 * PQ_ERR_RESOURCE (also when the BLAS cannot be loaded: pq_blas_load's
 * error). */
pq_status pq_hessian_add_seqs(pq_hessian *h, const pq_ops *ops, const float *x, const int64_t *offsets,
                              int64_t n_seqs, int64_t ld, int n_threads);

/* dst += src (same d; exact). Errors as pq_hessian_add for an overflow
 * (dst unchanged); PQ_ERR_INTERNAL for different widths. */
pq_status pq_hessian_merge(pq_hessian *dst, const pq_hessian *src);

/* Raw accumulator words, for a reduction across ranks (a user-defined MPI_Op
 * over MPI_UINT64_T that calls pq_hessian_add_words). Layout, n_words =
 * 2 * d*(d+1)/2 + 2 uint64 words:
 *   entry (i, j), 0 <= i <= j < d, in row-major order of the upper triangle
 *   (k = i*d - i*(i-1)/2 + (j - i)), occupies words [2k, 2k+1]: the 128-bit
 *   two's-complement integer round(H_ij * 2^63), low word first;
 *   word n_words-2: the token count (as uint64);
 *   word n_words-1: the overflow count (0 unless a reduction overflowed).
 * Words are in host byte order (every rank of a job shares it). The pointer
 * is the accumulator's own storage: writing through it (e.g. as MPI's
 * receive buffer of an allreduce) changes h. */
void pq_hessian_words(pq_hessian *h, uint64_t **words, int64_t *n_words);

/* dst += src over a word array of the layout above (n_words = 2*n + 2):
 * each entry pair added as a 128-bit integer with carry from the low word;
 * the token word added; the overflow word gets src's plus one for every
 * entry whose signed 128-bit sum overflowed. Addition modulo 2^128 is exact
 * and order-independent; a non-zero overflow count makes pq_hessian_finish
 * fail. Cannot fail. */
void pq_hessian_add_words(uint64_t *dst, const uint64_t *src, int64_t n_words);

/* The full symmetric d x d fp64 matrix H[i*d + j] (row-major, both
 * triangles) = (2 / n_tokens) * S_ij, S_ij the accumulated sum converted to
 * the nearest double (the caller allocates d*d doubles).
 * Proteus scales by TOKENS; the paper's reference (add_batch) divides by its
 * nsamples, which counts the batches it was fed (a 2-D input is one batch).
 * The factor cancels in GPTQ except through damping (a fraction of the mean
 * diagonal, scale-invariant), so the codes do not depend on it. With zero
 * tokens H is all zero. Errors: PQ_ERR_CALIBRATION naming the site when a
 * word reduction overflowed. */
pq_status pq_hessian_finish(const pq_hessian *h, double *H);

#endif
