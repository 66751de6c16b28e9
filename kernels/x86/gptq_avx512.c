/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_avx512.c - the GPTQ column loop (pq_gptq_block) on AVX-512 vectors
 * of 16 rows, the scheme of gptq_avx2.c with 8 columns of 32 rows in
 * registers. Equal to kernels/ref/gptq_ref.c bit for bit: the same fp32
 * product, clamp, rounding (the same 1.5 * 2^23 addition), true division
 * and separate product and difference per update (this library is built
 * with -ffp-contract=off, so no intrinsic pair is fused into an FMA).
 * Rows are independent, so vectors run across rows. The updates are applied
 * left-looking: a group of columns is held in registers and receives the errors of every earlier column of the block, in ascending
 * column order, just before it is quantized: each element sees the
 * reference's operations in the reference's order. Rows left over from the
 * 32- and 16-row vectors go to the AVX2 variant (then the reference). */
#include <immintrin.h>

#include "kernels/kernels_impl.h"

#define PQ_GPTQ_COLS 8 /* columns held in registers */

/* Quantize column k of rows [r, r + 16) from its current value y: stores the
 * codes and the scaled error, and returns the error. */
static inline __m512 quant_col(const pq_gptq_block *b, int64_t k, int64_t r, __m512 y)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const int64_t p = b->goff[k] + r, o = k * b->ld + r;
    __m512 v = _mm512_mul_ps(y, _mm512_loadu_ps(b->inv + p));
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_loadu_ps(b->lo + p)), _mm512_loadu_ps(b->hi + p));
    const __m512 rv = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
    const __m512i c = _mm512_add_epi32(_mm512_cvttps_epi32(rv), _mm512_loadu_si512(b->zp + p));
    /* codes are in [-128, 127]: the truncation to bytes keeps them */
    _mm_storeu_si128((__m128i *)(b->q + o), _mm512_cvtepi32_epi8(c));
    const __m512 e = _mm512_div_ps(_mm512_sub_ps(y, _mm512_mul_ps(rv, _mm512_loadu_ps(b->scale + p))),
                                   _mm512_set1_ps(b->u[k * b->ldu + k]));
    _mm512_storeu_ps(b->e + o, e);
    return e;
}

/* Rows [r, r + 16 * NV) of the whole block. NV is 1 or 2 (a constant at each
 * call, so the arrays below live in registers). */
static inline __attribute__((always_inline)) void block_rows(const pq_gptq_block *b, int64_t r, const int NV)
{
    const int64_t ld = b->ld, nb = b->nb, ldu = b->ldu;
    const float *U = b->u;
    int64_t j0 = 0;
    for (; j0 + PQ_GPTQ_COLS <= nb; j0 += PQ_GPTQ_COLS) {
        __m512 y[PQ_GPTQ_COLS][2];
        for (int c = 0; c < PQ_GPTQ_COLS; c++)
            for (int v = 0; v < NV; v++) y[c][v] = _mm512_loadu_ps(b->x + (j0 + c) * ld + r + 16 * v);
        for (int64_t k = 0; k < j0; k++) {
            const float *uk = U + k * ldu + j0;
            __m512 ek[2];
            for (int v = 0; v < NV; v++) ek[v] = _mm512_loadu_ps(b->e + k * ld + r + 16 * v);
            for (int c = 0; c < PQ_GPTQ_COLS; c++) {
                const __m512 uc = _mm512_set1_ps(uk[c]);
                for (int v = 0; v < NV; v++) y[c][v] = _mm512_sub_ps(y[c][v], _mm512_mul_ps(ek[v], uc));
            }
        }
        for (int c = 0; c < PQ_GPTQ_COLS; c++) {
            const int64_t k = j0 + c;
            __m512 ek[2];
            for (int v = 0; v < NV; v++) ek[v] = quant_col(b, k, r + 16 * v, y[c][v]);
            for (int c2 = c + 1; c2 < PQ_GPTQ_COLS; c2++) {
                const __m512 uc = _mm512_set1_ps(U[k * ldu + j0 + c2]);
                for (int v = 0; v < NV; v++) y[c2][v] = _mm512_sub_ps(y[c2][v], _mm512_mul_ps(ek[v], uc));
            }
        }
    }
    for (; j0 < nb; j0++) {
        __m512 y[2];
        for (int v = 0; v < NV; v++) y[v] = _mm512_loadu_ps(b->x + j0 * ld + r + 16 * v);
        for (int64_t k = 0; k < j0; k++) {
            const __m512 uc = _mm512_set1_ps(U[k * ldu + j0]);
            for (int v = 0; v < NV; v++)
                y[v] = _mm512_sub_ps(y[v], _mm512_mul_ps(_mm512_loadu_ps(b->e + k * ld + r + 16 * v), uc));
        }
        for (int v = 0; v < NV; v++) quant_col(b, j0, r + 16 * v, y[v]);
    }
}

void pq_gptq_block_avx512(const pq_gptq_block *b, int64_t r0, int64_t r1)
{
    int64_t r = r0;
    for (; r + 32 <= r1; r += 32) block_rows(b, r, 2);
    for (; r + 16 <= r1; r += 16) block_rows(b, r, 1);
    if (r < r1) pq_gptq_block_avx2(b, r, r1);
}
