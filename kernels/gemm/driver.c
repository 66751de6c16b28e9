/* SPDX-License-Identifier: Apache-2.0 */
/* driver.c - the GEMM framework: argument checks, scratch, packing of A and
 * the split of output panels over threads, around the micro-kernels of the
 * context each call is given (ops->gemm). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm/gemm_impl.h"
#include "pq_config.h"

#if PQ_HAVE_OPENMP
#include <omp.h>
#endif

void pq_gemm_i8_row_sums(const int8_t *a, int64_t m, int64_t k, int64_t lda, int32_t *sums)
{
    for (int64_t i = 0; i < m; i++) {
        int32_t s = 0;
        for (int64_t j = 0; j < k; j++) s += a[i * lda + j];
        sums[i] = s;
    }
}

void pq_gemm_quantize_rows_dynamic(const pq_ops *ops, const float *x, int64_t m, int64_t k,
                                   int64_t ldx, int8_t *q, int64_t ldq, float *scale)
{
    ops->gemm.quantize_dynamic(x, m, k, ldx, q, ldq, scale);
}

void pq_gemm_quantize_rows_static(const float *x, int64_t m, int64_t k, int64_t ldx,
                                  float scale, int32_t zp, int32_t qmin, int32_t qmax,
                                  int8_t *q, int64_t ldq)
{
    float inv = 1.0f / scale;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++) {
            float v = (float)zp + nearbyintf(x[i * ldx + j] * inv);
            v = v < (float)qmin ? (float)qmin : (v > (float)qmax ? (float)qmax : v);
            q[i * ldq + j] = (int8_t)v;
        }
}

static int threads_for(int n_threads, int64_t n_panels)
{
    int nt = n_threads;
#if PQ_HAVE_OPENMP
    if (nt <= 0) nt = omp_get_max_threads();
#endif
    if (nt <= 0) nt = 1;
    if (nt > n_panels) nt = (int)n_panels;
    return nt;
}

/* Static, deterministic split of panels: thread t gets [np*t/nt, np*(t+1)/nt). */
static void run_i8i8(const pq_ops *ops, const pq_gemm_i8i8_job *job, int nt)
{
    int64_t np = job->w->n_panels;
    void (*kern)(const pq_gemm_i8i8_job *, int64_t, int64_t) = job->w->bits == 4 ? ops->gemm.i4i8 : ops->gemm.i8i8;
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1)
#endif
    for (int t = 0; t < nt; t++) kern(job, np * t / nt, np * (t + 1) / nt);
}

/* A weight packed for int8 x int8 and an activation shape that fits it. */
static pq_kstatus check_i8i8(const int8_t *a, int64_t m, int64_t lda, const pq_gemm_w *w)
{
    if (!w || w->use != PQ_GEMM_USE_I8I8) return PQ_KBADARG;
    if (m < 0 || (m > 0 && (!a || lda < w->k))) return PQ_KBADARG;
    return PQ_KOK;
}

/* The residual is read tile by tile while y is written: they must not overlap. */
static pq_kstatus check_epi(const pq_gemm_epilogue *epi, const float *y, int64_t m, int64_t ldy,
                           int64_t n)
{
    if (!epi || epi->post != PQ_GEMM_POST_RESIDUAL) return PQ_KOK;
    if (!epi->residual || epi->ldr < n) return PQ_KBADARG;
    const float *r0 = epi->residual, *r1 = r0 + (m - 1) * epi->ldr + n;
    const float *y0 = y, *y1 = y + (m - 1) * ldy + n;
    return r0 < y1 && y0 < r1 ? PQ_KBADARG : PQ_KOK;
}

/* The variant's packed A for m x k: int8 codes a (row stride ld), or, with
 * x non-NULL, fp32 rows quantized per token on the way (scales to scale).
 * Row blocks are split over the threads. Owned result (free), NULL when out
 * of memory. */
static void *pack_a(const pq_ops *ops, const int8_t *a, const float *x, int64_t m, int64_t k,
                    int64_t ld, float *scale, int n_threads)
{
    size_t bytes = ops->gemm.a_pack_size(m, k);
    void *ap = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!ap) return NULL;
    int64_t nb = (m + ops->gemm.a_pack_rows - 1) / ops->gemm.a_pack_rows;
    int nt = threads_for(n_threads, nb);
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t b0 = nb * t / nt, b1 = nb * (t + 1) / nt;
        if (x) ops->gemm.quantize_pack(x, m, k, ld, ap, scale, b0, b1);
        else ops->gemm.a_pack(a, m, k, ld, ap, b0, b1);
    }
    return ap;
}

