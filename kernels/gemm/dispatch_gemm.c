/* SPDX-License-Identifier: Apache-2.0 */
/* dispatch_gemm.c - run-time choice of the GEMM variant (best first, reference
 * last; PQ_KERNELS=ref forces the reference), argument checks, scratch and the
 * split of output panels over threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/kernels_impl.h"
#include "pq_config.h"

#if PQ_HAVE_OPENMP
#include <omp.h>
#endif

#if PQ_HAVE_AVX2 && defined(PQ_GEMM_HAVE_AVX512VNNI)
/* libgcc's probe also checks that the OS saves the AVX-512 state. */
static int cpu_has_avx512vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && pq_cpu_has_avx2_fma();
}
#endif

/* Best first. Future variants (AMX tiles) get a slot here ahead of the
 * others, each behind its own CPU probe. */
static const pq_gemm_ops *candidates(int i)
{
    int k = 0;
#if PQ_HAVE_AVX2 && defined(PQ_GEMM_HAVE_AVX512VNNI)
    if (cpu_has_avx512vnni() && i == k++) return &pq_gemm_ops_avx512vnni;
#endif
#if PQ_HAVE_AVX2
    if (pq_cpu_has_avx2_fma() && i == k++) return &pq_gemm_ops_avx2;
#endif
    if (i == k) return &pq_gemm_ops_ref;
    return NULL;
}

static const pq_gemm_ops *current;

const pq_gemm_ops *pq_gemm_ops_get(const char *name)
{
    for (int i = 0; candidates(i); i++)
        if (strcmp(candidates(i)->name, name) == 0) return candidates(i);
    return NULL;
}

const pq_gemm_ops *pq_gemm_ops_current(void)
{
    if (!current) {
        const char *env = getenv("PQ_KERNELS");
        const pq_gemm_ops *o = env && *env ? pq_gemm_ops_get(env) : NULL;
        current = o ? o : candidates(0);
    }
    return current;
}

pq_status pq_gemm_select(const char *name)
{
    if (!name || !*name || strcmp(name, "auto") == 0) {
        current = candidates(0);
        return PQ_OK;
    }
    const pq_gemm_ops *o = pq_gemm_ops_get(name);
    if (!o) return pq_err(PQ_ERR_HARDWARE, "gemm variant '%s' is not available here", name);
    current = o;
    return PQ_OK;
}

const char *pq_gemm_variant(void) { return pq_gemm_ops_current()->name; }

void pq_gemm_i8_row_sums(const int8_t *a, int64_t m, int64_t k, int64_t lda, int32_t *sums)
{
    for (int64_t i = 0; i < m; i++) {
        int32_t s = 0;
        for (int64_t j = 0; j < k; j++) s += a[i * lda + j];
        sums[i] = s;
    }
}

void pq_gemm_quantize_rows_dynamic(const float *x, int64_t m, int64_t k, int64_t ldx,
                                   int8_t *q, int64_t ldq, float *scale)
{
    pq_gemm_ops_current()->quantize_dynamic(x, m, k, ldx, q, ldq, scale);
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
static void run_i8i8(const pq_gemm_ops *ops, const pq_gemm_i8i8_job *job, int nt)
{
    int64_t np = job->w->n_panels;
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1)
#endif
    for (int t = 0; t < nt; t++) ops->i8i8(job, np * t / nt, np * (t + 1) / nt);
}

static pq_status check_i8i8(const int8_t *a, int64_t m, int64_t lda, const pq_gemm_w *w)
{
    if (!w || w->use != PQ_GEMM_USE_I8I8)
        return pq_err(PQ_ERR_CONFIG, "gemm i8i8: weight is not packed for int8 x int8");
    if (m < 0 || (m > 0 && (!a || lda < w->k)))
        return pq_err(PQ_ERR_CONFIG, "gemm i8i8: bad activation shape m %lld lda %lld (k %lld)",
                      (long long)m, (long long)lda, (long long)w->k);
    return PQ_OK;
}

/* The residual is read tile by tile while y is written: they must not overlap. */
static pq_status check_epi(const pq_gemm_epilogue *epi, const float *y, int64_t m, int64_t ldy,
                           int64_t n)
{
    if (!epi || epi->post != PQ_GEMM_POST_RESIDUAL) return PQ_OK;
    if (!epi->residual || epi->ldr < n)
        return pq_err(PQ_ERR_CONFIG, "gemm epilogue: residual missing or ldr %lld < n %lld",
                      (long long)epi->ldr, (long long)n);
    const float *r0 = epi->residual, *r1 = r0 + (m - 1) * epi->ldr + n;
    const float *y0 = y, *y1 = y + (m - 1) * ldy + n;
    if (r0 < y1 && y0 < r1)
        return pq_err(PQ_ERR_CONFIG, "gemm epilogue: the residual overlaps the output");
    return PQ_OK;
}

