/* SPDX-License-Identifier: Apache-2.0 */
/* attn_ref.c - scalar references of the fused attention of one (sequence,
 * head): q scaled by hd^-0.5 and rotated, k rotated (the fp32 operations of
 * the rotary slot), scores q k^T, row softmax, p v; in fp32, and with q, k,
 * v and p rounded to bf16 (fp32 sums). The numbers the SIMD variants
 * (kernels/x86/attn_avx512*.c) are tested against. */
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"

size_t pq_attention_scratch(int64_t T, int hd)
{
    int64_t Tp = (T + 15) / 16 * 16;
    /* rotated q [T][hd], a copy of v [T][hd], transposed rotated k
     * [hd][Tp], up to 16 score rows [Tp] (the bf16 variant: q, k and v as
     * bf16, 12 fp32 score rows, 12 bf16 probability rows and the rotated k
     * rows in fp32), each slice rounded to 16 floats (64 bytes) */
    int64_t qn = (T * hd + 15) / 16 * 16;
    return (size_t)(2 * qn + (int64_t)hd * Tp + 18 * Tp + 64);
}

/* Split-half rotation of one row of hd floats, scaled first by s (1: none),
 * with the products and sums of pq_rotary_ref. */
static void rotate_row(const float *x, int hd, float s, const float *c, const float *sn, float *y)
{
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float x1 = x[i] * s, x2 = x[i + half] * s;
        float a = x1 * c[i], bb = x2 * sn[i];
        float cc = x2 * c[i], dd = x1 * sn[i];
        y[i] = a - bb;
        y[i + half] = cc + dd;
    }
}

void pq_attention_ref(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int hd,
                      float qscale, const float *cos_t, const float *sin_t, float *o, int64_t ldo,
                      float *attn, float *scratch)
{
    int half = hd / 2;
    float *qr = scratch, *kr = scratch + T * hd;
    for (int64_t t = 0; t < T; t++) {
        rotate_row(q + t * ld, hd, qscale, cos_t + t * half, sin_t + t * half, qr + t * hd);
        rotate_row(k + t * ld, hd, 1.0f, cos_t + t * half, sin_t + t * half, kr + t * hd);
    }
    /* one row of probabilities at a time, in the scratch after k */
    float *row = kr + T * hd;
    for (int64_t i = 0; i < T; i++) {
        const float *qi = qr + i * hd;
        for (int64_t j = 0; j < T; j++) {
            const float *kj = kr + j * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += qi[d] * kj[d];
            row[j] = s;
        }
        pq_softmax_rows_ref(row, 1, T);
        if (attn) memcpy(attn + i * T, row, (size_t)T * sizeof(float));
        float *oi = o + i * ldo;
        for (int d = 0; d < hd; d++) oi[d] = 0.0f;
        for (int64_t j = 0; j < T; j++) {
            const float *vj = v + j * ld;
            float pj = row[j];
            for (int d = 0; d < hd; d++) oi[d] += pj * vj[d];
        }
    }
}

/* f rounded to bf16 (round to nearest even, finite inputs), as a float. */
static float round_bf16(float f)
{
    union {
        float f;
        uint32_t u;
    } x = {f};
    x.u = (x.u + 0x7fffu + ((x.u >> 16) & 1u)) & 0xffff0000u;
    return x.f;
}

/* sum over pairs of (a[2i+1] b[2i+1], then a[2i] b[2i]) in fp32. One
 * product per iteration: GCC 12's vectorizer miscompiles the two-statement
 * reduction chain of this loop written with both products in one body. */
static float dot_pairs(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int d = 0; d < n; d++) {
        int e = d ^ 1; /* 1, 0, 3, 2, ... */
        s += a[e] * b[e];
    }
    return s;
}

/* Products of two bf16 are exact in fp32: each pair adds its odd then its
 * even product to the fp32 sum, one rounding each (as VDPBF16PS does). */
void pq_attention_bf16_ref(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int hd,
                           float qscale, const float *cos_t, const float *sin_t, float *o, int64_t ldo,
                           float *attn, float *scratch)
{
    int half = hd / 2;
    float *qr = scratch, *kr = scratch + T * hd, *row = kr + T * hd;
    for (int64_t t = 0; t < T; t++) {
        rotate_row(q + t * ld, hd, qscale, cos_t + t * half, sin_t + t * half, qr + t * hd);
        rotate_row(k + t * ld, hd, 1.0f, cos_t + t * half, sin_t + t * half, kr + t * hd);
        for (int d = 0; d < hd; d++) {
            qr[t * hd + d] = round_bf16((qr[t * hd + d]));
            kr[t * hd + d] = round_bf16((kr[t * hd + d]));
        }
    }
    for (int64_t i = 0; i < T; i++) {
        const float *qi = qr + i * hd;
        for (int64_t j = 0; j < T; j++) {
            const float *kj = kr + j * hd;
            row[j] = dot_pairs(qi, kj, hd);
        }
        pq_softmax_rows_ref(row, 1, T);
        if (attn) memcpy(attn + i * T, row, (size_t)T * sizeof(float));
        float *oi = o + i * ldo;
        for (int d = 0; d < hd; d++) {
            float a = 0.0f;
            for (int64_t j = 0; j < T; j += 2) {
                if (j + 1 < T) a += round_bf16((row[j + 1])) * round_bf16((v[(j + 1) * ld + d]));
                a += round_bf16((row[j])) * round_bf16((v[j * ld + d]));
            }
            oi[d] = a;
        }
    }
}
