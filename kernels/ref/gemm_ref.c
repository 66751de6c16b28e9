/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_ref.c - scalar reference GEMM kernels: they define the numbers the
 * variants must reproduce (int32 exactly; fused fp32 epilogue bit for bit). */
#include <math.h>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/kernels_impl.h"

void pq_gemm_post_apply(const pq_ops *ops, const pq_gemm_epilogue *epi, float *y, int64_t row,
                        int64_t col0, int64_t ncols)
{
    if (!epi) return;
    if (epi->post == PQ_GEMM_POST_GELU) {
        ops->gelu(y, ncols);
    } else if (epi->post == PQ_GEMM_POST_RESIDUAL && epi->residual) {
        const float *r = epi->residual + row * epi->ldr + col0;
        for (int64_t j = 0; j < ncols; j++) y[j] = y[j] + r[j];
    }
}

/* The post-op goes panel by panel, as the variants apply it per tile, so a
 * vectorised GELU sees the same segments everywhere. */
static void post_panels(const pq_ops *ops, const pq_gemm_epilogue *epi, float *yrow, int64_t i,
                        int64_t p0, int64_t j1)
{
    if (!epi || epi->post == PQ_GEMM_POST_NONE) return;
    for (int64_t j = p0 * PQ_GEMM_NR; j < j1; j += PQ_GEMM_NR) {
        int64_t nc = j1 - j < PQ_GEMM_NR ? j1 - j : PQ_GEMM_NR;
        pq_gemm_post_apply(ops, epi, yrow + j, i, j, nc);
    }
}

/* Zero-point correction with wrapping arithmetic: the intermediate terms may
 * leave int32 but the corrected sum fits (|a - za| * |w - zw| * k < 2^31). */
static int32_t corrected(const pq_gemm_i8i8_job *job, int32_t acc, int64_t i, int64_t j)
{
    uint32_t v = (uint32_t)acc;
    const pq_gemm_w *w = job->w;
    if (w->zp && job->a_sums)
        v -= (uint32_t)w->zp[pq_gemm_sidx(w, j, 0)] * (uint32_t)job->a_sums[i];
    if (job->col_add) v += (uint32_t)job->col_add[pq_gemm_sidx(w, j, 0)];
    return (int32_t)v;
}

void pq_gemm_i8i8_ref(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1)
{
    const pq_gemm_w *w = job->w;
    int64_t j1 = p1 * PQ_GEMM_NR < w->n ? p1 * PQ_GEMM_NR : w->n;
    for (int64_t i = 0; i < job->m; i++) {
        const int8_t *a = job->a + i * job->lda;
        for (int64_t j = p0 * PQ_GEMM_NR; j < j1; j++) {
            int32_t acc = 0;
            for (int64_t k = 0; k < w->k; k++) acc += (int32_t)a[k] * pq_gemm_w_code(w, j, k);
            if (!job->y) {
                job->c[i * job->ldc + j] = acc;
                continue;
            }
            float as = job->a_scale[job->a_per_token ? i : 0];
            float v = (float)corrected(job, acc, i, j) * as;
            v = v * w->scale[pq_gemm_sidx(w, j, 0)];
            if (job->epi && job->epi->bias) v = v + job->epi->bias[j];
            job->y[i * job->ldy + j] = v;
        }
        if (job->y) post_panels(job->ops, job->epi, job->y + i * job->ldy, i, p0, j1);
    }
}

/* W4A8: the exact int32 sum of each scale group, corrected as above with
 * the group's activation sums and column terms, scaled and summed over the
 * groups in order (pq_gemm.h). */
void pq_gemm_i4i8_ref(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1)
{
    const pq_gemm_w *w = job->w;
    int64_t j1 = p1 * PQ_GEMM_NR < w->n ? p1 * PQ_GEMM_NR : w->n, ng = w->n_groups;
    for (int64_t i = 0; i < job->m; i++) {
        const int8_t *a = job->a + i * job->lda;
        for (int64_t j = p0 * PQ_GEMM_NR; j < j1; j++) {
            float f = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                int64_t k0 = g * w->group_size, k1 = k0 + w->group_size < w->k ? k0 + w->group_size : w->k;
                int64_t s = pq_gemm_sidx(w, j, g);
                uint32_t acc = 0;
                for (int64_t k = k0; k < k1; k++) acc += (uint32_t)((int32_t)a[k] * pq_gemm_w_code(w, j, k));
                if (!job->y) { /* raw sums: one group only (the driver checks) */
                    job->c[i * job->ldc + j] = (int32_t)acc;
                    break;
                }
                if (w->zp && job->a_sums) acc -= (uint32_t)w->zp[s] * (uint32_t)job->a_sums[i * ng + g];
                if (job->col_add) acc += (uint32_t)job->col_add[s];
                f = fmaf((float)(int32_t)acc, w->scale[s], f); /* one rounding */
            }
            if (!job->y) continue;
            float v = f * job->a_scale[job->a_per_token ? i : 0];
            if (job->epi && job->epi->bias) v = v + job->epi->bias[j];
            job->y[i * job->ldy + j] = v;
        }
        if (job->y) post_panels(job->ops, job->epi, job->y + i * job->ldy, i, p0, j1);
    }
}

void pq_gemm_wonly_ref(const pq_gemm_wonly_job *job, int64_t p0, int64_t p1, float *scratch)
{
    (void)scratch;
    const pq_gemm_w *w = job->w;
    int64_t j1 = p1 * PQ_GEMM_NR < w->n ? p1 * PQ_GEMM_NR : w->n;
    for (int64_t i = 0; i < job->m; i++) {
        const float *x = job->x + i * job->ldx;
        for (int64_t j = p0 * PQ_GEMM_NR; j < j1; j++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < w->k; k++) {
                int64_t s = pq_gemm_sidx(w, j, k / w->group_size);
                int32_t zp = w->zp ? w->zp[s] : 0;
                float deq = (float)(pq_gemm_w_code(w, j, k) - zp) * w->scale[s];
                acc = acc + x[k] * deq;
            }
            if (job->epi && job->epi->bias) acc = acc + job->epi->bias[j];
            job->y[i * job->ldy + j] = acc;
        }
        post_panels(job->ops, job->epi, job->y + i * job->ldy, i, p0, j1);
    }
}

void pq_gemm_quantize_dynamic_ref(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q,
                                  int64_t ldq, float *scale)
{
    for (int64_t i = 0; i < m; i++) {
        const float *r = x + i * ldx;
        float amax = 0.0f;
        for (int64_t j = 0; j < k; j++) amax = fmaxf(amax, fabsf(r[j]));
        float s = fmaxf(amax, 1e-5f) / 127.0f;
        float inv = 1.0f / s;
        scale[i] = s;
        for (int64_t j = 0; j < k; j++) {
            float v = nearbyintf(r[j] * inv);
            v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
            q[i * ldq + j] = (int8_t)v;
        }
    }
}

static size_t no_pack_size(int64_t m, int64_t k)
{
    (void)m, (void)k;
    return 0;
}

static size_t no_scratch(int64_t m, int64_t k)
{
    (void)m, (void)k;
    return 0;
}

const pq_gemm_kernels pq_gemm_kernels_ref = {
    .name = "ref",
    .a_pack_size = no_pack_size,
    .a_pack = NULL,
    .i8i8 = pq_gemm_i8i8_ref,
    .i4i8 = pq_gemm_i4i8_ref,
    .wonly_scratch = no_scratch,
    .wonly = pq_gemm_wonly_ref,
    .quantize_dynamic = pq_gemm_quantize_dynamic_ref,
};
