/* SPDX-License-Identifier: Apache-2.0 */
/* calib_methods.c - minmax / percentile / entropy / mse ranges from merged
 * statistics (calib_methods.h; docs/CALIBRATION.md, Methods). */
#include "calib/calib_methods.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[PQ_CALIB_N_METHODS] = {"minmax", "percentile", "entropy", "mse"};

int pq_calib_method_parse(const char *name)
{
    for (int i = 0; i < PQ_CALIB_N_METHODS; i++)
        if (name && !strcmp(name, method_names[i])) return i;
    return -1;
}

const char *pq_calib_method_name(pq_calib_method m)
{
    return (unsigned)m < PQ_CALIB_N_METHODS ? method_names[m] : "?";
}

/* ---- derived histograms ---- */

typedef struct hist_ctx {
    bool absolute;
    float top;             /* largest |v| seen (pass 1) */
    const float *edges;
    int n;
    uint64_t *hist;
} hist_ctx;

static void find_top(void *user, float v, uint64_t count)
{
    (void)count;
    hist_ctx *h = user;
    float a = fabsf(v);
    if (a > h->top) h->top = a;
}

/* Largest k in [0, n-1] with edges[k] <= v (v >= edges[0]); np.histogram's
 * [e_k, e_{k+1}) with the last bin closed. */
static int bin_of(const float *edges, int n, float v)
{
    int lo = 0, hi = n; /* invariant: edges[lo] <= v, answer < hi */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (edges[mid] <= v) lo = mid;
        else hi = mid;
    }
    return lo;
}

static void add_bin(void *user, float v, uint64_t count)
{
    hist_ctx *h = user;
    float x = h->absolute ? fabsf(v) : v;
    h->hist[bin_of(h->edges, h->n, x)] += count;
}

static void make_edges(float lo, float hi, int n, float *edges)
{
    double step = ((double)hi - (double)lo) / n;
    for (int k = 0; k < n; k++) edges[k] = (float)((double)k * step + (double)lo);
    edges[n] = hi;
}

static void derive(const pq_calib_site *s, bool absolute, uint64_t *hist, float *edges)
{
    hist_ctx h = {.absolute = absolute, .top = 0.0f, .edges = edges, .n = PQ_CALIB_BINS, .hist = hist};
    pq_calib_site_bins(s, find_top, &h);
    make_edges(absolute ? 0.0f : -h.top, h.top, PQ_CALIB_BINS, edges);
    memset(hist, 0, PQ_CALIB_BINS * sizeof *hist);
    pq_calib_site_bins(s, add_bin, &h);
}

void pq_calib_abs_hist(const pq_calib_site *s, uint64_t *hist, float *edges)
{
    derive(s, true, hist, edges);
}

void pq_calib_signed_hist(const pq_calib_site *s, uint64_t *hist, float *edges)
{
    derive(s, false, hist, edges);
}

/* ---- searches ---- */

int pq_calib_percentile_index(const uint64_t *hist, int n, double frac)
{
    double total = 0;
    for (int k = 0; k < n; k++) total += (double)hist[k];
    double c = 0;
    for (int k = 0; k < n; k++) {
        c += (double)hist[k] / total;
        if (c >= frac) return k;
    }
    return n;
}

/* scipy.stats.entropy(p, q) of unnormalised p, q: +inf when p > 0 where
 * q == 0; +inf too when q has no mass (where scipy would give NaN). */
static double kl_div(const double *p, const double *q, int n)
{
    double sp = 0, sq = 0, s = 0;
    for (int j = 0; j < n; j++) { sp += p[j]; sq += q[j]; }
    if (!(sq > 0) || !(sp > 0)) return INFINITY;
    for (int j = 0; j < n; j++) {
        if (p[j] <= 0) continue;
        if (q[j] <= 0) return INFINITY;
        double pj = p[j] / sp, qj = q[j] / sq;
        s += pj * log(pj / qj);
    }
    return s;
}

