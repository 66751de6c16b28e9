/* SPDX-License-Identifier: Apache-2.0 */
/* attn_grad.c - self-attention forward (probabilities kept) and backward,
 * one job per (sequence, head), the products on single-threaded SGEMM. */
#include "train/attn_grad.h"

#include <math.h>
#include <stdbool.h>
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

/* One (sequence, head) job: its sequence, first token, length, head, and
 * the thread running it. */
typedef struct head_job {
    int64_t s, t0, T;
    int h, tid;
} head_job;

/* body(a, job, ctx) for every (sequence, head) of a, in parallel over
 * a->n_threads with one BLAS thread per job; body returns false when an
 * SGEMM failed. Returns PQ_OK, or the BLAS error when any job failed. */
static pq_status for_each_head(const pq_attn_shape *a, bool (*body)(const pq_attn_shape *, const head_job *, void *),
                               void *ctx)
{
    int64_t n_jobs = a->n_seqs * a->n_heads;
    _Atomic int failed = 0;
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(a->n_threads) if (a->n_threads > 1)
#endif
    for (int64_t job = 0; job < n_jobs; job++) {
        head_job j = {.s = job / a->n_heads, .h = (int)(job % a->n_heads)};
        j.t0 = a->offsets[j.s];
        j.T = a->offsets[j.s + 1] - j.t0;
#if PQ_HAVE_OPENMP
        j.tid = omp_get_thread_num();
#endif
        if (!body(a, &j, ctx)) failed = 1;
    }
#if PQ_HAVE_OPENMP
    pq_blas_set_threads(a->n_threads);
#endif
    return failed ? pq_blas_load() : PQ_OK;
}

typedef struct fwd_ctx {
    const pq_ops *ref; /* the scalar softmax: its sums do not depend on the CPU */
    float *qkv, *P, *o;
    const int64_t *poff;
} fwd_ctx;

static bool head_fwd(const pq_attn_shape *a, const head_job *j, void *ctx)
{
    const fwd_ctx *c = ctx;
    int hd = a->head_dim;
    int64_t D = (int64_t)a->n_heads * hd, ld = 3 * D, T = j->T;
    float *qh = c->qkv + j->t0 * ld + j->h * hd, *kh = qh + D;
    const float *vh = qh + 2 * D;
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < hd; i++) qh[t * ld + i] *= a->qscale;
    pq_rotary_apply_ref(qh, T, ld, hd, a->cos_t, a->sin_t, 0);
    pq_rotary_apply_ref(kh, T, ld, hd, a->cos_t, a->sin_t, 0);
    float *Ph = c->P + c->poff[j->s] + (int64_t)j->h * T * T;
    if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, 1.0f, qh, (int)ld, kh, (int)ld, 0.0f,
                 Ph, (int)T) != PQ_OK)
        return false;
    c->ref->softmax_rows(Ph, T, T);
    return pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, Ph, (int)T, vh, (int)ld,
                    0.0f, c->o + j->t0 * D + j->h * hd, (int)D) == PQ_OK;
}

pq_status pq_attn_fwd(const pq_attn_shape *a, float *qkv, float *P, const int64_t *poff, float *o)
{
    pq_ops ref;
    pq_ops_init_ref(&ref);
    fwd_ctx c = {.ref = &ref, .qkv = qkv, .P = P, .o = o, .poff = poff};
    return for_each_head(a, head_fwd, &c);
}

typedef struct bwd_ctx {
    const float *qkv, *P, *do_;
    const int64_t *poff;
    float *dqkv, *scratch;
} bwd_ctx;

static bool head_bwd(const pq_attn_shape *a, const head_job *j, void *ctx)
{
    const bwd_ctx *c = ctx;
    int hd = a->head_dim;
    int64_t D = (int64_t)a->n_heads * hd, ld = 3 * D, T = j->T;
    float *dP = c->scratch + (size_t)j->tid * (size_t)(a->max_T * a->max_T);
    const float *qh = c->qkv + j->t0 * ld + j->h * hd, *kh = qh + D, *vh = qh + 2 * D;
    const float *Ph = c->P + c->poff[j->s] + (int64_t)j->h * T * T, *dOh = c->do_ + j->t0 * D + j->h * hd;
    float *dq = c->dqkv + j->t0 * ld + j->h * hd, *dk = dq + D, *dv = dq + 2 * D;
    /* dP = dO v^T ; dv = P^T dO */
    if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, 1.0f, dOh, (int)D, vh, (int)ld, 0.0f,
                 dP, (int)T) != PQ_OK ||
        pq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, Ph, (int)T, dOh, (int)D, 0.0f,
                 dv, (int)ld) != PQ_OK)
        return false;
    /* softmax backward, in place: dS = P * (dP - sum_j dP P) */
    for (int64_t i = 0; i < T; i++) {
        float *r = dP + i * T;
        const float *p = Ph + i * T;
        float dot = 0.0f;
        for (int64_t k = 0; k < T; k++) dot += r[k] * p[k];
        for (int64_t k = 0; k < T; k++) r[k] = p[k] * (r[k] - dot);
    }
    /* dq = dS k ; dk = dS^T q (rotated, scaled operands) */
    if (pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, dP, (int)T, kh, (int)ld, 0.0f,
                 dq, (int)ld) != PQ_OK ||
        pq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, dP, (int)T, qh, (int)ld, 0.0f,
                 dk, (int)ld) != PQ_OK)
        return false;
    pq_rotary_apply_ref(dq, T, ld, hd, a->cos_t, a->sin_t, 1);
    pq_rotary_apply_ref(dk, T, ld, hd, a->cos_t, a->sin_t, 1);
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < hd; i++) dq[t * ld + i] *= a->qscale;
    return true;
}

pq_status pq_attn_bwd(const pq_attn_shape *a, const float *qkv, const float *P, const int64_t *poff,
                      const float *do_, float *dqkv, float *scratch)
{
    bwd_ctx c = {.qkv = qkv, .P = P, .do_ = do_, .poff = poff, .dqkv = dqkv, .scratch = scratch};
    return for_each_head(a, head_bwd, &c);
}
