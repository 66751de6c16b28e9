/* SPDX-License-Identifier: Apache-2.0 */
/* attn_avx512bf16.c - the fused attention of one (sequence, head) with bf16
 * products (VDPBF16PS, fp32 sums): kernels/ref/attn_ref.c's
 * pq_attention_bf16_ref. Compiled with -mavx512bf16 only in this file; the
 * avx512 context offers it where the CPU reports avx512_bf16 and VDPBF16PS
 * outruns FMA (pq_cpu_bf16_dot_fast, kernels/ops.c).
 *
 * The layout is attn_avx512.c's, with pairs: q rows as bf16; k rotated,
 * rounded and stored as pairs of dimensions per key, kt2[hd/2][Tp][2] (by
 * blocks of 16 keys from the rotated rows); v as pairs of tokens per
 * dimension, vt2[Tp/2][hd][2]; per block of 12 query rows the fp32 scores
 * (one VDPBF16PS per pair of dimensions and 16 keys), the fp32 softmax of
 * attn_avx512.c, the probabilities rounded to bf16, and o = p v (one
 * VDPBF16PS per pair of tokens and 16 dimensions). Half the multiply
 * instructions of the fp32 kernel; the inputs of each product carry 8
 * significant bits.
 *
 * Against the reference: the same roundings to bf16; the hardware's pair
 * sums against the reference's two fp32 additions and the polynomial exp:
 * probabilities within 5e-6 absolute, outputs within 2e-3 of the larger of
 * 1 and |o|, as a probability next to a bf16 rounding boundary may round the
 * other way (tests/kernels/test_attention.c). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/x86/attn_x86.h"

static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline __m512bh bcast_pair(const uint16_t *p)
{
    int32_t w;
    memcpy(&w, p, sizeof w);
    return (__m512bh)_mm512_set1_epi32(w);
}

static inline __m512bh load_pairs(const uint16_t *p, __mmask16 m)
{
    return (__m512bh)_mm512_maskz_loadu_epi32(m, p);
}

/* Row r of the block: its pair SRC(r) broadcast, dot products with x0, x1. */
#define DP_ROW(r, SRC)                                                                                 \
    b = bcast_pair(SRC(r));                                                                            \
    a##r##_0 = _mm512_dpbf16_ps(a##r##_0, b, x0);                                                      \
    a##r##_1 = _mm512_dpbf16_ps(a##r##_1, b, x1)
#define DP_ROWS(SRC)                                                                                   \
    DP_ROW(0, SRC); DP_ROW(1, SRC); DP_ROW(2, SRC); DP_ROW(3, SRC); DP_ROW(4, SRC); DP_ROW(5, SRC);    \
    DP_ROW(6, SRC); DP_ROW(7, SRC); DP_ROW(8, SRC); DP_ROW(9, SRC); DP_ROW(10, SRC); DP_ROW(11, SRC)

/* fp32 scores S[r][c0 .. c0 + 32) of the RB query rows qp[r] (the second
 * 16 keys only where m1). */
static inline void scores_rows(const uint16_t *const qp[RB], const uint16_t *kt2, int64_t Tp, int hd,
                               int64_t c0, __mmask16 m1, float *S)
{
    BLOCK_ACCS;
    for (int dp = 0; dp < hd / 2; dp++) {
        const uint16_t *k = kt2 + ((int64_t)dp * Tp + c0) * 2;
        __m512bh x0 = load_pairs(k, 0xffff), x1 = load_pairs(k + 32, m1), b;
#define Q_AT(r) qp[r] + 2 * dp
        DP_ROWS(Q_AT);
#undef Q_AT
    }
    const __m512 acc[RB][2] = BLOCK_ACC_ARRAY;
    pq_attn_store_block(acc, RB, S + c0, Tp, 0xffff, m1);
}

/* o_r[h0 .. h0 + 32) = sum_j p_r[j] v_j[h0 ..] (the lanes m0, m1 select)
 * for the nr rows. */