/* The variant's packed A for m x k: int8 codes a (row stride ld), or, with
 * x non-NULL, fp32 rows quantized per token on the way (scales to scale).
 * Row blocks are split over the threads. Owned result (free), NULL when out
 * of memory. */
static void *pack_a(const pq_gemm_ops *ops, const int8_t *a, const float *x, int64_t m, int64_t k,
                    int64_t ld, float *scale, int n_threads)
{
    size_t bytes = ops->a_pack_size(m, k);
    void *ap = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!ap) return NULL;
    int64_t nb = (m + ops->a_pack_rows - 1) / ops->a_pack_rows;
    int nt = threads_for(n_threads, nb);
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t b0 = nb * t / nt, b1 = nb * (t + 1) / nt;
        if (x) ops->quantize_pack(x, m, k, ld, ap, scale, b0, b1);
        else ops->a_pack(a, m, k, ld, ap, b0, b1);
    }
    return ap;
}

/* Runs one i8i8 job, packing A first if the variant wants it and the job
 * does not bring it packed. */
static pq_status exec_i8i8(pq_gemm_i8i8_job *job, int n_threads)
{
    const pq_gemm_ops *ops = pq_gemm_ops_current();
    void *ap = NULL;
    if (!job->a_packed && ops->a_pack_size(job->m, job->w->k)) {
        ap = pack_a(ops, job->a, NULL, job->m, job->w->k, job->lda, NULL, n_threads);
        if (!ap) return pq_err(PQ_ERR_RESOURCE, "gemm i8i8: out of memory for packed A");
        job->a_packed = ap;
    }
    run_i8i8(ops, job, threads_for(n_threads, job->w->n_panels));
    free(ap);
    return PQ_OK;
}

pq_status pq_gemm_i8i8_s32(const int8_t *a, int64_t m, int64_t lda, const pq_gemm_w *w,
                           int32_t *c, int64_t ldc, int n_threads)
{
    pq_status st = check_i8i8(a, m, lda, w);
    if (st) return st;
    if (m == 0) return PQ_OK;
    if (!c || ldc < w->n) return pq_err(PQ_ERR_CONFIG, "gemm i8i8: bad output ldc %lld", (long long)ldc);
    pq_gemm_i8i8_job job = {.a = a, .m = m, .lda = lda, .w = w, .c = c, .ldc = ldc};
    return exec_i8i8(&job, n_threads);
}

pq_status pq_gemm_i8i8_f32(const int8_t *a, int64_t m, int64_t lda, const float *a_scale,
                           int a_per_token, int32_t a_zp, const pq_gemm_w *w,
                           const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads)
{
    pq_status st = check_i8i8(a, m, lda, w);
    if (st) return st;
    if (m == 0) return PQ_OK;
    if (!y || ldy < w->n || !a_scale)
        return pq_err(PQ_ERR_CONFIG, "gemm i8i8: bad output ldy %lld or no activation scale",
                      (long long)ldy);
    if (a_zp < -128 || a_zp > 255 || (a_zp && a_per_token))
        return pq_err(PQ_ERR_CONFIG, "gemm i8i8: activation zero point %d needs a per-tensor scale",
                      (int)a_zp);
    if ((st = check_epi(epi, y, m, ldy, w->n))) return st;
    int32_t *a_sums = NULL, *col_add = NULL;
    if (w->zp) {
        a_sums = malloc((size_t)m * sizeof *a_sums);
        if (!a_sums) return pq_err(PQ_ERR_RESOURCE, "gemm i8i8: out of memory");
        pq_gemm_i8_row_sums(a, m, w->k, lda, a_sums);
    }
    if (a_zp) {
        int64_t npad = w->n_panels * PQ_GEMM_NR;
        col_add = malloc((size_t)npad * sizeof *col_add);
        if (!col_add) {
            free(a_sums);
            return pq_err(PQ_ERR_RESOURCE, "gemm i8i8: out of memory");
        }
        for (int64_t j = 0; j < npad; j++) {
            uint32_t zw = w->zp ? (uint32_t)w->zp[j] : 0u; /* ng = 1: index j */
            col_add[j] = (int32_t)((uint32_t)w->k * (uint32_t)a_zp * zw -
                                   (uint32_t)a_zp * (uint32_t)w->row_sum[j]);
        }
    }
    pq_gemm_i8i8_job job = {.a = a, .m = m, .lda = lda, .w = w, .y = y, .ldy = ldy,
                            .a_scale = a_scale, .a_per_token = a_per_token, .a_sums = a_sums,
                            .col_add = col_add, .epi = epi};
    st = exec_i8i8(&job, n_threads);
    free(a_sums);
    free(col_add);
    return st;
}

/* W8A8 for variants that quantize straight into their packed A (symmetric
 * weights: no activation row sums needed): one pass over x, no m x k
 * intermediate. Codes, scales and results equal the two-step path's. */
