/* SPDX-License-Identifier: Apache-2.0 */
/* attn_avx512.c - the fused attention of one (sequence, head) on AVX-512F:
 * kernels/ref/attn_ref.c with the score rows kept in cache. Compiled with the
 * avx512 context's flags only in this file.
 *
 * q is scaled and rotated into a contiguous copy qr[T][hd], k rotated and
 * transposed (by blocks of 16 x 16) into kt[hd][Tp] (Tp = T rounded up to
 * 16, zero padded), v copied into vc[T][hd] (its rows are ld floats apart in
 * the q/k/v activations, so each row is prefetched ahead); then for each
 * block of 12 query rows: the 12 x T scores, 32 keys at a time (broadcast q,
 * FMA with kt rows), the row softmax while those rows are in L1 (exp as
 * ops_avx2.c's, 16 wide: math512.h), and o = p v, 32 dimensions at a time. Twelve rows
 * share each vector of kt and vc, so the kernel reads them from L2 a third as
 * often as with 4 rows, and runs at ~75 % of the FMA rate. The full T x T
 * matrix is never written (only into attn when the caller asks for the maps).
 *
 * Against the reference: the rotation is bit-identical (same products, no
 * FMA); scores (over d) and p v (over j) accumulate in the same order with
 * FMA (one rounding fewer per term); exp by the degree-7 polynomial (~2 ulp). Probabilities
 * within 5e-6 absolute, outputs within 1e-5 of the larger of 1 and |o|
 * (tests/kernels/test_attention.c). Every row's result depends only on the
 * row and T, not on which thread runs the head. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/x86/attn_x86.h"
#include "kernels/x86/math512.h"

/* Row r of the block: its value SRC(r) broadcast, times x0 and x1. */
#define FMA_ROW(r, SRC)                                                                                \
    b = _mm512_set1_ps(SRC(r));                                                                        \
    a##r##_0 = _mm512_fmadd_ps(b, x0, a##r##_0);                                                       \
    a##r##_1 = _mm512_fmadd_ps(b, x1, a##r##_1)
#define FMA_ROWS(SRC)                                                                                  \
    FMA_ROW(0, SRC); FMA_ROW(1, SRC); FMA_ROW(2, SRC); FMA_ROW(3, SRC); FMA_ROW(4, SRC);              \
    FMA_ROW(5, SRC); FMA_ROW(6, SRC); FMA_ROW(7, SRC); FMA_ROW(8, SRC); FMA_ROW(9, SRC);              \
    FMA_ROW(10, SRC); FMA_ROW(11, SRC)

/* Rotate row x (scaled by s first) into y: the products and sums of
 * pq_rotary_ref. */
void pq_attn_rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y)
{
    int half = hd / 2, i = 0;
    __m512 vs = _mm512_set1_ps(s);
    for (; i + 16 <= half; i += 16) {
        __m512 x1 = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        __m512 x2 = _mm512_mul_ps(_mm512_loadu_ps(x + i + half), vs);
        __m512 vc = _mm512_loadu_ps(c + i), vn = _mm512_loadu_ps(sn + i);
        _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_mul_ps(x1, vc), _mm512_mul_ps(x2, vn)));
        _mm512_storeu_ps(y + i + half, _mm512_add_ps(_mm512_mul_ps(x2, vc), _mm512_mul_ps(x1, vn)));
    }
    for (; i < half; i++) {
        float x1 = x[i] * s, x2 = x[i + half] * s;
        float a = x1 * c[i], bb = x2 * sn[i];
        float cc = x2 * c[i], dd = x1 * sn[i];
        y[i] = a - bb;
        y[i + half] = cc + dd;
    }
}

/* S[r][c0 .. c0 + 32) = q_r . kt[:, c0 ..] for the RB rows qp[r]; the
 * second 16 keys only where m1 (the last block of an odd Tp / 16). */
static inline void scores_rows(const float *const qp[RB], const float *kt, int64_t Tp, int hd, int64_t c0,
                               __mmask16 m1, float *S)
{
    BLOCK_ACCS;
    const float *k = kt + c0;
    for (int d = 0; d < hd; d++, k += Tp) {
        __m512 x0 = _mm512_loadu_ps(k), x1 = _mm512_maskz_loadu_ps(m1, k + 16), b;
#define Q_AT(r) qp[r][d]
        FMA_ROWS(Q_AT);
#undef Q_AT
    }
    const __m512 acc[RB][2] = BLOCK_ACC_ARRAY;
    pq_attn_store_block(acc, RB, S + c0, Tp, 0xffff, m1);
}

