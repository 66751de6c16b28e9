/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_impl.h - packed weight layout and the job descriptions shared by the
 * GEMM reference, the ISA variants, the driver and tests. The micro-kernels
 * of each ISA are the gemm slot of its context (kernels/pq_kernels.h). */
#ifndef PQ_GEMM_IMPL_H
#define PQ_GEMM_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/gemm/pq_gemm.h"
#include "kernels/pq_kernels.h"

/* Weights are cut into panels of PQ_GEMM_NR output columns (n); the last
 * panel is zero-padded. Inside a panel:
 *   I8I8 (int8): k is padded to a multiple of 4 (kp); per quad of k, 64 bytes,
 *          columns 0-7 then 8-15, each column's 4 consecutive k together:
 *          byte (k/4)*64 + (ci/8)*32 + (ci%8)*4 + (k&3) = W[col ci, k]
 *          (one 32-byte load feeds 8 columns x 4 k of maddubs_epi16)
 *   WONLY int8: byte k*16 + ci = W[col ci, k]
 *   WONLY int4: byte k*8 + (ci&7) holds col ci in its low (ci<8) or high
 *          nibble, offset binary (nibble = q + 8)
 *   I8I8 int4 (W4A8): the int8 quad layout at half the bytes: per pair of k
 *          quads (8 k), 64 bytes; byte pq_gemm_i8i8_off(ci, k & 3) holds
 *          W[ci, k] of the pair's first quad in its low nibble and of the
 *          second in its high nibble, two's complement (nibble = q & 15).
 *          Masking a byte with 0xF0 then gives 16 * q as a signed byte, so
 *          one AND (high) or shift + AND (low) unpacks 64 codes for vpdpbusd.
 * Scales and zero points are expanded to [panel][group][16] so a vector load
 * gets 16 columns; padded columns have scale 0. */
#define PQ_GEMM_NR 16

struct pq_gemm_w {
    int64_t n, k;
    int bits;            /* 8 or 4 */
    pq_gemm_use use;
    int64_t group_size;  /* k for tensor/channel granularity */
    int64_t n_groups;
    int64_t n_panels;
    int64_t kp;          /* k rounded up to a multiple of 4 (I8I8), else k */
    int64_t panel_bytes;
    uint8_t *data;       /* owned, 64-byte aligned */
    float *scale;        /* owned [n_panels][n_groups][16] */
    int32_t *zp;         /* owned, same shape; NULL when symmetric */
    float *off;          /* owned, same shape: zp as float (int4: zp + 8, the
                          * nibble's offset); zeros when symmetric */
    int32_t *row_sum;    /* owned, I8I8 packs: sum of W[n, k] over each group's
                          * k, [n_panels][n_groups][16] (int8: n_groups 1) */
    float *scale16;      /* owned, W4A8 packs: scale / 16, same shape, when every
                          * quotient is exact (no underflow), else NULL: the
                          * kernels' int32 sums are 16 times the exact ones, and
                          * (float)(16 s) * (scale / 16) == (float)s * scale */
};

static inline int64_t pq_gemm_sidx(const pq_gemm_w *w, int64_t n, int64_t g)
{
    return ((n / PQ_GEMM_NR) * w->n_groups + g) * PQ_GEMM_NR + n % PQ_GEMM_NR;
}

/* Byte offset of W[col ci, k] inside an I8I8 panel. */
static inline int64_t pq_gemm_i8i8_off(int64_t ci, int64_t k)
{
    return (k / 4) * 64 + (ci / 8) * 32 + (ci % 8) * 4 + (k & 3);
}

/* The code W[n, k] (int4: in [-8, 7]) read back from the packed layout. */
static inline int pq_gemm_w_code(const pq_gemm_w *w, int64_t n, int64_t k)
{
    const uint8_t *p = w->data + (n / PQ_GEMM_NR) * w->panel_bytes;
    int64_t ci = n % PQ_GEMM_NR;
    if (w->bits == 4 && w->use == PQ_GEMM_USE_I8I8) {
        uint8_t b = p[(k / 8) * 64 + pq_gemm_i8i8_off(ci, k & 3)];
        int nib = (k & 4) ? b >> 4 : b & 15;
        return nib >= 8 ? nib - 16 : nib;
    }
    if (w->bits == 4) {
        uint8_t b = p[k * 8 + (ci & 7)];
        return (ci < 8 ? (b & 15) : (b >> 4)) - 8;
    }
    if (w->use == PQ_GEMM_USE_I8I8) return (int8_t)p[pq_gemm_i8i8_off(ci, k)];
    return (int8_t)p[k * 16 + ci];
}

/* One int8 x int8 call. Variants fill output columns of panels [p0, p1). */
struct pq_gemm_i8i8_job {
    const pq_ops *ops;      /* the context the call runs in (its gelu for the epilogue) */
    const int8_t *a;        /* [m, lda] */
    int64_t m, lda;
    const void *a_packed;   /* from the variant's a_pack, or NULL */
    const pq_gemm_w *w;
    int32_t *c;             /* raw output when y is NULL */
    int64_t ldc;
    float *y;               /* fused output */
    int64_t ldy;
    const float *a_scale;
    int a_per_token;
    const int32_t *a_sums;  /* [m, n_groups]: sums of a over each group's k when
                             * w->zp, else NULL */
    const int32_t *col_add; /* pq_gemm_sidx layout: k_g*a_zp*w_zp - a_zp*w_sum
                             * per (column, group), or NULL */
    const pq_gemm_epilogue *epi;
};

/* One weight-only call. */
struct pq_gemm_wonly_job {
    const pq_ops *ops;
    const float *x;         /* [m, ldx] */
    int64_t m, ldx;
    const pq_gemm_w *w;
    float *y;
    int64_t ldy;
    const float *x_gsum;    /* [m, n_groups] group sums of x (variant may use) */
    const pq_gemm_epilogue *epi;
};

/* AVX2 weight-only and quantisation entry points, shared by the AVX-512 VNNI
 * table (only call where the CPU has AVX2 and FMA). */
size_t pq_gemm_wonly_scratch_avx2(int64_t m, int64_t k);
void pq_gemm_wonly_avx2(const pq_gemm_wonly_job *job, int64_t p0, int64_t p1, float *scratch);
void pq_gemm_quantize_dynamic_avx2(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q,
                                   int64_t ldq, float *scale);

/* Shared tail of every epilogue (baseline code): the post-op on y[0..ncols)
 * of output row `row`, columns from col0, GELU from the context ops. */
void pq_gemm_post_apply(const pq_ops *ops, const pq_gemm_epilogue *epi, float *y, int64_t row,
                        int64_t col0, int64_t ncols);

/* Scalar helpers of the reference, reused by the variants for tails. */
void pq_gemm_i8i8_ref(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1);
void pq_gemm_i4i8_ref(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1);
void pq_gemm_wonly_ref(const pq_gemm_wonly_job *job, int64_t p0, int64_t p1, float *scratch);
void pq_gemm_quantize_dynamic_ref(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q,
                                  int64_t ldq, float *scale);

#endif