static pq_status w8a8_packed(const pq_gemm_ops *ops, const float *x, int64_t m, int64_t ldx,
                             const pq_gemm_w *w, const pq_gemm_epilogue *epi, float *y, int64_t ldy,
                             int n_threads)
{
    if (!y || ldy < w->n) return pq_err(PQ_ERR_CONFIG, "gemm w8a8: bad output ldy %lld", (long long)ldy);
    pq_status st = check_epi(epi, y, m, ldy, w->n);
    if (st) return st;
    float *s = malloc((size_t)m * sizeof *s);
    void *ap = s ? pack_a(ops, NULL, x, m, w->k, ldx, s, n_threads) : NULL;
    if (!ap) {
        free(s);
        return pq_err(PQ_ERR_RESOURCE, "gemm w8a8: out of memory for %lld x %lld codes",
                      (long long)m, (long long)w->k);
    }
    pq_gemm_i8i8_job job = {.a = NULL, .m = m, .lda = w->k, .a_packed = ap, .w = w, .y = y,
                            .ldy = ldy, .a_scale = s, .a_per_token = 1, .epi = epi};
    st = exec_i8i8(&job, n_threads);
    free(ap);
    free(s);
    return st;
}

pq_status pq_gemm_w8a8_f32(const float *x, int64_t m, int64_t ldx, const pq_gemm_w *w,
                           const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads)
{
    if (!w || !x || m < 0 || ldx < w->k)
        return pq_err(PQ_ERR_CONFIG, "gemm w8a8: bad input shape");
    if (m == 0) return PQ_OK;
    const pq_gemm_ops *ops = pq_gemm_ops_current();
    if (ops->quantize_pack && !w->zp && w->use == PQ_GEMM_USE_I8I8)
        return w8a8_packed(ops, x, m, ldx, w, epi, y, ldy, n_threads);
    int8_t *q = malloc((size_t)(m * w->k));
    float *s = malloc((size_t)m * sizeof *s);
    pq_status st = PQ_OK;
    if (!q || !s) {
        st = pq_err(PQ_ERR_RESOURCE, "gemm w8a8: out of memory for %lld x %lld codes",
                    (long long)m, (long long)w->k);
        goto cleanup;
    }
    /* rows are independent: split them over the threads */
    int nt = threads_for(n_threads, (m + 15) / 16);
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
        ops->quantize_dynamic(x + r0 * ldx, r1 - r0, w->k, ldx, q + r0 * w->k, w->k, s + r0);
    }
    st = pq_gemm_i8i8_f32(q, m, w->k, s, 1, 0, w, epi, y, ldy, n_threads);
cleanup:
    free(q);
    free(s);
    return st;
}

pq_status pq_gemm_wonly_f32(const float *x, int64_t m, int64_t ldx, const pq_gemm_w *w,
                            const pq_gemm_epilogue *epi, float *y, int64_t ldy, int n_threads)
{
    if (!w || w->use != PQ_GEMM_USE_WONLY)
        return pq_err(PQ_ERR_CONFIG, "gemm weight-only: weight is not packed for weight-only use");
    if (m < 0 || (m > 0 && (!x || ldx < w->k || !y || ldy < w->n)))
        return pq_err(PQ_ERR_CONFIG, "gemm weight-only: bad shapes m %lld ldx %lld ldy %lld",
                      (long long)m, (long long)ldx, (long long)ldy);
    if (m == 0) return PQ_OK;
    pq_status est = check_epi(epi, y, m, ldy, w->n);
    if (est) return est;
    const pq_gemm_ops *ops = pq_gemm_ops_current();
    int nt = threads_for(n_threads, w->n_panels);
    int64_t ng = w->n_groups;
    size_t per = ops->wonly_scratch(m, w->k);
    float *gsum = malloc((size_t)(m * ng) * sizeof *gsum);
    float *scratch = per ? aligned_alloc(64, (per * (size_t)nt * sizeof(float) + 63) / 64 * 64) : NULL;
    if (!gsum || (per && !scratch)) {
        free(gsum);
        free(scratch);
        return pq_err(PQ_ERR_RESOURCE, "gemm weight-only: out of memory");
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t k0 = g * w->group_size, k1 = k0 + w->group_size < w->k ? k0 + w->group_size : w->k;
            float s = 0.0f;
            for (int64_t k = k0; k < k1; k++) s += x[i * ldx + k];
            gsum[i * ng + g] = s;
        }
    pq_gemm_wonly_job job = {.x = x, .m = m, .ldx = ldx, .w = w, .y = y, .ldy = ldy,
                             .x_gsum = gsum, .epi = epi};
    int64_t np = w->n_panels;
#if PQ_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1)
#endif
    for (int t = 0; t < nt; t++)
        ops->wonly(&job, np * t / nt, np * (t + 1) / nt, scratch ? scratch + per * (size_t)t : NULL);
    free(gsum);
    free(scratch);
    return PQ_OK;
}
