/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_x86.h - the int8 GEMM tile epilogue shared by the x86 variants (for
 * files compiled with at least -mavx2 -mfma): int32 accumulators of an
 * mr x 16 tile to raw int32 or to fp32 with the fused epilogue. */
#ifndef PQ_GEMM_X86_H
#define PQ_GEMM_X86_H

#include <immintrin.h>
#include <string.h>

#include "kernels/gemm/gemm_impl.h"
#ifdef __AVX512F__
#include "kernels/kernels_impl.h"
#include "kernels/x86/math512.h"
#endif

#define AINLINE static inline __attribute__((always_inline))

/* Dynamic per-token scale of one row: max(absmax, 1e-5) / 127 (max is exact
 * in any order, so every variant gets the same scale). */
AINLINE float row_scale_dynamic(const float *r, int64_t k)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vm = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) vm = _mm256_max_ps(vm, _mm256_and_ps(_mm256_loadu_ps(r + j), absmask));
    float t[8];
    _mm256_storeu_ps(t, vm);
    float amax = 0.0f;
    for (int u = 0; u < 8; u++) amax = t[u] > amax ? t[u] : amax;
    for (; j < k; j++) {
        float a = r[j] < 0 ? -r[j] : r[j];
        amax = a > amax ? a : amax;
    }
    return (amax > 1e-5f ? amax : 1e-5f) / 127.0f;
}

/* Eight codes clamp(nearbyint(x * inv), -127, 127) in the low 8 bytes. */
AINLINE __m128i quant8_dynamic(const float *x, __m256 vi)
{
    __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), vi),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    __m256i n = _mm256_cvtps_epi32(v);
    __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
    return _mm_packs_epi16(p16, p16);
}

/* The scalar tail of quant8_dynamic. */
AINLINE int8_t quant1_dynamic(float x, float inv)
{
    float v = __builtin_nearbyintf(x * inv);
    return (int8_t)(v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v));
}

/* Whether the job's GELU is pq_gelu512 on 16 columns in registers (the
 * avx512 context's slot, whose lanes compute alike, so the bits are those of
 * the slot called on the stored row; storing two halves and loading them as
 * one vector would stall the store forwarding). */
#ifdef __AVX512F__
AINLINE bool gelu_in_regs(const pq_gemm_i8i8_job *job, int64_t nc)
{
    return nc == 16 && job->epi && job->epi->post == PQ_GEMM_POST_GELU && job->ops->gelu == pq_gelu_avx512;
}
#endif

/* Stores a float row segment of nc <= 16 columns (tail through a buffer). */
AINLINE void store_f(float *y, __m256 v0, __m256 v1, int64_t nc)
{
    if (nc == 16) {
        _mm256_storeu_ps(y, v0);
        _mm256_storeu_ps(y + 8, v1);
        return;
    }
    float t[16];
    _mm256_storeu_ps(t, v0);
    _mm256_storeu_ps(t + 8, v1);
    memcpy(y, t, (size_t)nc * sizeof *y);
}

/* v + bias[col0..col0+nc), bias may be shorter than 16 at the tail. */
AINLINE void add_bias(const float *bias, int64_t nc, __m256 *v0, __m256 *v1)
{
    float t[16] = {0};
    const float *b = bias;
    if (nc < 16) {
        memcpy(t, bias, (size_t)nc * sizeof *t);
        b = t;
    }
    *v0 = _mm256_add_ps(*v0, _mm256_loadu_ps(b));
    *v1 = _mm256_add_ps(*v1, _mm256_loadu_ps(b + 8));
}

static inline void pq_gemm_tile_out_i8(const pq_gemm_i8i8_job *job, const __m256i *acc, int mr, int64_t row0,
                        int64_t p)
{
    const pq_gemm_w *w = job->w;
    int64_t col0 = p * PQ_GEMM_NR, nc = w->n - col0 < 16 ? w->n - col0 : 16;
    for (int r = 0; r < mr; r++) {
        int64_t i = row0 + r;
        __m256i v0 = acc[2 * r], v1 = acc[2 * r + 1];
        if (!job->y && nc == 16) {
            _mm256_storeu_si256((__m256i *)(job->c + i * job->ldc + col0), v0);
            _mm256_storeu_si256((__m256i *)(job->c + i * job->ldc + col0 + 8), v1);
            continue;
        }
        if (!job->y) {
            int32_t t[16];
            _mm256_storeu_si256((__m256i *)t, v0);
            _mm256_storeu_si256((__m256i *)(t + 8), v1);
            memcpy(job->c + i * job->ldc + col0, t, (size_t)nc * sizeof *t);
            continue;
        }
        /* Same wrapping int32 corrections and fp32 operation order as the
         * reference, so the results are bit-identical. ng = 1: index col. */
        if (w->zp && job->a_sums) {
            __m256i as = _mm256_set1_epi32(job->a_sums[i]);
            v0 = _mm256_sub_epi32(v0, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(w->zp + col0)), as));
            v1 = _mm256_sub_epi32(v1, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(w->zp + col0 + 8)), as));
        }
        if (job->col_add) {
            v0 = _mm256_add_epi32(v0, _mm256_loadu_si256((const __m256i *)(job->col_add + col0)));
            v1 = _mm256_add_epi32(v1, _mm256_loadu_si256((const __m256i *)(job->col_add + col0 + 8)));
        }
        __m256 sa = _mm256_set1_ps(job->a_scale[job->a_per_token ? i : 0]);
        __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(v0), sa);
        __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(v1), sa);
        f0 = _mm256_mul_ps(f0, _mm256_loadu_ps(w->scale + col0));
        f1 = _mm256_mul_ps(f1, _mm256_loadu_ps(w->scale + col0 + 8));
        if (job->epi && job->epi->bias) add_bias(job->epi->bias + col0, nc, &f0, &f1);
        float *yr = job->y + i * job->ldy + col0;
#ifdef __AVX512F__
        if (gelu_in_regs(job, nc)) {
            __m512d w2 = _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(f0)), _mm256_castps_pd(f1), 1);
            _mm512_storeu_ps(yr, pq_gelu512(_mm512_castpd_ps(w2)));
            continue;
        }
#endif
        if (job->epi && job->epi->post == PQ_GEMM_POST_RESIDUAL && nc == 16) {
            /* y + r in registers: the same fp32 addition as the reference */
            const float *rr = job->epi->residual + i * job->epi->ldr + col0;
            _mm256_storeu_ps(yr, _mm256_add_ps(f0, _mm256_loadu_ps(rr)));
            _mm256_storeu_ps(yr + 8, _mm256_add_ps(f1, _mm256_loadu_ps(rr + 8)));
            continue;
        }
        store_f(yr, f0, f1, nc);
        if (job->epi && job->epi->post != PQ_GEMM_POST_NONE)
            pq_gemm_post_apply(job->ops, job->epi, yr, i, col0, nc);
    }
}
#endif