/* Runs one i8i8 job, packing A first if the variant wants it and the job
 * does not bring it packed. */
static pq_kstatus exec_i8i8(const pq_ops *ops, pq_gemm_i8i8_job *job, int n_threads)
{
    void *ap = NULL;
    job->ops = ops;
    if (!job->a_packed && ops->gemm.a_pack_size(job->m, job->w->k)) {
        ap = pack_a(ops, job->a, NULL, job->m, job->w->k, job->lda, NULL, n_threads);
        if (!ap) return PQ_KNOMEM;
        job->a_packed = ap;
    }
    run_i8i8(ops, job, threads_for(n_threads, job->w->n_panels));
    free(ap);
    return PQ_KOK;
}

pq_kstatus pq_gemm_i8i8_s32(const pq_ops *ops, const int8_t *a, int64_t m, int64_t lda,
                            const pq_gemm_w *w, int32_t *c, int64_t ldc, int n_threads)
{
    pq_kstatus st = check_i8i8(a, m, lda, w);
    if (st) return st;
    if (m == 0) return PQ_KOK;
    if (!c || ldc < w->n || w->n_groups != 1) return PQ_KBADARG;
    pq_gemm_i8i8_job job = {.a = a, .m = m, .lda = lda, .w = w, .c = c, .ldc = ldc};
    return exec_i8i8(ops, &job, n_threads);
}

pq_kstatus pq_gemm_i8i8_f32(const pq_ops *ops, const int8_t *a, int64_t m, int64_t lda,
                            const float *a_scale, int a_per_token, int32_t a_zp, const pq_gemm_w *w,
                            const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads)
{
    pq_kstatus st = check_i8i8(a, m, lda, w);
    if (st) return st;
    if (m == 0) return PQ_KOK;
    if (!y || ldy < w->n || !a_scale) return PQ_KBADARG;
    /* an activation zero point needs a per-tensor scale */
    if (a_zp < -128 || a_zp > 255 || (a_zp && a_per_token)) return PQ_KBADARG;
    if ((st = check_epi(epi, y, m, ldy, w->n))) return st;
    int32_t *a_sums = NULL, *col_add = NULL;
    int64_t ng = w->n_groups, gs = w->group_size;
    if (w->zp) { /* sums of each row over each group's k */
        a_sums = malloc((size_t)(m * ng) * sizeof *a_sums);
        if (!a_sums) return PQ_KNOMEM;
        for (int64_t i = 0; i < m; i++)
            for (int64_t g = 0; g < ng; g++) {
                int64_t k0 = g * gs, kg = k0 + gs < w->k ? gs : w->k - k0;
                pq_gemm_i8_row_sums(a + i * lda + k0, 1, kg, lda, &a_sums[i * ng + g]);
            }
    }
    if (a_zp) { /* per (column, group), in the scale layout */
        int64_t nsc = w->n_panels * ng * PQ_GEMM_NR;
        col_add = malloc((size_t)nsc * sizeof *col_add);
        if (!col_add) {
            free(a_sums);
            return PQ_KNOMEM;
        }
        for (int64_t x = 0; x < nsc; x++) {
            int64_t g = (x / PQ_GEMM_NR) % ng, k0 = g * gs, kg = k0 + gs < w->k ? gs : w->k - k0;
            uint32_t zw = w->zp ? (uint32_t)w->zp[x] : 0u;
            col_add[x] = (int32_t)((uint32_t)kg * (uint32_t)a_zp * zw -
                                   (uint32_t)a_zp * (uint32_t)w->row_sum[x]);
        }
    }
    pq_gemm_i8i8_job job = {.a = a, .m = m, .lda = lda, .w = w, .y = y, .ldy = ldy,
                            .a_scale = a_scale, .a_per_token = a_per_token, .a_sums = a_sums,
                            .col_add = col_add, .epi = epi};
    st = exec_i8i8(ops, &job, n_threads);
    free(a_sums);
    free(col_add);
    return st;
}

/* W8A8 / W4A8 for variants that quantize straight into their packed A
 * (symmetric weights: no activation row sums needed): one pass over x, no m x k
 * intermediate. Codes, scales and results equal the two-step path's. */
