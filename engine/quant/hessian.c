/* SPDX-License-Identifier: Apache-2.0 */
/* hessian.c - see hessian.h: per-sequence fp64 partials, tile by tile,
 * summed exactly in 128-bit fixed point. */
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
    double *xd;         /* scratch: one call's rows in fp64 */
    int64_t xd_cap;     /* elements */
    double **c;         /* scratch: a tile partial per thread */
    int n_c;
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

/* the packed index of entry (i, j), i <= j */
static inline int64_t entry_index(int64_t d, int64_t i, int64_t j)
{
    return i * d - i * (i - 1) / 2 + (j - i);
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
    h->name = strdup(name);
    if (!h->w || !h->name) {
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
    for (int t = 0; t < h->n_c; t++) free(h->c[t]);
    free(h->c);
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
 * the one rounding is of f * 2^32 (|.| < 2^32) to an integer, by llrint
 * (one cvtsd2si with -fno-math-errno), which rounds to nearest even in the
 * default mode. The integer offsets are even, so the ties go as for s
 * itself. */
static inline i128 to_fixed(double v)
{
    const double a = v * 0.5;
    const int64_t hi = (int64_t)a;
    const double r1 = (a - (double)hi) * 4294967296.0;
    const int64_t m = (int64_t)r1;
    const double f = (r1 - (double)m) * 4294967296.0;
    const int64_t n = llrint(f);
    return (i128)((u128)(i128)hi << 64) + (i128)m * 4294967296 + n;
}

static const char *const overflow_msg =
    "site '%s': a Hessian entry overflows the exact accumulator (|sum x_i x_j| >= 2^63 in one sequence, or "
    "2^64 in all): the activations are too large";

typedef struct tile {
    int64_t i0, j0;
    int bi, bj;
    bool diag;
} tile;

static tile tile_at(int64_t d, int64_t ti, int64_t tj)
{
    const int64_t T = PQ_HESSIAN_TILE;
    tile t = {.i0 = ti * T, .j0 = tj * T, .diag = ti == tj};
    t.bi = (int)(d - t.i0 < T ? d - t.i0 : T);
    t.bj = (int)(d - t.j0 < T ? d - t.j0 : T);
    return t;
}

/* Sequence q's partial of tile t into c (bi x bj, row-major; below the
 * diagonal of a diagonal tile unused): one BLAS call of a shape fixed by
 * the tile and the sequence. */
static pq_status tile_partial(int64_t d, const double *xs, int64_t n, tile t, double *c)
{
    if (t.diag)
        return pq_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, t.bi, (int)n, 1.0, xs + t.i0, (int)d, 0.0, c, t.bj);
    return pq_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t.bi, t.bj, (int)n, 1.0, xs + t.i0, (int)d, xs + t.j0,
                    (int)d, 0.0, c, t.bj);
}

/* Add (sign 1) the first `limit` entries (row by row) of partial c to
 * tile t of the accumulator, each rounded to fixed point once; or take
 * them back (sign -1). Adding stops at a range error or an overflow and
 * returns how many entries went in; -1 when all did. */
static int64_t tile_add(pq_hessian *h, tile t, const double *c, int sign, int64_t limit)
{
    const double lim = 9223372036854775808.0; /* 2^63 */
    int64_t done = 0;
    for (int r = 0; r < t.bi; r++) {
        const int c0 = t.diag ? r : 0;
        uint64_t *wr = h->w + 2 * entry_index(h->d, t.i0 + r, t.j0 + c0);
        const double *cr = c + (int64_t)r * t.bj;
        for (int j = c0; j < t.bj; j++, done++) {
            if (done == limit) return done;
            const int64_t k = j - c0;
            const i128 a = (i128)(((u128)wr[2 * k + 1] << 64) | wr[2 * k]);
            const double v = cr[j];
            i128 s;
            if (sign < 0) s = (i128)((u128)a - (u128)to_fixed(v));
            else if (!(fabs(v) < lim) || __builtin_add_overflow(a, to_fixed(v), &s)) return done;
            wr[2 * k] = (uint64_t)(u128)s;
            wr[2 * k + 1] = (uint64_t)((u128)s >> 64);
        }
    }
    return -1;
}

pq_status pq_hessian_add(pq_hessian *h, const pq_ops *ops, const float *x, int64_t n_tokens, int64_t ld)
{
    const int64_t off[2] = {0, n_tokens};
    return pq_hessian_add_seqs(h, ops, x, off, 1, ld, 1);
}

/* Scratch kept between calls (pq_hessian_add_seqs): the call's rows in
 * fp64 and one tile partial per thread. */
static pq_status scratch(pq_hessian *h, int64_t n_tokens, int n_threads)
{
    const int64_t T = PQ_HESSIAN_TILE, tt = (h->d < T ? h->d : T) * (h->d < T ? h->d : T);
    if (n_tokens * h->d > h->xd_cap) {
        free(h->xd);
        h->xd_cap = 0;
        if (!(h->xd = malloc((size_t)(n_tokens * h->d) * sizeof *h->xd))) goto oom;
        h->xd_cap = n_tokens * h->d;
    }
    if (n_threads > h->n_c) {
        double **p = realloc(h->c, (size_t)n_threads * sizeof *p);
        if (!p) goto oom;
        h->c = p;
        for (; h->n_c < n_threads; h->n_c++)
            if (!(h->c[h->n_c] = malloc((size_t)tt * sizeof **h->c))) goto oom;
    }
    return PQ_OK;
oom:
    return pq_err(PQ_ERR_RESOURCE, "site '%s': out of memory", h->name);
}