/* Softmax of the first T of Tp columns (the rest are padding, set to 0). */
void pq_attn_softmax_row(float *x, int64_t T, int64_t Tp)
{
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int64_t j = 0, full = T / 16 * 16;
    for (; j < full; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + j));
    __mmask16 tail = (__mmask16)((1u << (T - full)) - 1u);
    if (tail) vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, x + full));
    float mx = _mm512_reduce_max_ps(vm);
    if (mx == -INFINITY) mx = 0.0f;
    __m512 m = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
    for (j = 0; j < full; j += 16) {
        __m512 e = pq_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), m));
        _mm512_storeu_ps(x + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (tail) {
        __m512 e = _mm512_maskz_mov_ps(tail, pq_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + full), m)));
        _mm512_storeu_ps(x + full, e);
        acc = _mm512_add_ps(acc, e);
    }
    float s = _mm512_reduce_add_ps(acc);
    __m512 vi = _mm512_set1_ps(1.0f / s);
    for (j = 0; j < Tp; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), vi));
}

/* o_r[h0 .. h0 + 32) = sum_j p_r[j] vc_j[h0 ..] (the lanes m0, m1 select)
 * for the nr rows. */
static inline void pv_rows(const float *P, int64_t Tp, int64_t T, const float *vc, int hd, int h0,
                           __mmask16 m0, __mmask16 m1, float *o, int64_t ldo, int nr)
{
    BLOCK_ACCS;
    const float *vr = vc + h0;
    for (int64_t j = 0; j < T; j++, vr += hd) {
        __m512 x0 = _mm512_maskz_loadu_ps(m0, vr), x1 = _mm512_maskz_loadu_ps(m1, vr + 16), b;
#define P_AT(r) P[(r) * Tp + j]
        FMA_ROWS(P_AT);
#undef P_AT
    }
    const __m512 acc[RB][2] = BLOCK_ACC_ARRAY;
    pq_attn_store_block(acc, nr, o + h0, ldo, m0, m1);
}

void pq_attention_avx512(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int hd,
                         float qscale, const float *cos_t, const float *sin_t, float *o, int64_t ldo,
                         float *attn, float *scratch)
{
    int half = hd / 2;
    int64_t Tp = (T + 15) / 16 * 16, qn = (T * hd + 15) / 16 * 16;
    float *qr = scratch, *vc = scratch + qn, *kt = vc + qn, *S = kt + (int64_t)hd * Tp;
    /* rotated k rows go through vc, then into kt by blocks of 16 x 16 */
    for (int64_t t = 0; t < T; t++) {
        if (t + PF < T) pq_attn_prefetch_rows(q, k, NULL, (t + PF) * ld, hd);
        pq_attn_rotate_row(q + t * ld, hd, qscale, cos_t + t * half, sin_t + t * half, qr + t * hd);
        pq_attn_rotate_row(k + t * ld, hd, 1.0f, cos_t + t * half, sin_t + t * half, vc + t * hd);
    }
    for (int64_t t0 = 0; t0 < Tp; t0 += 16)
        for (int d0 = 0; d0 < hd; d0 += 16)
            for (int d = d0; d < d0 + 16 && d < hd; d++)
                for (int64_t t = t0; t < t0 + 16; t++) kt[d * Tp + t] = t < T ? vc[t * hd + d] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        if (t + PF < T) pq_attn_prefetch_rows(v, NULL, NULL, (t + PF) * ld, hd);
        memcpy(vc + t * hd, v + t * ld, (size_t)hd * sizeof(float));
    }
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int nr = T - i0 < RB ? (int)(T - i0) : RB;
        const float *qp[RB];
        for (int r = 0; r < RB; r++) qp[r] = qr + (i0 + (r < nr ? r : 0)) * hd;
        for (int64_t c0 = 0; c0 < Tp; c0 += 32)
            scores_rows(qp, kt, Tp, hd, c0, Tp - c0 >= 32 ? (__mmask16)0xffff : 0, S);
        for (int r = 0; r < nr; r++) {
            pq_attn_softmax_row(S + r * Tp, T, Tp);
            if (attn) memcpy(attn + (i0 + r) * T, S + r * Tp, (size_t)T * sizeof(float));
        }
        for (int h0 = 0; h0 < hd; h0 += 32) {
            __mmask16 m0, m1;
            pq_attn_col_masks(hd - h0 < 32 ? hd - h0 : 32, &m0, &m1);
            pv_rows(S, Tp, T, vc, hd, h0, m0, m1, o + i0 * ldo, ldo, nr);
        }
    }
}