static pq_kstatus w8a8_packed(const pq_ops *ops, const float *x, int64_t m, int64_t ldx,
                              const pq_gemm_w *w, const pq_gemm_epilogue *epi, float *y,
                              int64_t ldy, int n_threads)
{
    if (!y || ldy < w->n) return PQ_KBADARG;
    pq_kstatus st = check_epi(epi, y, m, ldy, w->n);
    if (st) return st;
    float *s = malloc((size_t)m * sizeof *s);
    void *ap = s ? pack_a(ops, NULL, x, m, w->k, ldx, s, n_threads) : NULL;
    if (!ap) {
        free(s);
        return PQ_KNOMEM;
    }
    pq_gemm_i8i8_job job = {.a = NULL, .m = m, .lda = w->k, .a_packed = ap, .w = w, .y = y,
                            .ldy = ldy, .a_scale = s, .a_per_token = 1, .epi = epi};
    st = exec_i8i8(ops, &job, n_threads);
    free(ap);
    free(s);
    return st;
}

pq_kstatus pq_gemm_w8a8_f32(const pq_ops *ops, const float *x, int64_t m, int64_t ldx,
                            const pq_gemm_w *w, const pq_gemm_epilogue *epi, float *y, int64_t ldy,
                            int n_threads)
{
    if (!w || !x || m < 0 || ldx < w->k) return PQ_KBADARG;
    if (m == 0) return PQ_KOK;
    /* int4 groups that split a pair of k quads go to the variants' scalar
     * fallback, which reads the unpacked codes */
    bool pairs = w->bits == 8 || w->n_groups == 1 || w->group_size % 8 == 0;
    if (ops->gemm.quantize_pack && !w->zp && w->use == PQ_GEMM_USE_I8I8 && pairs)
        return w8a8_packed(ops, x, m, ldx, w, epi, y, ldy, n_threads);
    int8_t *q = malloc((size_t)(m * w->k));
    float *s = malloc((size_t)m * sizeof *s);
    pq_kstatus st = PQ_KOK;
    if (!q || !s) {
        st = PQ_KNOMEM;
        goto cleanup;
    }
    /* rows are independent: split them over the threads */
    int nt = threads_for(n_threads, (m + 15) / 16);
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
        ops->gemm.quantize_dynamic(x + r0 * ldx, r1 - r0, w->k, ldx, q + r0 * w->k, w->k, s + r0);
    }
    st = pq_gemm_i8i8_f32(ops, q, m, w->k, s, 1, 0, w, epi, y, ldy, n_threads);
cleanup:
    free(q);
    free(s);
    return st;
}

pq_kstatus pq_gemm_wonly_f32(const pq_ops *ops, const float *x, int64_t m, int64_t ldx,
                             const pq_gemm_w *w, const pq_gemm_epilogue *epi, float *y, int64_t ldy,
                             int n_threads)
{
    if (!w || w->use != PQ_GEMM_USE_WONLY) return PQ_KBADARG;
    if (m < 0 || (m > 0 && (!x || ldx < w->k || !y || ldy < w->n))) return PQ_KBADARG;
    if (m == 0) return PQ_KOK;
    pq_kstatus est = check_epi(epi, y, m, ldy, w->n);
    if (est) return est;
    int nt = threads_for(n_threads, w->n_panels);
    int64_t ng = w->n_groups;
    size_t per = ops->gemm.wonly_scratch(m, w->k);
    float *gsum = malloc((size_t)(m * ng) * sizeof *gsum);
    float *scratch = per ? aligned_alloc(64, (per * (size_t)nt * sizeof(float) + 63) / 64 * 64) : NULL;
    if (!gsum || (per && !scratch)) {
        free(gsum);
        free(scratch);
        return PQ_KNOMEM;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t k0 = g * w->group_size, k1 = k0 + w->group_size < w->k ? k0 + w->group_size : w->k;
            float s = 0.0f;
            for (int64_t k = k0; k < k1; k++) s += x[i * ldx + k];
            gsum[i * ng + g] = s;
        }
    pq_gemm_wonly_job job = {.ops = ops, .x = x, .m = m, .ldx = ldx, .w = w, .y = y, .ldy = ldy,
                             .x_gsum = gsum, .epi = epi};
    int64_t np = w->n_panels;
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1)
#endif
    for (int t = 0; t < nt; t++)
        ops->gemm.wonly(&job, np * t / nt, np * (t + 1) / nt, scratch ? scratch + per * (size_t)t : NULL);
    free(gsum);
    free(scratch);
    return PQ_KOK;
}
