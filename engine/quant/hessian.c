/* SPDX-License-Identifier: Apache-2.0 */
/* hessian.c - see hessian.h: per-sequence fp64 dsyrk partials summed exactly
 * in 128-bit fixed point. */
#include "quant/hessian.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/pq_mem.h"
#include "model/blas.h"

typedef __int128 i128;
typedef unsigned __int128 u128;

struct pq_hessian {
    int64_t d;
    int64_t n_entries;  /* d*(d+1)/2 */
    int64_t n_words;    /* 2*n_entries + 2 */
    uint64_t *w;        /* the accumulator, layout of pq_hessian_words */
    double *xd;         /* scratch: fp64 rows of one sequence */
    int64_t xd_cap;     /* elements */
    double *c;          /* scratch: d x d dsyrk output (upper used) */
    i128 *part;         /* scratch: the partial in fixed point */
    char *name;
};

static inline i128 entry_get(const uint64_t *w, int64_t k)
{
    return (i128)(((u128)w[2 * k + 1] << 64) | w[2 * k]);
}

static inline void entry_set(uint64_t *w, int64_t k, i128 v)
{
    w[2 * k] = (uint64_t)(u128)v;
    w[2 * k + 1] = (uint64_t)((u128)v >> 64);
}

pq_status pq_hessian_create(int64_t d, const char *name, pq_hessian **out)
{
    *out = NULL;
    if (!name) name = "?";
    if (d < 1 || d > (INT64_C(1) << 24))
        return pq_err(PQ_ERR_CONFIG, "site '%s': Hessian width %lld out of range", name, (long long)d);
    pq_hessian *h = calloc(1, sizeof *h);
    if (!h) return pq_err(PQ_ERR_RESOURCE, "site '%s': out of memory", name);
    h->d = d;
    h->n_entries = d * (d + 1) / 2;
    h->n_words = 2 * h->n_entries + 2;
    h->w = calloc((size_t)h->n_words, sizeof *h->w);
    h->c = malloc((size_t)(d * d) * sizeof *h->c);
    h->part = malloc((size_t)h->n_entries * sizeof *h->part);
    h->name = strdup(name);
    if (!h->w || !h->c || !h->part || !h->name) {
        pq_hessian_free(h);
        return pq_err(PQ_ERR_RESOURCE, "site '%s': out of memory for a %lld-wide Hessian", name,
                      (long long)d);
    }
    *out = h;
    return PQ_OK;
}

void pq_hessian_free(pq_hessian *h)
{
    if (!h) return;
    free(h->w);
    free(h->xd);
    free(h->c);
    free(h->part);
    free(h->name);
    free(h);
}

int64_t pq_hessian_dim(const pq_hessian *h) { return h->d; }
const char *pq_hessian_name(const pq_hessian *h) { return h->name; }
int64_t pq_hessian_tokens(const pq_hessian *h) { return (int64_t)h->w[h->n_words - 2]; }

void pq_hessian_words(pq_hessian *h, uint64_t **words, int64_t *n_words)
{
    *words = h->w;
    *n_words = h->n_words;
}

/* round(v * 2^63) (to nearest, ties to even) as a 128-bit integer, for
 * |v| < 2^63 (checked by the caller), without libm calls: with
 * s = v * 2^63, a = v / 2 = s * 2^-64 splits exactly as hi + r (hi = a
 * truncated, |r| < 1), r * 2^32 as m + f (m truncated), so that
 * s = hi * 2^64 + m * 2^32 + f * 2^32 exactly, every step exact in double;
 * the one rounding is of f * 2^32 (|.| < 2^32) to an integer, by the
 * 1.5 * 2^52 trick, which rounds to nearest even in the default mode. The
 * integer offsets are even, so the ties go as for s itself. */
static inline i128 to_fixed(double v)
{
    const double a = v * 0.5;
    const int64_t hi = (int64_t)a;
    const double r1 = (a - (double)hi) * 4294967296.0;
    const int64_t m = (int64_t)r1;
    const double f = (r1 - (double)m) * 4294967296.0;
    volatile double big = 6755399441055744.0; /* 1.5 * 2^52, kept from folding */
    const int64_t n = (int64_t)((f + big) - big);
    return (i128)((u128)(i128)hi << 64) + (i128)m * 4294967296 + n;
}

/* Subtract the partial's first n_done entries again (a failed add). */
static void undo_add(pq_hessian *h, int64_t n_done)
{
    const int64_t d = h->d;
    int64_t k = 0;
    for (int64_t i = 0; i < d && k < n_done; i++)
        for (int64_t j = i; j < d && k < n_done; j++, k++)
            entry_set(h->w, k, (i128)((u128)entry_get(h->w, k) - (u128)to_fixed(h->c[i * d + j])));
}