int pq_calib_entropy_nvidia(const uint64_t *hist, int n, int nq, int start_bin, double *kl_out)
{
    double *bins = malloc((size_t)n * sizeof *bins);
    double *p = malloc((size_t)n * sizeof *p), *q = malloc((size_t)n * sizeof *q);
    int *qidx = malloc((size_t)n * sizeof *qidx);
    double *cnt = malloc((size_t)nq * sizeof *cnt);
    int *ncnt = malloc((size_t)nq * sizeof *ncnt);
    int best = n;
    double best_kl = INFINITY;
    if (!bins || !p || !q || !qidx || !cnt || !ncnt) { best = -1; goto cleanup; }
    for (int j = 0; j < n; j++) bins[j] = (double)hist[j];
    if (n > 1) bins[0] = bins[1]; /* suppress the zero spike */
    /* suffix sums of the tail (integers up to 2^53 are exact in double) */
    for (int i = start_bin; i <= n; i++) {
        double tail = 0;
        for (int j = i; j < n; j++) tail += bins[j];
        for (int j = 0; j < i; j++) p[j] = bins[j];
        p[i - 1] += tail;
        /* level of source bin j: digitize(j, linspace(0, i, nq + 1)) - 1 */
        double step = (double)i / nq;
        for (int k = 0; k < nq; k++) { cnt[k] = 0; ncnt[k] = 0; }
        for (int j = 0; j < i; j++) {
            int k = (int)(j / step);
            if (k > nq - 1) k = nq - 1;
            while (k > 0 && (double)k * step > j) k--;
            while (k + 1 < nq && (double)(k + 1) * step <= j) k++;
            qidx[j] = bins[j] != 0 ? k : -1;
            if (qidx[j] >= 0) { cnt[k] += bins[j]; ncnt[k]++; }
        }
        for (int k = 0; k < nq; k++) if (ncnt[k]) cnt[k] /= ncnt[k];
        for (int j = 0; j < i; j++) q[j] = qidx[j] >= 0 ? cnt[qidx[j]] : 0;
        double d = kl_div(p, q, i);
        if (d <= best_kl) { best_kl = d; best = i; } /* last argmin */
    }
    if (kl_out) *kl_out = best_kl;
cleanup:
    free(bins); free(p); free(q); free(qidx); free(cnt); free(ncnt);
    return best;
}

int pq_calib_mse_nvidia(const uint64_t *hist, const float *edges, int n, int start_bin,
                        double *mse_out)
{
    float *c = malloc((size_t)n * sizeof *c);
    int best = -1;
    double best_mse = INFINITY;
    if (!c) return -1;
    for (int k = 0; k < n; k++) c[k] = (edges[k + 1] + edges[k]) / 2.0f;
    for (int i = start_bin; i < n; i++) {
        float scale = 127.0f / c[i];
        double err = 0;
        for (int k = 0; k < n; k++) {
            if (!hist[k]) continue;
            float qv = nearbyintf(c[k] * scale);
            if (qv > 127.0f) qv = 127.0f;
            if (qv < -127.0f) qv = -127.0f;
            double d = (double)(qv / scale) - (double)c[k];
            err += d * d * (double)hist[k];
        }
        err /= n;
        if (err < best_mse) { best_mse = err; best = i; } /* first argmin */
    }
    free(c);
    if (mse_out) *mse_out = best_mse;
    return best;
}

/* ORT smooth_distribution in float32; false when p has no non-zero entry. */
static bool ort_smooth(const double *p, int n, double *out)
{
    int nz = 0;
    for (int j = 0; j < n; j++) nz += p[j] != 0;
    if (!nz) return false;
    double eps1 = 1e-4 * (double)(n - nz) / (double)nz;
    float add0 = (float)1e-4, sub = (float)(-eps1);
    for (int j = 0; j < n; j++) out[j] = (double)((float)p[j] + (p[j] == 0 ? add0 : sub));
    return true;
}

