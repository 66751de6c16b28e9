/* SPDX-License-Identifier: Apache-2.0 */
/* attn_avx512.c - the fused attention of one (sequence, head) on AVX-512F:
 * kernels/ref/attn_ref.c with the score rows kept in cache. Compiled with the
 * avx512 context's flags only in this file.
 *
 * q is scaled and rotated into a contiguous copy, k rotated into a transposed
 * copy kt[hd][Tp] (Tp = T rounded up to 16, zero padded); then for each block
 * of 4 query rows: the 4 x T scores (broadcast q, FMA with kt rows), the row
 * softmax on those rows while they are in L1 (exp as ops_avx2.c's, 16 wide),
 * and o = p v (broadcast p, FMA with v rows). The full T x T matrix is never
 * written (only into attn when the caller asks for the maps).
 *
 * Against the reference: the rotation is bit-identical (same products, no
 * FMA); scores and p v accumulate in the same order with FMA (one rounding
 * fewer per term); exp by the degree-7 polynomial (~2 ulp). Probabilities
 * within 5e-6 absolute, outputs within 1e-5 of the larger of 1 and |o|
 * (tests/kernels/test_attention.c). Every row's result depends only on the
 * row and T, not on which thread runs the head. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/x86/attn_x86.h"

#define RB 4 /* query rows per block */

static inline __m512 exp512(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.3f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    p = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps((__mmask16)~under, p);
}

/* Rotate row x (scaled by s first) into y (stride 1) or, transposed, into
 * column t of kt (stride Tp). Same products and sums as pq_rotary_ref. */
static void rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y,
                       int64_t ystride);

void pq_attn_rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y)
{
    rotate_row(x, hd, s, c, sn, y, 1);
}

static void rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y,
                       int64_t ystride)
{
    int half = hd / 2, i = 0;
    if (ystride == 1) {
        __m512 vs = _mm512_set1_ps(s);
        for (; i + 16 <= half; i += 16) {
            __m512 x1 = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
            __m512 x2 = _mm512_mul_ps(_mm512_loadu_ps(x + i + half), vs);
            __m512 vc = _mm512_loadu_ps(c + i), vn = _mm512_loadu_ps(sn + i);
            _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_mul_ps(x1, vc), _mm512_mul_ps(x2, vn)));
            _mm512_storeu_ps(y + i + half, _mm512_add_ps(_mm512_mul_ps(x2, vc), _mm512_mul_ps(x1, vn)));
        }
    }
    for (; i < half; i++) {
        float x1 = x[i] * s, x2 = x[i + half] * s;
        float a = x1 * c[i], bb = x2 * sn[i];
        float cc = x2 * c[i], dd = x1 * sn[i];
        y[i * ystride] = a - bb;
        y[(i + half) * ystride] = cc + dd;
    }
}

/* S[r][c0 .. c0 + 16 nv) = q_r . kt[:, c0 ..] for the 4 rows qp[r]; nv 1..4. */
static inline void scores_4rows(const float *const qp[RB], const float *kt, int64_t Tp, int hd, int64_t c0,
                                int nv, float *S)
{
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const float *k = kt + c0;
    if (nv == 4) {
        for (int d = 0; d < hd; d++, k += Tp) {
            __m512 k0 = _mm512_loadu_ps(k), k1 = _mm512_loadu_ps(k + 16);
            __m512 k2 = _mm512_loadu_ps(k + 32), k3 = _mm512_loadu_ps(k + 48);
            __m512 b = _mm512_set1_ps(qp[0][d]);
            a00 = _mm512_fmadd_ps(b, k0, a00); a01 = _mm512_fmadd_ps(b, k1, a01);
            a02 = _mm512_fmadd_ps(b, k2, a02); a03 = _mm512_fmadd_ps(b, k3, a03);
            b = _mm512_set1_ps(qp[1][d]);
            a10 = _mm512_fmadd_ps(b, k0, a10); a11 = _mm512_fmadd_ps(b, k1, a11);
            a12 = _mm512_fmadd_ps(b, k2, a12); a13 = _mm512_fmadd_ps(b, k3, a13);
            b = _mm512_set1_ps(qp[2][d]);
            a20 = _mm512_fmadd_ps(b, k0, a20); a21 = _mm512_fmadd_ps(b, k1, a21);
            a22 = _mm512_fmadd_ps(b, k2, a22); a23 = _mm512_fmadd_ps(b, k3, a23);
            b = _mm512_set1_ps(qp[3][d]);
            a30 = _mm512_fmadd_ps(b, k0, a30); a31 = _mm512_fmadd_ps(b, k1, a31);
            a32 = _mm512_fmadd_ps(b, k2, a32); a33 = _mm512_fmadd_ps(b, k3, a33);
        }
        float *s = S + c0;
        _mm512_storeu_ps(s, a00); _mm512_storeu_ps(s + 16, a01);
        _mm512_storeu_ps(s + 32, a02); _mm512_storeu_ps(s + 48, a03);
        s += Tp;
        _mm512_storeu_ps(s, a10); _mm512_storeu_ps(s + 16, a11);
        _mm512_storeu_ps(s + 32, a12); _mm512_storeu_ps(s + 48, a13);
        s += Tp;
        _mm512_storeu_ps(s, a20); _mm512_storeu_ps(s + 16, a21);
        _mm512_storeu_ps(s + 32, a22); _mm512_storeu_ps(s + 48, a23);
        s += Tp;
        _mm512_storeu_ps(s, a30); _mm512_storeu_ps(s + 16, a31);
        _mm512_storeu_ps(s + 32, a32); _mm512_storeu_ps(s + 48, a33);
        return;
    }
    /* the last 16..48 columns, one vector at a time */
    for (int x = 0; x < nv; x++) {
        const float *kk = kt + c0 + 16 * x;
        a00 = a10 = a20 = a30 = _mm512_setzero_ps();
        for (int d = 0; d < hd; d++, kk += Tp) {
            __m512 k0 = _mm512_loadu_ps(kk);
            a00 = _mm512_fmadd_ps(_mm512_set1_ps(qp[0][d]), k0, a00);
            a10 = _mm512_fmadd_ps(_mm512_set1_ps(qp[1][d]), k0, a10);
            a20 = _mm512_fmadd_ps(_mm512_set1_ps(qp[2][d]), k0, a20);
            a30 = _mm512_fmadd_ps(_mm512_set1_ps(qp[3][d]), k0, a30);
        }
        float *s = S + c0 + 16 * x;
        _mm512_storeu_ps(s, a00);
        _mm512_storeu_ps(s + Tp, a10);
        _mm512_storeu_ps(s + 2 * Tp, a20);
        _mm512_storeu_ps(s + 3 * Tp, a30);
    }
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
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), m));
        _mm512_storeu_ps(x + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (tail) {
        __m512 e = _mm512_maskz_mov_ps(tail, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + full), m)));
        _mm512_storeu_ps(x + full, e);
        acc = _mm512_add_ps(acc, e);
    }
    float s = _mm512_reduce_add_ps(acc);
    __m512 vi = _mm512_set1_ps(1.0f / s);
    for (j = 0; j < Tp; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), vi));
}

