/* SPDX-License-Identifier: Apache-2.0 */
/* pq_gemm.h - integer GEMM for quantized inference: int8 x int8 -> int32 with
 * a fused fp32 epilogue (W8A8), int4 x int8 -> int32 per scale group with the
 * same epilogue (W4A8: nibbles unpacked in registers), and weight-only
 * int8/int4 GEMM on fp32 activations (W8A16 / W4A16).
 *
 * Weights are stored [out = n, in = k] as in the HDF5 model file and packed
 * once at load (pq_gemm_pack_i8 / pq_gemm_pack_i4) into the layout the kernels
 * read. C = A x W^T. Every entry point runs the micro-kernels of the context
 * it is given (ops->gemm: the scalar reference, AVX2 or AVX-512 VNNI); the
 * int32 accumulations of every variant are identical, and the fused fp32
 * epilogue performs the same fp32 operations in the same order. n_threads <= 0
 * means the OpenMP default; results never depend on the thread count.
 * Failures are PQ_KBADARG (shapes, layout, values) or PQ_KNOMEM. */
#ifndef PQ_GEMM_H
#define PQ_GEMM_H

#include <stdint.h>

#include "kernels/pq_kernels.h"

/* What a packed weight is for: the int8-activation kernels (int8 or int4
 * weights) or the weight-only kernel (fp32 activations). The layouts differ. */
typedef enum pq_gemm_use { PQ_GEMM_USE_I8I8 = 0, PQ_GEMM_USE_WONLY = 1 } pq_gemm_use;

/* Scale granularity, as the HDF5 "granularity" attribute: one scale for the
 * tensor ([1]), per output row ([n]) or per row and group of group_size input
 * columns ([n, ceil(k / group_size)], the last group may be shorter). */
typedef enum pq_gemm_gran {
    PQ_GEMM_TENSOR = 0,
    PQ_GEMM_CHANNEL = 1,
    PQ_GEMM_GROUP = 2
} pq_gemm_gran;

/* After the scale and bias, optionally: GELU (exact erf form, the context's
 * gelu), or add a residual y += r[m, n] (r has row stride ldr). */
typedef enum pq_gemm_post {
    PQ_GEMM_POST_NONE = 0,
    PQ_GEMM_POST_GELU = 1,
    PQ_GEMM_POST_RESIDUAL = 2
} pq_gemm_post;

typedef struct pq_gemm_epilogue {
    const float *bias;     /* [n] or NULL; borrowed */
    pq_gemm_post post;
    const float *residual; /* [m, ldr] for PQ_GEMM_POST_RESIDUAL; must not overlap y
                            (tiles of y are written before later tiles read r) */
    int64_t ldr;
} pq_gemm_epilogue;

/* A packed weight; opaque. */
typedef struct pq_gemm_w pq_gemm_w;

/* Pack int8 codes q[n, k] (row-major, borrowed) with their scales (tensor:
 * [1], channel: [n], group: [n, groups]) and zero points (same shape, NULL for
 * symmetric weights). PQ_GEMM_USE_I8I8 requires tensor or channel scales and
 * k <= 32768 (so that zero-point-corrected sums fit int32).
 * Returns an owned object in *out (free with pq_gemm_w_free); PQ_KBADARG on
 * bad shapes, granularity or a zero point outside the code range, PQ_KNOMEM. */
pq_kstatus pq_gemm_pack_i8(const int8_t *q, int64_t n, int64_t k, const float *scale,
                          const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size,
                          pq_gemm_use use, pq_gemm_w **out);

/* Pack int4 codes stored as in the HDF5 file: rows of ceil(k/2) bytes, byte j
 * = (q[2j] + 8) | (q[2j+1] + 8) << 4 (low nibble = even column). Scales and
 * zero points as for pq_gemm_pack_i8. PQ_GEMM_USE_I8I8 (W4A8: int8
 * activations) takes any granularity, group scales included, and k <= 65536.
 * Returns an owned object. */
pq_kstatus pq_gemm_pack_i4(const uint8_t *packed, int64_t n, int64_t k, const float *scale,
                          const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size,
                          pq_gemm_use use, pq_gemm_w **out);

/* pq_gemm_pack_i8 (bits 8) or pq_gemm_pack_i4 (bits 4) of codes held in
 * n_parts (1 to 8) row blocks, stacked: part i (borrowed, row-major) holds
 * the next part_rows[i] rows; n = the sum. Scales and zero points cover all
 * n rows, as one tensor's would. The panels are packed by n_threads OpenMP
 * threads (<= 0: the OpenMP default); the bytes do not depend on it. The
 * bytes are those of one part holding the stacked rows. */
