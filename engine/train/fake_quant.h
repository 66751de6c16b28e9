/* SPDX-License-Identifier: Apache-2.0 */
/* fake_quant.h - fake quantization for quantization-aware training: the
 * forward rounds through the integer grid and back to fp32; the backward is
 * the straight-through estimator, with learned step sizes (LSQ, Esser et
 * al. 2020, "Learned Step Size Quantization", ICLR).
 *
 * Weights: rows of [rows, cols], one step s and zero point z per (row,
 * group of gs columns) (gs = cols: per channel). With v = w * (1/s) in fp32:
 *   forward   w_hat = (clamp(nearbyint(v) + z, qmin, qmax) - z) * s
 *             (the codes RTN writes for the same s, z, and the values of
 *             torch.fake_quantize_per_channel_affine);
 *   backward  LSQ with the clamp on v, lo = qmin - z, hi = qmax - z:
 *             dw = dw_hat where lo <= v <= hi, else 0;
 *             ds = g * sum over the group of dw_hat * (v < lo ? lo : v > hi ?
 *             hi : nearbyint(v) - v), g = 1 / sqrt(n_group * qmax), the
 *             paper's gradient scale with n_group the weights sharing s.
 *   z is kept fixed (from RTN).
 * Activations: int8 per-token dynamic, s = max(max|x|, 1e-5) / 127 per row,
 * x_hat = clamp(nearbyint(x * (1/s)), -127, 127) * s (the integer kernels'
 * pq_gemm_quantize_dynamic_ref), gradient straight through; or int8
 * static, one learned step s per Linear input (symmetric, the codes the
 * static W8A8 kernels' pq_gemm_quantize_rows_static makes with act_scale s
 * and no zero point): with v = x * (1/s),
 *   forward   x_hat = clamp(nearbyint(v), -127, 127) * s;
 *   backward  dx = dx_hat where -127 <= v <= 127, else 0;
 *             ds = g * sum of dx_hat * (v < -127 ? -127 : v > 127 ? 127 :
 *             nearbyint(v) - v), g = 1 / sqrt(N * 127) with N the features
 *             of one token (the Linear's input width), LSQ's gradient scale
 *             for activations. */
#ifndef PQ_FAKE_QUANT_H
#define PQ_FAKE_QUANT_H

#include <stdint.h>

/* Forward of rows [r0, r1) (the whole tensor's row indexing for s and z:
 * s[r * n_groups + g], n_groups = ceil(cols / gs)); w_hat may equal w. */
void pq_fq_weight_fwd_ref(const float *w, int64_t r0, int64_t r1, int64_t cols, int64_t gs, const float *s,
                          const int32_t *z, int32_t qmin, int32_t qmax, float *w_hat);

/* Backward of rows [r0, r1) from dw_hat: dw (overwritten; may equal dw_hat)
 * and ds (added into, same indexing as s; each group summed in column
 * order). */
void pq_fq_weight_bwd_ref(const float *w, const float *dw_hat, int64_t r0, int64_t r1, int64_t cols, int64_t gs,
                          const float *s, const int32_t *z, int32_t qmin, int32_t qmax, float *dw, float *ds);

/* In place on n rows of width d: int8 per-token dynamic fake quantization. */
void pq_fq_act_rows_ref(float *x, int64_t n, int64_t d);

/* Static: x_hat of n values (x_hat may equal x). */
void pq_fq_act_static_fwd_ref(const float *x, int64_t n, float s, float *x_hat);

/* Static backward of n values: dx (may equal dx_hat); returns the sum of
 * dx_hat * e in index order (fp64), before the gradient scale g. */
double pq_fq_act_static_bwd_ref(const float *x, const float *dx_hat, int64_t n, float s, float *dx);

/* LSQ's gradient scale of a static site of input width d. */
double pq_fq_act_gscale(int64_t d);

#endif