pq_status pq_hessian_add(pq_hessian *h, const pq_ops *ops, const float *x, int64_t n_tokens, int64_t ld)
{
    (void)ops;
    const int64_t d = h->d;
    if (n_tokens == 0) return PQ_OK;
    if (n_tokens < 0 || ld < d || n_tokens > INT32_MAX)
        return pq_err(PQ_ERR_INTERNAL, "site '%s': bad sequence shape (%lld tokens, ld %lld)", h->name,
                      (long long)n_tokens, (long long)ld);
    if (n_tokens * d > h->xd_cap) {
        double *p = realloc(h->xd, (size_t)(n_tokens * d) * sizeof *p);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "site '%s': out of memory", h->name);
        h->xd = p;
        h->xd_cap = n_tokens * d;
    }
    /* fp64 copy, checking every value */
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *xr = x + t * ld;
        double *dr = h->xd + t * d;
        int bad = 0;
        for (int64_t j = 0; j < d; j++) {
            dr[j] = xr[j];
            bad |= !isfinite(xr[j]);
        }
        if (bad)
            for (int64_t j = 0; j < d; j++)
                if (!isfinite(xr[j]))
                    return pq_err(PQ_ERR_CALIBRATION,
                                  "site '%s': the input holds %s at token %lld, column %lld "
                                  "(NaN/Inf activations cannot calibrate GPTQ)",
                                  h->name, isnan(xr[j]) ? "NaN" : "Inf", (long long)t, (long long)j);
    }
    /* one BLAS thread: dsyrk's summation order is then fixed by the shape */
    int nt_blas = 1;
#ifdef _OPENMP
    if (!omp_in_parallel())
#endif
        nt_blas = pq_blas_get_threads();
    if (nt_blas != 1) pq_blas_set_threads(1);
    pq_status st = pq_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n_tokens, 1.0, h->xd,
                            (int)d, 0.0, h->c, (int)d);
    if (nt_blas != 1) pq_blas_set_threads(nt_blas);
    if (st) return st;

    /* convert and add in place; on a range error or an overflow, take back
     * what was added, so that a failure leaves h unchanged */
    const double lim = 9223372036854775808.0; /* 2^63 */
    int64_t k = 0;
    for (int64_t i = 0; i < d; i++) {
        const double *cr = h->c + i * d + i;
        uint64_t *wr = h->w + 2 * k;
        const int64_t n = d - i;
        for (int64_t j = 0; j < n; j++) {
            const double v = cr[j];
            i128 s;
            if (!(fabs(v) < lim) ||
                __builtin_add_overflow((i128)(((u128)wr[2 * j + 1] << 64) | wr[2 * j]), to_fixed(v), &s)) {
                undo_add(h, k + j);
                return pq_err(PQ_ERR_CALIBRATION,
                              "site '%s': a Hessian entry overflows the exact accumulator (|sum x_i x_j| >= "
                              "2^63 in one sequence, or 2^64 in all): the activations are too large",
                              h->name);
            }
            wr[2 * j] = (uint64_t)(u128)s;
            wr[2 * j + 1] = (uint64_t)((u128)s >> 64);
        }
        k += n;
    }
    h->w[h->n_words - 2] += (uint64_t)n_tokens;
    return PQ_OK;
}

pq_status pq_hessian_merge(pq_hessian *dst, const pq_hessian *src)
{
    if (dst->d != src->d)
        return pq_err(PQ_ERR_INTERNAL, "site '%s': merging Hessians of widths %lld and %lld", dst->name,
                      (long long)dst->d, (long long)src->d);
    for (int64_t k = 0; k < dst->n_entries; k++) {
        i128 s;
        if (__builtin_add_overflow(entry_get(dst->w, k), entry_get(src->w, k), &s))
            return pq_err(PQ_ERR_CALIBRATION,
                          "site '%s': a Hessian entry overflows the exact accumulator (|sum x_i x_j| >= 2^64)",
                          dst->name);
        dst->part[k] = s;
    }
    for (int64_t k = 0; k < dst->n_entries; k++) entry_set(dst->w, k, dst->part[k]);
    dst->w[dst->n_words - 2] += src->w[src->n_words - 2];
    dst->w[dst->n_words - 1] += src->w[src->n_words - 1];
    return PQ_OK;
}

void pq_hessian_add_words(uint64_t *dst, const uint64_t *src, int64_t n_words)
{
    const int64_t n = (n_words - 2) / 2;
    uint64_t over = 0;
    for (int64_t k = 0; k < n; k++) {
        i128 s;
        over += __builtin_add_overflow(entry_get(dst, k), entry_get(src, k), &s);
        entry_set(dst, k, s);
    }
    dst[n_words - 2] += src[n_words - 2];
    dst[n_words - 1] += src[n_words - 1] + over;
}

/* The nearest double of a Q64.63 integer: split into two exact halves. */
static inline double from_fixed(i128 v)
{
    int64_t hi = (int64_t)(v >> 64);
    uint64_t lo = (uint64_t)(u128)v;
    /* hi * 2^64 + lo, scaled by 2^-63; lo split in 32-bit halves so each
     * term is exact and the sum rounds once at most twice */
    return ldexp((double)hi, 1) + ldexp((double)(lo >> 32), -31) + ldexp((double)(lo & 0xffffffffu), -63);
}

pq_status pq_hessian_finish(const pq_hessian *h, double *H)
{
    const int64_t d = h->d;
    if (h->w[h->n_words - 1])
        return pq_err(PQ_ERR_CALIBRATION,
                      "site '%s': a Hessian entry overflowed in the reduction across ranks (|sum x_i x_j| >= 2^64)",
                      h->name);
    const int64_t n_tok = (int64_t)h->w[h->n_words - 2];
    const double f = n_tok > 0 ? 2.0 / (double)n_tok : 0.0;
    int64_t k = 0;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = i; j < d; j++, k++) {
            double v = f * from_fixed(entry_get(h->w, k));
            H[i * d + j] = v;
            H[j * d + i] = v;
        }
    return PQ_OK;
}
