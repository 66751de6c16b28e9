/* SPDX-License-Identifier: Apache-2.0 */
/* attn_grad.c - self-attention forward (probabilities kept) and backward,
 * one job per (sequence, head), the products on single-threaded SGEMM. */
#include "train/attn_grad.h"

#include <math.h>
#include <string.h>

#include "kernels/pq_kernels.h"
#include "model/blas.h"
#include "pq_config.h"

#if PQ_HAVE_OPENMP
#include <omp.h>
#endif

int64_t pq_attn_prob_floats(const pq_attn_shape *a, int64_t *poff)
{
    int64_t n = 0;
    for (int64_t s = 0; s < a->n_seqs; s++) {
        int64_t T = a->offsets[s + 1] - a->offsets[s];
        if (poff) poff[s] = n;
        n += (int64_t)a->n_heads * T * T;
    }
    if (poff) poff[a->n_seqs] = n;
    return n;
}

void pq_rotary_apply_ref(float *x, int64_t n_tokens, int64_t ld, int hd, const float *cos_t,
                         const float *sin_t, int inverse)
{
    int half = hd / 2;
    for (int64_t t = 0; t < n_tokens; t++) {
        float *r = x + t * ld;
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int i = 0; i < half; i++) {
            float x1 = r[i], x2 = r[i + half];
            if (inverse) {
                r[i] = x1 * c[i] + x2 * s[i];
                r[i + half] = x2 * c[i] - x1 * s[i];
            } else {
                r[i] = x1 * c[i] - x2 * s[i];
                r[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

/* Sequence, its first token, its length and the head of job (s * H + h). */
static void job_at(const pq_attn_shape *a, int64_t job, int64_t *s, int64_t *t0, int64_t *T, int *h)
{
    *s = job / a->n_heads;
    *h = (int)(job % a->n_heads);
    *t0 = a->offsets[*s];
    *T = a->offsets[*s + 1] - *t0;
}

pq_status pq_attn_fwd(const pq_attn_shape *a, float *qkv, float *P, const int64_t *poff, float *o)
{
    pq_ops ref; /* the scalar softmax: its sums do not depend on the CPU */
    pq_ops_init_ref(&ref);
    int H = a->n_heads, hd = a->head_dim;
    int64_t D = (int64_t)H * hd, ld = 3 * D, n_jobs = a->n_seqs * H;
    _Atomic int failed = 0;
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(a->n_threads) if (a->n_threads > 1)
#endif
    for (int64_t job = 0; job < n_jobs; job++) {
        int64_t s, t0, T;
        int h;
        job_at(a, job, &s, &t0, &T, &h);
        float *qh = qkv + t0 * ld + h * hd, *kh = qh + D;
        const float *vh = qh + 2 * D;
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < hd; j++) qh[t * ld + j] *= a->qscale;
        pq_rotary_apply_ref(qh, T, ld, hd, a->cos_t, a->sin_t, 0);
        pq_rotary_apply_ref(kh, T, ld, hd, a->cos_t, a->sin_t, 0);
        float *Ph = P + poff[s] + (int64_t)h * T * T;
        if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, 1.0f, qh, (int)ld, kh, (int)ld,
                     0.0f, Ph, (int)T) != PQ_OK) {
            failed = 1;
            continue;
        }
        ref.softmax_rows(Ph, T, T);
        if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, Ph, (int)T, vh, (int)ld,
                     0.0f, o + t0 * D + h * hd, (int)D) != PQ_OK)
            failed = 1;
    }
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(a->n_threads);
#endif
    return failed ? pq_blas_load() : PQ_OK;
}

pq_status pq_attn_bwd(const pq_attn_shape *a, const float *qkv, const float *P, const int64_t *poff,
                      const float *do_, float *dqkv, float *scratch)
{
    int H = a->n_heads, hd = a->head_dim;
    int64_t D = (int64_t)H * hd, ld = 3 * D, n_jobs = a->n_seqs * H;
    _Atomic int failed = 0;
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(a->n_threads) if (a->n_threads > 1)
#endif
    for (int64_t job = 0; job < n_jobs; job++) {
        int64_t s, t0, T;
        int h, tid = 0;
        job_at(a, job, &s, &t0, &T, &h);
#if PQ_HAVE_OPENMP
        tid = omp_get_thread_num();
#endif
        float *dP = scratch + (size_t)tid * (size_t)(a->max_T * a->max_T);
        const float *qh = qkv + t0 * ld + h * hd, *kh = qh + D, *vh = qh + 2 * D;
        const float *Ph = P + poff[s] + (int64_t)h * T * T, *dOh = do_ + t0 * D + h * hd;
        float *dq = dqkv + t0 * ld + h * hd, *dk = dq + D, *dv = dq + 2 * D;
        /* dP = dO v^T ; dv = P^T dO */
        if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, 1.0f, dOh, (int)D, vh, (int)ld,
                     0.0f, dP, (int)T) != PQ_OK ||
            pq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, Ph, (int)T, dOh, (int)D,
                     0.0f, dv, (int)ld) != PQ_OK) {
            failed = 1;
            continue;
        }
        /* softmax backward, in place: dS = P * (dP - sum_j dP P) */
        for (int64_t i = 0; i < T; i++) {
            float *r = dP + i * T;
            const float *p = Ph + i * T;
            float dot = 0.0f;
            for (int64_t j = 0; j < T; j++) dot += r[j] * p[j];
            for (int64_t j = 0; j < T; j++) r[j] = p[j] * (r[j] - dot);
        }
        /* dq = dS k ; dk = dS^T q (rotated, scaled operands) */
        if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, dP, (int)T, kh, (int)ld,
                     0.0f, dq, (int)ld) != PQ_OK ||
            pq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, dP, (int)T, qh, (int)ld,
                     0.0f, dk, (int)ld) != PQ_OK) {
            failed = 1;
            continue;
        }
        pq_rotary_apply_ref(dq, T, ld, hd, a->cos_t, a->sin_t, 1);
        pq_rotary_apply_ref(dk, T, ld, hd, a->cos_t, a->sin_t, 1);
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < hd; j++) dq[t * ld + j] *= a->qscale;
    }
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(a->n_threads);
#endif
    return failed ? pq_blas_load() : PQ_OK;
}
