/* SPDX-License-Identifier: Apache-2.0 */
/* pq_kernels.h - the hot loops of Proteus behind one run-time dispatch table.
 *
 * Every op has a scalar reference (kernels/ref, suffix _ref) that defines the
 * numbers, and faster variants (kernels/x86 *_avx2, later *_avx512vnni, CUDA)
 * that must produce the same integers bit for bit. pq_kernels() returns the
 * table chosen once at start-up: the best variant the CPU supports, or the one
 * forced by the environment variable PQ_KERNELS=ref|avx2 or pq_kernels_select().
 * No MPI here, no allocation in the hot paths. */
#ifndef PQ_KERNELS_H
#define PQ_KERNELS_H

#include <stdint.h>

#include "base/pq_err.h"

typedef struct pq_kernel_ops {
    const char *name; /* "ref", "avx2", ... */

    /* min and max over the finite elements of x[0..n); *n_nonfinite counts
     * NaN/+-Inf elements, which are otherwise ignored. With no finite element,
     * *mn = +INFINITY and *mx = -INFINITY. -0.0 and +0.0 compare equal; which
     * one is returned is unspecified. */
    void (*row_minmax)(const float *x, int64_t n, float *mn, float *mx, int64_t *n_nonfinite);

    /* max |x| over finite elements (0 when none finite); counts non-finite. */
    void (*row_absmax)(const float *x, int64_t n, float *amax, int64_t *n_nonfinite);

    /* q[i] = clamp(zp + nearbyint(x[i] * inv_scale), qmin, qmax), RNE rounding of
     * the fp32 product, as torch.quantize_per_* does. x must be finite. */
    void (*quantize_row)(const float *x, int64_t n, float inv_scale, int32_t zp,
                         int32_t qmin, int32_t qmax, int8_t *q);

    /* y[i] = (float)(q[i] - zp) * scale. */
    void (*dequantize_row)(const int8_t *q, int64_t n, float scale, int32_t zp, float *y);

    /* Pack int4 codes q[0..n) (each in [-8, 7]) into ceil(n/2) bytes:
     * byte j = (q[2j] + 8) | (q[2j+1] + 8) << 4 (low nibble = even column,
     * offset binary); a missing odd element packs as nibble 8 (code 0). */
    void (*pack_i4)(const int8_t *q, int64_t n, uint8_t *packed);
    /* Inverse of pack_i4: q[i] = nibble - 8. */
    void (*unpack_i4)(const uint8_t *packed, int64_t n, int8_t *q);

    /* ---- transformer float ops (kernels/ref/ops_ref.c; AVX2 within the
     * tolerances stated in kernels/x86/ops_avx2.c) ---- */
    /* LayerNorm over each of n_rows rows of width d (biased variance):
     * y = (x - mean) / sqrt(var + eps) * w + b. y may equal x. */
    void (*layernorm)(const float *x, int64_t n_rows, int64_t d, const float *w,
                      const float *b, float eps, float *y);
    /* In-place softmax of each row of n (max-subtracted, fp32; -inf -> 0). */
    void (*softmax_rows)(float *x, int64_t n_rows, int64_t n);
    /* In place: x = (x * 0.5) * (1 + erf(x / 1.41421356)). */
    void (*gelu)(float *x, int64_t n);
    /* Split-half rotary on n_tokens rows (row stride ld floats) of n_heads
     * heads of hd dims; cos_t/sin_t are [n_tokens, hd/2] (pq_rotary_table). */
    void (*rotary)(float *x, int64_t n_tokens, int64_t ld, int n_heads, int hd,
                   const float *cos_t, const float *sin_t);

    /* ---- calibration statistics (kernels/ref/hist_ref.c) ----
     * One pass over rows x[n_rows, dim], accumulating into the outputs:
     * histogram on the fixed IEEE-bit grid: a finite element with bit
     * pattern u increments counts[u >> PQ_HIST_SHIFT] (flat, PQ_HIST_NBINS
     * entries: one per (sign, exponent, top PQ_HIST_MBITS mantissa bits));
     * NaN, +Inf, -Inf increment nonfinite[0], [1], [2] instead; *mn / *mx
     * and chan_absmax[dim] (max |x| per column) over finite elements. Either
     * zero may come out as min/max. uint32 counters keep the hot part of the
     * table in cache; the caller flushes them before any could wrap. */
    void (*hist_ieee)(const float *x, int64_t n_rows, int64_t dim, uint32_t *counts,
                      uint64_t *nonfinite, float *mn, float *mx, float *chan_absmax);
} pq_kernel_ops;

/* The calibration grid: 8 mantissa bits per bin (relative width 2^-8, far
 * below an int8 step), 512 blocks (sign x exponent) of 256 bins. */
#define PQ_HIST_MBITS 8
#define PQ_HIST_SHIFT (23 - PQ_HIST_MBITS)
#define PQ_HIST_BLOCK (1 << PQ_HIST_MBITS)
#define PQ_HIST_NBLOCKS 512
#define PQ_HIST_NBINS (PQ_HIST_NBLOCKS * PQ_HIST_BLOCK)

/* cos/sin tables for positions 0..n_pos-1: angle fl32(t * inv_freq[i]),
 * cos/sin in double rounded to fp32; cos_t/sin_t are [n_pos, half]. */
void pq_rotary_table(const float *inv_freq, int half, int64_t n_pos, float *cos_t,
                     float *sin_t);

/* The table in use (selected on first call). Never NULL. */
const pq_kernel_ops *pq_kernels(void);

/* The scalar reference table. */
const pq_kernel_ops *pq_kernels_ref(void);

/* A named variant if it is compiled in and the CPU supports it, else NULL. */
const pq_kernel_ops *pq_kernels_get(const char *name);

/* Force a variant by name ("ref", "avx2", "auto"). PQ_ERR_HARDWARE with a
 * detail listing what is available when it is not compiled in or the CPU
 * lacks the features. */
pq_status pq_kernels_select(const char *name);

/* Comma-separated list of the variants usable on this machine, best first. */
const char *pq_kernels_available(void);

#endif
