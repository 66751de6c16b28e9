/* SPDX-License-Identifier: Apache-2.0 */
/* attn_avx512bf16.c - the fused attention of one (sequence, head) with bf16
 * products (VDPBF16PS, fp32 sums): kernels/ref/attn_ref.c's
 * pq_attention_bf16_ref. Compiled with -mavx512bf16 only in this file; the
 * avx512 context offers it where the CPU reports avx512_bf16 and VDPBF16PS
 * outruns FMA (pq_cpu_bf16_dot_fast, kernels/ops.c).
 *
 * The layout is attn_avx512.c's, with pairs: q rows as bf16; k rotated,
 * rounded and stored as pairs of dimensions per key, kt2[hd/2][Tp][2]; v as
 * pairs of tokens per dimension, vt2[Tp/2][hd][2]; per block of 4 query rows
 * the fp32 scores (one VDPBF16PS per pair of dimensions), the fp32 softmax
 * of attn_avx512.c, the probabilities rounded to bf16, and o = p v (one
 * VDPBF16PS per pair of tokens). Half the multiply instructions of the fp32
 * kernel; the inputs of each product carry 8 significant bits.
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

/* fp32 scores of 4 query rows against the keys c0 .. c0 + 16 nv (nv 1..4). */
static inline void scores_4rows(const uint16_t *const qp[4], const uint16_t *kt2, int64_t Tp, int hd,
                                int64_t c0, int nv, float *S)
{
    __mmask16 mk[4];
    for (int x = 0; x < 4; x++) mk[x] = x < nv ? (__mmask16)0xffff : 0;
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    for (int dp = 0; dp < hd / 2; dp++) {
        const uint16_t *k = kt2 + ((int64_t)dp * Tp + c0) * 2;
        __m512bh k0 = load_pairs(k, mk[0]), k1 = load_pairs(k + 32, mk[1]);
        __m512bh k2 = load_pairs(k + 64, mk[2]), k3 = load_pairs(k + 96, mk[3]);
        __m512bh b = bcast_pair(qp[0] + 2 * dp);
        a00 = _mm512_dpbf16_ps(a00, b, k0); a01 = _mm512_dpbf16_ps(a01, b, k1);
        a02 = _mm512_dpbf16_ps(a02, b, k2); a03 = _mm512_dpbf16_ps(a03, b, k3);
        b = bcast_pair(qp[1] + 2 * dp);
        a10 = _mm512_dpbf16_ps(a10, b, k0); a11 = _mm512_dpbf16_ps(a11, b, k1);
        a12 = _mm512_dpbf16_ps(a12, b, k2); a13 = _mm512_dpbf16_ps(a13, b, k3);
        b = bcast_pair(qp[2] + 2 * dp);
        a20 = _mm512_dpbf16_ps(a20, b, k0); a21 = _mm512_dpbf16_ps(a21, b, k1);
        a22 = _mm512_dpbf16_ps(a22, b, k2); a23 = _mm512_dpbf16_ps(a23, b, k3);
        b = bcast_pair(qp[3] + 2 * dp);
        a30 = _mm512_dpbf16_ps(a30, b, k0); a31 = _mm512_dpbf16_ps(a31, b, k1);
        a32 = _mm512_dpbf16_ps(a32, b, k2); a33 = _mm512_dpbf16_ps(a33, b, k3);
    }
    __m512 acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
    for (int r = 0; r < 4; r++)
        for (int x = 0; x < nv; x++) _mm512_storeu_ps(S + r * Tp + c0 + 16 * x, acc[r][x]);
}