int pq_calib_entropy_ort(const uint64_t *hist, int n, int nq, double *kl_out)
{
    int z = n / 2, hq = nq / 2, best = -1;
    double best_kl = INFINITY;
    double *p = malloc((size_t)n * sizeof *p), *q = malloc((size_t)n * sizeof *q);
    double *ps = malloc((size_t)n * sizeof *ps), *qs = malloc((size_t)n * sizeof *qs);
    int64_t *Q = malloc((size_t)nq * sizeof *Q);
    if (!p || !q || !ps || !qs || !Q) goto cleanup;
    for (int i = hq; i <= z; i++) {
        int s = z - i, e = z + i + 1 < n ? z + i + 1 : n, len = e - s;
        uint64_t left = 0, right = 0;
        for (int j = 0; j < s; j++) left += hist[j];
        for (int j = e; j < n; j++) right += hist[j];
        for (int j = 0; j < len; j++) p[j] = (double)hist[s + j];
        p[0] += (double)left;
        p[len - 1] += (double)right;
        int m = len / nq;
        for (int k = 0; k < nq; k++) {
            int64_t sum = 0;
            for (int j = k * m; j < (k + 1) * m; j++) sum += (int64_t)hist[s + j];
            Q[k] = sum;
        }
        for (int j = nq * m; j < len; j++) Q[nq - 1] += (int64_t)hist[s + j];
        for (int j = 0; j < len; j++) q[j] = 0;
        for (int k = 0; k < nq; k++) {
            int norm = 0;
            for (int j = k * m; j < (k + 1) * m; j++) norm += p[j] != 0;
            if (norm)
                for (int j = k * m; j < (k + 1) * m; j++)
                    q[j] = (double)(int64_t)((double)Q[k] / (double)norm); /* int64 truncation */
        }
        double d = INFINITY;
        if (ort_smooth(p, len, ps) && ort_smooth(q, len, qs)) d = kl_div(ps, qs, len);
        d = (double)(float)d; /* ORT keeps the divergence in the edges' float32 */
        if (d < best_kl || best < 0) { best_kl = d; best = i; } /* first argmin */
    }
    if (kl_out) *kl_out = best_kl;
cleanup:
    free(p); free(q); free(ps); free(qs); free(Q);
    return best;
}

/* ---- per-site ranges ---- */

typedef struct sat_ctx {
    float lo, hi;
    uint64_t out;
} sat_ctx;

static void count_outside(void *user, float v, uint64_t count)
{
    sat_ctx *c = user;
    if (v < c->lo || v > c->hi) c->out += count;
}

/* MSE of int8 fake quantisation (narrow, symmetric at amax) over the |x|
 * histogram's bin centres, as the mse search measures it. */
static double mse_at(const uint64_t *hist, const float *edges, int n, float amax)
{
    if (!(amax > 0)) return 0;
    float scale = 127.0f / amax;
    double err = 0;
    for (int k = 0; k < n; k++) {
        if (!hist[k]) continue;
        float c = (edges[k + 1] + edges[k]) / 2.0f;
        float qv = nearbyintf(c * scale);
        if (qv > 127.0f) qv = 127.0f;
        double d = (double)(qv / scale) - (double)c;
        err += d * d * (double)hist[k];
    }
    return err / n;
}