pq_kstatus pq_gemm_pack_parts(int bits, const void *const *codes, const int64_t *part_rows, int n_parts,
                              int64_t k, const float *scale, const int32_t *zero_point, pq_gemm_gran gran,
                              int64_t group_size, pq_gemm_use use, int n_threads, pq_gemm_w **out);

/* Frees a packed weight; NULL is a no-op. */
void pq_gemm_w_free(pq_gemm_w *w);

int64_t pq_gemm_w_rows(const pq_gemm_w *w); /* n */
int64_t pq_gemm_w_cols(const pq_gemm_w *w); /* k */

/* sum_k W[n, k] for every output row (int8 packs); borrowed, [n]. NULL for
 * int4 packs. */
const int32_t *pq_gemm_w_row_sums(const pq_gemm_w *w);

/* sums[i] = sum_j a[i * lda + j] over j < k, for i < m. */
void pq_gemm_i8_row_sums(const int8_t *a, int64_t m, int64_t k, int64_t lda, int32_t *sums);

/* Dynamic per-token quantization (SmoothQuant / torch dynamic style):
 * scale[i] = max(absmax(row i), 1e-5) / 127, q = clamp(nearbyint(x * (1 /
 * scale)), -127, 127) with the reciprocal and the product in fp32 and
 * round-half-even. Rows of x must be finite. */
void pq_gemm_quantize_rows_dynamic(const pq_ops *ops, const float *x, int64_t m, int64_t k, int64_t ldx,
                                   int8_t *q, int64_t ldq, float *scale);

/* Static per-tensor quantization: q = clamp(zp + nearbyint(x * (1 / scale)),
 * qmin, qmax), as FORMAT.md section "Codes". */
void pq_gemm_quantize_rows_static(const float *x, int64_t m, int64_t k, int64_t ldx,
                                  float scale, int32_t zp, int32_t qmin, int32_t qmax,
                                  int8_t *q, int64_t ldq);

/* c[i, j] = sum_k a[i, k] * W[j, k] exactly in int32 (raw codes, no zero
 * points). a is [m, lda] int8 (any values in [-128, 127]). w must be an
 * I8I8 pack (int8, or int4 with one scale group). PQ_KBADARG on a wrong
 * pack, PQ_KNOMEM. */
pq_kstatus pq_gemm_i8i8_s32(const pq_ops *ops, const int8_t *a, int64_t m, int64_t lda, const pq_gemm_w *w,
                           int32_t *c, int64_t ldc, int n_threads);

/* Fused W8A8: acc = sum_k (a[i,k] - a_zp) * (W[j,k] - w_zp[j]) (int32, via row
 * sums), then y[i, j] = ((float)acc * a_scale[i or 0]) * w_scale[j] (+ bias[j])
 * and the post-op. a_per_token: a_scale has m entries, else one.
 * W4A8 (an int4 I8I8 pack): acc_g, the same exact sum over each scale group
 * g, then f = 0, f = fmaf((float)acc_g, w_scale[j, g], f) for g = 0, 1, ...,
 * y[i, j] = f * a_scale[i or 0] (+ bias[j]) and the post-op. */
pq_kstatus pq_gemm_i8i8_f32(const pq_ops *ops, const int8_t *a, int64_t m, int64_t lda, const float *a_scale,
                           int a_per_token, int32_t a_zp, const pq_gemm_w *w,
                           const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads);

/* The whole W8A8 (or W4A8, for an int4 pack) linear on fp32 input x [m,
 * ldx]: dynamic per-token quantization, integer GEMM, fused epilogue.
 * Scratch is allocated here. */
pq_kstatus pq_gemm_w8a8_f32(const pq_ops *ops, const float *x, int64_t m, int64_t ldx, const pq_gemm_w *w,
                           const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads);

/* Weight-only: y[i, j] = sum_k x[i, k] * dequant(W)[j, k] (+ bias) and the
 * post-op, dequant(W) = (float)(q - zp) * scale (FORMAT.md). fp32 sums; the
 * variants differ from the reference only in summation order. */
pq_kstatus pq_gemm_wonly_f32(const pq_ops *ops, const float *x, int64_t m, int64_t ldx, const pq_gemm_w *w,
                            const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads);

#endif