static inline void pv_rows(const uint16_t *pb, int64_t Tp, const uint16_t *vt2, int hd, int h0, __mmask16 m0,
                           __mmask16 m1, float *o, int64_t ldo, int nr)
{
    BLOCK_ACCS;
    for (int64_t jp = 0; jp < Tp / 2; jp++) {
        const uint16_t *vr = vt2 + (jp * hd + h0) * 2;
        __m512bh x0 = load_pairs(vr, m0), x1 = load_pairs(vr + 32, m1), b;
#define P_AT(r) pb + (r) * Tp + 2 * jp
        DP_ROWS(P_AT);
#undef P_AT
    }
    const __m512 acc[RB][2] = BLOCK_ACC_ARRAY;
    pq_attn_store_block(acc, nr, o + h0, ldo, m0, m1);
}

void pq_attention_bf16_avx512(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int hd,
                              float qscale, const float *cos_t, const float *sin_t, float *o, int64_t ldo,
                              float *attn, float *scratch)
{
    int half = hd / 2;
    int64_t Tp = (T + 15) / 16 * 16;
    /* bf16 slices, each a multiple of 32 halves (64 bytes) */
    uint16_t *qb = (uint16_t *)scratch;
    uint16_t *kt2 = qb + (T * hd + 31) / 32 * 32;
    uint16_t *vt2 = kt2 + (int64_t)hd * Tp;
    float *S = (float *)(vt2 + (int64_t)hd * Tp);
    uint16_t *pb = (uint16_t *)(S + RB * Tp);
    float *kr = (float *)(pb + (int64_t)RB * Tp); /* the rotated k rows, [T][hd] */
    float row[512]; /* one rotated row */
    if (hd > 512) {
        pq_attention_bf16_ref(q, k, v, ld, T, hd, qscale, cos_t, sin_t, o, ldo, attn, scratch);
        return;
    }
    for (int64_t t = 0; t < T; t++) {
        if (t + PF < T) pq_attn_prefetch_rows(q, k, v, (t + PF) * ld, hd);
        pq_attn_rotate_row(q + t * ld, hd, qscale, cos_t + t * half, sin_t + t * half, row);
        for (int d = 0; d < hd; d++) qb[t * hd + d] = to_bf16(row[d]);
        pq_attn_rotate_row(k + t * ld, hd, 1.0f, cos_t + t * half, sin_t + t * half, kr + t * hd);
        const float *vr = v + t * ld;
        for (int d = 0; d < hd; d++) vt2[((t >> 1) * hd + d) * 2 + (t & 1)] = to_bf16(vr[d]);
    }
    for (int64_t t = T; t < Tp; t++)
        for (int d = 0; d < hd; d++) vt2[((t >> 1) * hd + d) * 2 + (t & 1)] = 0;
    /* k's pairs of dimensions per key, by blocks of 16 keys (64 bytes a row) */
    for (int64_t t0 = 0; t0 < Tp; t0 += 16)
        for (int dp = 0; dp < half; dp++)
            for (int64_t t = t0; t < t0 + 16; t++) {
                uint16_t *o2 = kt2 + ((int64_t)dp * Tp + t) * 2;
                o2[0] = t < T ? to_bf16(kr[t * hd + 2 * dp]) : 0;
                o2[1] = t < T ? to_bf16(kr[t * hd + 2 * dp + 1]) : 0;
            }
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int nr = T - i0 < RB ? (int)(T - i0) : RB;
        const uint16_t *qp[RB];
        for (int r = 0; r < RB; r++) qp[r] = qb + (i0 + (r < nr ? r : 0)) * hd;
        for (int64_t c0 = 0; c0 < Tp; c0 += 32)
            scores_rows(qp, kt2, Tp, hd, c0, Tp - c0 >= 32 ? (__mmask16)0xffff : 0, S);
        for (int r = 0; r < RB; r++) {
            float *sr = S + r * Tp;
            if (r < nr) {
                pq_attn_softmax_row(sr, T, Tp);
                if (attn) memcpy(attn + (i0 + r) * T, sr, (size_t)T * sizeof(float));
            }
            for (int64_t j = 0; j < Tp; j += 16)
                _mm256_storeu_si256((__m256i *)(pb + r * Tp + j),
                                    (__m256i)_mm512_cvtneps_pbh(r < nr ? _mm512_loadu_ps(sr + j)
                                                                       : _mm512_setzero_ps()));
        }
        for (int h0 = 0; h0 < hd; h0 += 32) {
            __mmask16 m0, m1;
            pq_attn_col_masks(hd - h0 < 32 ? hd - h0 : 32, &m0, &m1);
            pv_rows(pb, Tp, vt2, hd, h0, m0, m1, o + i0 * ldo, ldo, nr);
        }
    }
}
