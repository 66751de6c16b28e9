/* SPDX-License-Identifier: Apache-2.0 */
/* kernels_impl.h - declarations of every kernel variant and of the context
 * builders, for ops.c and the kernel tests. */
#ifndef PQ_KERNELS_IMPL_H
#define PQ_KERNELS_IMPL_H

#include <stdint.h>

#include "kernels/pq_kernels.h"

#define PQ_DECLARE_QUANT_KERNELS(sfx)                                                    \
    void pq_row_minmax_##sfx(const float *x, int64_t n, float *mn, float *mx,             \
                             int64_t *n_nonfinite);                                       \
    void pq_row_absmax_##sfx(const float *x, int64_t n, float *amax, int64_t *n_nonfinite); \
    void pq_quantize_row_##sfx(const float *x, int64_t n, float inv_scale, int32_t zp,    \
                               int32_t qmin, int32_t qmax, int8_t *q);                    \
    void pq_dequantize_row_##sfx(const int8_t *q, int64_t n, float scale, int32_t zp,     \
                                 float *y);                                               \
    void pq_error_lanes_##sfx(const float *x, const int8_t *q, int64_t n, float scale,    \
                              int32_t zp, double s[8], double e[8], double m[8]);         \
    void pq_pack_i4_##sfx(const int8_t *q, int64_t n, uint8_t *packed);                   \
    void pq_unpack_i4_##sfx(const uint8_t *packed, int64_t n, int8_t *q);

PQ_DECLARE_QUANT_KERNELS(ref)
PQ_DECLARE_QUANT_KERNELS(avx2)

#define PQ_DECLARE_FLOAT_KERNELS(sfx)                                                    \
    void pq_layernorm_##sfx(const float *x, int64_t n_rows, int64_t d, const float *w,     \
                            const float *b, float eps, float *y);                          \
    void pq_softmax_rows_##sfx(float *x, int64_t n_rows, int64_t n);                       \
    void pq_gelu_##sfx(float *x, int64_t n);                                               \
    void pq_rotary_##sfx(float *x, int64_t n_tokens, int64_t ld, int n_heads, int hd,      \
                         const float *cos_t, const float *sin_t);

PQ_DECLARE_FLOAT_KERNELS(ref)
PQ_DECLARE_FLOAT_KERNELS(avx2)

/* The fused attention of one (sequence, head) (pq_ops.attention):
 * kernels/ref/attn_ref.c, kernels/x86/attn_avx512.c. */
#define PQ_DECLARE_ATTENTION(sfx)                                                           \
    void pq_attention_##sfx(const float *q, const float *k, const float *v, int64_t ld,      \
                            int64_t T, int hd, float qscale, const float *cos_t,             \
                            const float *sin_t, float *o, int64_t ldo, float *attn,          \
                            float *scratch);
/* x86/quant_avx512.c */
void pq_row_minmax_avx512(const float *x, int64_t n, float *mn, float *mx, int64_t *n_nonfinite);
void pq_error_lanes_avx512(const float *x, const int8_t *q, int64_t n, float scale, int32_t zp, double s[8],
                           double e[8], double m[8]);
/* x86/ops_avx512.c */
void pq_gelu_avx512(float *x, int64_t n);
void pq_layernorm_avx512(const float *x, int64_t n_rows, int64_t d, const float *w, const float *b, float eps,
                         float *y);

PQ_DECLARE_ATTENTION(ref)
PQ_DECLARE_ATTENTION(avx512)
PQ_DECLARE_ATTENTION(bf16_ref)
PQ_DECLARE_ATTENTION(bf16_avx512)

void pq_hist_ieee_ref(const float *x, int64_t n_rows, int64_t dim, uint32_t *counts,
                      uint64_t *nonfinite, float *mn, float *mx, float *chan_absmax);
void pq_hist_ieee_avx2(const float *x, int64_t n_rows, int64_t dim, uint32_t *counts,
                       uint64_t *nonfinite, float *mn, float *mx, float *chan_absmax);

void pq_gptq_block_ref(const pq_gptq_block *b, int64_t r0, int64_t r1);
void pq_gptq_block_avx2(const pq_gptq_block *b, int64_t r0, int64_t r1);
void pq_gptq_block_avx512(const pq_gptq_block *b, int64_t r0, int64_t r1);

/* The GEMM micro-kernels of each ISA (kernels/ref/gemm_ref.c,
 * kernels/x86/gemm_*.c). */
extern const pq_gemm_kernels pq_gemm_kernels_ref;
extern const pq_gemm_kernels pq_gemm_kernels_avx2;
extern const pq_gemm_kernels pq_gemm_kernels_avx512vnni;

/* Context builders (kernels/ops.c): each starts from the one below it and
 * overrides the slots its ISA does faster. Defined only where compiled in
 * (PQ_HAVE_AVX2, PQ_HAVE_AVX512VNNI); call only where the CPU has what
 * pq_ops_needs lists. */
void pq_ops_init_avx2(pq_ops *out);   /* ref + AVX2 element-wise and GEMM */
void pq_ops_init_avx512(pq_ops *out); /* avx2 + AVX-512 VNNI int8 GEMM, AVX-512 GPTQ loop */

/* CPU feature probes (x86: cpuid/xgetbv through the compiler builtins). */
int pq_cpu_has_avx2_fma(void);
int pq_cpu_has_avx512vnni(void); /* avx512f/bw/vl/vnni and avx2_fma */
int pq_cpu_has_avx512bf16(void); /* avx512_bf16 and the above */
int pq_cpu_bf16_dot_fast(void);   /* that, where VDPBF16PS outruns FMA (ops.c) */
/* Sets o->attention_bf16 wherever the CPU runs the kernel, fast or not (tests
 * and benchmarks); whether o has one now. */
int pq_ops_force_bf16_attention(pq_ops *o);

#endif