/* o_r[h0 .. h0 + w) = sum_j p_r[j] v_j[h0 ..], w <= 64, for the nr rows. */
static inline void pv_4rows(const float *P, int64_t Tp, int64_t T, const float *v, int64_t ld, int h0, int w,
                            float *o, int64_t ldo, int nr)
{
    __mmask16 mk[4];
    pq_attn_col_masks(w, mk);
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const float *p0 = P, *p1 = P + Tp, *p2 = P + 2 * Tp, *p3 = P + 3 * Tp;
    const float *vr = v + h0;
    for (int64_t j = 0; j < T; j++, vr += ld) {
        __m512 v0 = _mm512_maskz_loadu_ps(mk[0], vr), v1 = _mm512_maskz_loadu_ps(mk[1], vr + 16);
        __m512 v2 = _mm512_maskz_loadu_ps(mk[2], vr + 32), v3 = _mm512_maskz_loadu_ps(mk[3], vr + 48);
        __m512 b = _mm512_set1_ps(p0[j]);
        a00 = _mm512_fmadd_ps(b, v0, a00); a01 = _mm512_fmadd_ps(b, v1, a01);
        a02 = _mm512_fmadd_ps(b, v2, a02); a03 = _mm512_fmadd_ps(b, v3, a03);
        b = _mm512_set1_ps(p1[j]);
        a10 = _mm512_fmadd_ps(b, v0, a10); a11 = _mm512_fmadd_ps(b, v1, a11);
        a12 = _mm512_fmadd_ps(b, v2, a12); a13 = _mm512_fmadd_ps(b, v3, a13);
        b = _mm512_set1_ps(p2[j]);
        a20 = _mm512_fmadd_ps(b, v0, a20); a21 = _mm512_fmadd_ps(b, v1, a21);
        a22 = _mm512_fmadd_ps(b, v2, a22); a23 = _mm512_fmadd_ps(b, v3, a23);
        b = _mm512_set1_ps(p3[j]);
        a30 = _mm512_fmadd_ps(b, v0, a30); a31 = _mm512_fmadd_ps(b, v1, a31);
        a32 = _mm512_fmadd_ps(b, v2, a32); a33 = _mm512_fmadd_ps(b, v3, a33);
    }
    const __m512 acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23},
                              {a30, a31, a32, a33}};
    pq_attn_store_rows(acc, nr, mk, o, ldo, h0);
}

void pq_attention_avx512(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int hd,
                         float qscale, const float *cos_t, const float *sin_t, float *o, int64_t ldo,
                         float *attn, float *scratch)
{
    int half = hd / 2;
    int64_t Tp = (T + 15) / 16 * 16, qn = (T * hd + 15) / 16 * 16;
    float *qr = scratch, *kt = scratch + qn, *S = kt + (int64_t)hd * Tp;
    for (int64_t t = 0; t < T; t++) {
        rotate_row(q + t * ld, hd, qscale, cos_t + t * half, sin_t + t * half, qr + t * hd, 1);
        rotate_row(k + t * ld, hd, 1.0f, cos_t + t * half, sin_t + t * half, kt + t, Tp);
    }
    for (int d = 0; d < hd; d++)
        for (int64_t t = T; t < Tp; t++) kt[d * Tp + t] = 0.0f;
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        int nr = T - i0 < RB ? (int)(T - i0) : RB;
        const float *qp[RB];
        for (int r = 0; r < RB; r++) qp[r] = qr + (i0 + (r < nr ? r : 0)) * hd;
        for (int64_t c0 = 0; c0 < Tp; c0 += 64) {
            int nv = Tp - c0 >= 64 ? 4 : (int)((Tp - c0) / 16);
            scores_4rows(qp, kt, Tp, hd, c0, nv, S);
        }
        for (int r = 0; r < nr; r++) {
            pq_attn_softmax_row(S + r * Tp, T, Tp);
            if (attn) memcpy(attn + (i0 + r) * T, S + r * Tp, (size_t)T * sizeof(float));
        }
        for (int h0 = 0; h0 < hd; h0 += 64)
            pv_4rows(S, Tp, T, v, ld, h0, hd - h0 < 64 ? hd - h0 : 64, o + i0 * ldo, ldo, nr);
    }
}