pq_status pq_hessian_add_seqs(pq_hessian *h, const pq_ops *ops, const float *x, const int64_t *offsets,
                              int64_t n_seqs, int64_t ld, int n_threads)
{
    (void)ops;
    const int64_t d = h->d;
    int64_t n_tokens = 0;
    for (int64_t q = 0; q < n_seqs; q++) {
        const int64_t n = offsets[q + 1] - offsets[q];
        if (n < 0 || n > INT32_MAX || ld < d)
            return pq_err(PQ_ERR_INTERNAL, "site '%s': bad sequence shape (%lld tokens, ld %lld)", h->name,
                          (long long)n, (long long)ld);
        n_tokens += n;
    }
    if (n_tokens == 0) return PQ_OK;
    const int64_t T = PQ_HESSIAN_TILE, nt = (d + T - 1) / T, n_tiles = nt * (nt + 1) / 2;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_tiles) n_threads = (int)n_tiles;
    pq_status st = pq_blas_load();
    if (!st) st = scratch(h, n_tokens, n_threads);
    if (st) return st;
    /* the call's rows in fp64, every value checked finite before anything
     * changes (the threads' tiles read this copy) */
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *xr = x + (offsets[0] + t) * ld;
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
    /* per tile: the sequences that went in whole (n_seqs: all) */
    int64_t *in = calloc((size_t)n_tiles, sizeof *in);
    int64_t *tile_i = malloc((size_t)n_tiles * sizeof *tile_i), *tile_j = malloc((size_t)n_tiles * sizeof *tile_j);
    if (!in || !tile_i || !tile_j) {
        st = pq_err(PQ_ERR_RESOURCE, "site '%s': out of memory", h->name);
        goto done;
    }
    /* off-diagonal tiles first (the diagonal's are half the work) */
    int64_t k = 0;
    for (int64_t ti = 0; ti < nt; ti++)
        for (int64_t tj = ti + 1; tj < nt; tj++) tile_i[k] = ti, tile_j[k++] = tj;
    for (int64_t ti = 0; ti < nt; ti++) tile_i[k] = ti, tile_j[k++] = ti;
    /* one BLAS thread per call: the partials' bits are then fixed by the
     * tile and sequence shapes, whatever thread runs a tile */
    int nt_blas = 1;
#ifdef _OPENMP
    if (!omp_in_parallel())
#endif
        nt_blas = pq_blas_get_threads();
    if (nt_blas != 1) pq_blas_set_threads(1);
    int failed = 0; /* 1 range or overflow, 2 BLAS */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n_threads > 1)
#endif
    for (int64_t q = 0; q < n_tiles; q++) {
#ifdef _OPENMP
        double *c = h->c[omp_get_thread_num()];
#else
        double *c = h->c[0];
#endif
        const tile t = tile_at(d, tile_i[q], tile_j[q]);
        for (int64_t s = 0; s < n_seqs; s++) {
            int f;
#ifdef _OPENMP
#pragma omp atomic read
#endif
            f = failed;
            if (f) break;
            const int64_t n = offsets[s + 1] - offsets[s];
            if (n == 0) {
                in[q] = s + 1;
                continue;
            }
            int r = 0;
            if (tile_partial(d, h->xd + (offsets[s] - offsets[0]) * d, n, t, c)) r = 2;
            else {
                const int64_t got = tile_add(h, t, c, 1, -1);
                if (got >= 0) { /* take back this sequence's entries that went in */
                    tile_add(h, t, c, -1, got);
                    r = 1;
                }
            }
            if (r) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                failed = r;
                break;
            }
            in[q] = s + 1;
        }
    }
    if (failed) {
        /* take back the sequences that went in whole: their partials again */
        for (int64_t q = 0; q < n_tiles; q++) {
            const tile t = tile_at(d, tile_i[q], tile_j[q]);
            for (int64_t s = 0; s < in[q]; s++) {
                const int64_t n = offsets[s + 1] - offsets[s];
                if (n && !tile_partial(d, h->xd + (offsets[s] - offsets[0]) * d, n, t, h->c[0]))
                    tile_add(h, t, h->c[0], -1, -1);
            }
        }
        st = failed == 2 ? pq_err(PQ_ERR_RESOURCE, "site '%s': the BLAS failed", h->name)
                         : pq_err(PQ_ERR_CALIBRATION, overflow_msg, h->name);
    }
    if (nt_blas != 1) pq_blas_set_threads(nt_blas);
    if (!failed) h->w[h->n_words - 2] += (uint64_t)n_tokens;
done:
    free(in);
    free(tile_i);
    free(tile_j);
    return st;
}

pq_status pq_hessian_merge(pq_hessian *dst, const pq_hessian *src)
{
    if (dst->d != src->d)
        return pq_err(PQ_ERR_INTERNAL, "site '%s': merging Hessians of widths %lld and %lld", dst->name,
                      (long long)dst->d, (long long)src->d);
    /* checked first, written after: dst unchanged on an overflow */
    for (int64_t k = 0; k < dst->n_entries; k++) {
        i128 s;
        if (__builtin_add_overflow(entry_get(dst->w, k), entry_get(src->w, k), &s))
            return pq_err(PQ_ERR_CALIBRATION,
                          "site '%s': a Hessian entry overflows the exact accumulator (|sum x_i x_j| >= 2^64)",
                          dst->name);
    }
    for (int64_t k = 0; k < dst->n_entries; k++) entry_set(dst->w, k, entry_get(dst->w, k) + entry_get(src->w, k));
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
