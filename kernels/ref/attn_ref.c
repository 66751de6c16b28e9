/* SPDX-License-Identifier: Apache-2.0 */
/* attn_ref.c - scalar reference of the fused attention of one (sequence,
 * head): q scaled by hd^-0.5 and rotated, k rotated (the fp32 operations of
 * the rotary slot), scores q k^T, row softmax, p v. The numbers the SIMD
 * variants (kernels/x86/attn_avx512.c) are tested against. */
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"

size_t pq_attention_scratch(int64_t T, int hd)
{
    int64_t Tp = (T + 15) / 16 * 16;
    /* rotated q [T][hd], transposed rotated k [hd][Tp], 4 score rows [Tp],
     * each slice rounded to 16 floats (64 bytes) */
    int64_t qn = (T * hd + 15) / 16 * 16;
    return (size_t)(qn + (int64_t)hd * Tp + 4 * Tp + 16);
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