pq_status pq_calib_compute(const pq_calib_site *s, pq_calib_method m, bool symmetric,
                           double percentile, pq_calib_range *out)
{
    pq_status st = PQ_OK;
    uint64_t *ah = NULL, *sh = NULL;
    float *ae = NULL, *se = NULL;
    memset(out, 0, sizeof *out);
    out->kl = NAN;
    if (s->count == 0)
        return pq_err(PQ_ERR_CALIBRATION, "site %s: no finite activation value", s->name);
    if ((unsigned)m >= PQ_CALIB_N_METHODS)
        return pq_err(PQ_ERR_CONFIG, "unknown calibration method %d", (int)m);
    if (m == PQ_CALIB_PERCENTILE && !(percentile > 0 && percentile <= 100))
        return pq_err(PQ_ERR_CONFIG, "percentile %g: expected a value in (0, 100]", percentile);
    ah = malloc(PQ_CALIB_BINS * sizeof *ah);
    sh = malloc(PQ_CALIB_BINS * sizeof *sh);
    ae = malloc((PQ_CALIB_BINS + 1) * sizeof *ae);
    se = malloc((PQ_CALIB_BINS + 1) * sizeof *se);
    if (!ah || !sh || !ae || !se) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    pq_calib_abs_hist(s, ah, ae);
    float A = ae[PQ_CALIB_BINS];
    float exact_amax = fmaxf(fabsf(s->min), fabsf(s->max));
    float tmin = pq_calib_trunc(s->min), tmax = pq_calib_trunc(s->max);
    float amax = 0, lo = 0, hi = 0;
    int idx;
    if (A == 0 && m != PQ_CALIB_MINMAX) {
        /* all values truncate to zero: every histogram method gives 0 */
        amax = 0;
        lo = hi = 0;
    } else if (m == PQ_CALIB_MINMAX) {
        amax = exact_amax;
        lo = s->min;
        hi = s->max;
    } else if (symmetric || m == PQ_CALIB_MSE) {
        switch (m) {
        case PQ_CALIB_PERCENTILE:
            idx = pq_calib_percentile_index(ah, PQ_CALIB_BINS, percentile / 100.0);
            amax = ae[idx];
            break;
        case PQ_CALIB_ENTROPY:
            idx = pq_calib_entropy_nvidia(ah, PQ_CALIB_BINS, PQ_CALIB_LEVELS, PQ_CALIB_START_BIN,
                                          &out->kl);
            if (idx < 0) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
            amax = ae[idx];
            break;
        default:
            idx = pq_calib_mse_nvidia(ah, ae, PQ_CALIB_BINS, PQ_CALIB_START_BIN, NULL);
            if (idx < 0) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
            amax = (ae[idx + 1] + ae[idx]) / 2.0f;
            break;
        }
        lo = symmetric ? -amax : fmaxf(-amax, tmin);
        hi = symmetric ? amax : fminf(amax, tmax);
    } else {
        pq_calib_signed_hist(s, sh, se);
        if (m == PQ_CALIB_PERCENTILE) {
            double cut = (100.0 - percentile) / 200.0;
            lo = se[pq_calib_percentile_index(sh, PQ_CALIB_BINS, cut)];
            hi = se[pq_calib_percentile_index(sh, PQ_CALIB_BINS, 1.0 - cut)];
        } else {
            int i = pq_calib_entropy_ort(sh, PQ_CALIB_BINS, PQ_CALIB_LEVELS, &out->kl);
            if (i < 0) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
            int z = PQ_CALIB_BINS / 2;
            lo = se[z - i];
            hi = se[z + i + 1 < PQ_CALIB_BINS ? z + i + 1 : PQ_CALIB_BINS];
        }
        if (lo < tmin) lo = tmin;
        if (hi > tmax) hi = tmax;
        amax = fmaxf(fabsf(lo), fabsf(hi));
    }
    out->lo = lo;
    out->hi = hi;
    out->amax = amax;
    out->mse = mse_at(ah, ae, PQ_CALIB_BINS, amax);
    sat_ctx sc = {.lo = symmetric ? -amax : lo, .hi = symmetric ? amax : hi, .out = 0};
    pq_calib_site_bins(s, count_outside, &sc);
    out->saturation = (double)sc.out / (double)s->count;
cleanup:
    free(ah); free(sh); free(ae); free(se);
    return st;
}

void pq_calib_qparams(const pq_calib_range *r, bool symmetric, float *scale, int32_t *zp)
{
    if (symmetric) {
        float s = r->amax / 127.0f;
        *scale = s > 0 && isfinite(s) ? s : 1.0f;
        *zp = 0;
        return;
    }
    float rmin = fminf(r->lo, 0.0f), rmax = fmaxf(r->hi, 0.0f);
    float s = (float)(((double)rmax - (double)rmin) / 255.0);
    if (!(s >= FLT_MIN) || !isfinite(s)) { *scale = 1.0f; *zp = 0; return; }
    double z = -128.0 - nearbyint((double)rmin / (double)s);
    if (z < -128) z = -128;
    if (z > 127) z = 127;
    *scale = s;
    *zp = (int32_t)z;
}