/* o_r[h0 .. h0 + w) = sum_j p_r[j] v_j[h0 ..], w <= 64, for the nr rows. */
static inline void pv_4rows(const uint16_t *pb, int64_t Tp, const uint16_t *vt2, int hd, int h0, int w,
                            float *o, int64_t ldo, int nr)
{
    __mmask16 mk[4];
    pq_attn_col_masks(w, mk);
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const uint16_t *p0 = pb, *p1 = pb + Tp, *p2 = pb + 2 * Tp, *p3 = pb + 3 * Tp;
    for (int64_t jp = 0; jp < Tp / 2; jp++) {
        const uint16_t *vr = vt2 + (jp * hd + h0) * 2;
        __m512bh v0 = load_pairs(vr, mk[0]), v1 = load_pairs(vr + 32, mk[1]);
        __m512bh v2 = load_pairs(vr + 64, mk[2]), v3 = load_pairs(vr + 96, mk[3]);
        __m512bh b = bcast_pair(p0 + 2 * jp);
        a00 = _mm512_dpbf16_ps(a00, b, v0); a01 = _mm512_dpbf16_ps(a01, b, v1);
        a02 = _mm512_dpbf16_ps(a02, b, v2); a03 = _mm512_dpbf16_ps(a03, b, v3);
        b = bcast_pair(p1 + 2 * jp);
        a10 = _mm512_dpbf16_ps(a10, b, v0); a11 = _mm512_dpbf16_ps(a11, b, v1);
        a12 = _mm512_dpbf16_ps(a12, b, v2); a13 = _mm512_dpbf16_ps(a13, b, v3);
        b = bcast_pair(p2 + 2 * jp);
        a20 = _mm512_dpbf16_ps(a20, b, v0); a21 = _mm512_dpbf16_ps(a21, b, v1);
        a22 = _mm512_dpbf16_ps(a22, b, v2); a23 = _mm512_dpbf16_ps(a23, b, v3);
        b = bcast_pair(p3 + 2 * jp);
        a30 = _mm512_dpbf16_ps(a30, b, v0); a31 = _mm512_dpbf16_ps(a31, b, v1);
        a32 = _mm512_dpbf16_ps(a32, b, v2); a33 = _mm512_dpbf16_ps(a33, b, v3);
    }
    const __m512 acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23},
                              {a30, a31, a32, a33}};
    pq_attn_store_rows(acc, nr, mk, o, ldo, h0);
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
    uint16_t *pb = (uint16_t *)(S + 4 * Tp);
    float row[512]; /* one rotated row */
    if (hd > 512) {
        pq_attention_bf16_ref(q, k, v, ld, T, hd, qscale, cos_t, sin_t, o, ldo, attn, scratch);
        return;
    }
    for (int64_t t = 0; t < T; t++) {
        pq_attn_rotate_row(q + t * ld, hd, qscale, cos_t + t * half, sin_t + t * half, row);
        for (int d = 0; d < hd; d++) qb[t * hd + d] = to_bf16(row[d]);
        pq_attn_rotate_row(k + t * ld, hd, 1.0f, cos_t + t * half, sin_t + t * half, row);
        for (int d = 0; d < hd; d++) kt2[((int64_t)(d >> 1) * Tp + t) * 2 + (d & 1)] = to_bf16(row[d]);
        const float *vr = v + t * ld;
        for (int d = 0; d < hd; d++) vt2[((t >> 1) * hd + d) * 2 + (t & 1)] = to_bf16(vr[d]);
    }
    for (int64_t t = T; t < Tp; t++) {
        for (int d = 0; d < hd; d++) {
            kt2[((int64_t)(d >> 1) * Tp + t) * 2 + (d & 1)] = 0;
            vt2[((t >> 1) * hd + d) * 2 + (t & 1)] = 0;
        }
    }
    for (int64_t i0 = 0; i0 < T; i0 += 4) {
        int nr = T - i0 < 4 ? (int)(T - i0) : 4;
        const uint16_t *qp[4];
        for (int r = 0; r < 4; r++) qp[r] = qb + (i0 + (r < nr ? r : 0)) * hd;
        for (int64_t c0 = 0; c0 < Tp; c0 += 64)
            scores_4rows(qp, kt2, Tp, hd, c0, Tp - c0 >= 64 ? 4 : (int)((Tp - c0) / 16), S);
        for (int r = 0; r < 4; r++) {
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
        for (int h0 = 0; h0 < hd; h0 += 64)
            pv_4rows(pb, Tp, vt2, hd, h0, hd - h0 < 64 ? hd - h0 : 64, o + i0 * ldo, ldo, nr);
    }
}
