/* SPDX-License-Identifier: Apache-2.0 */
/* rtn.c - round-to-nearest quantization of weight rows: observe a row (or a
 * group of it), derive torch qparams, quantize it while it is still in cache,
 * then optionally measure its error. */
#include "quant/rtn.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/pq_cpu.h"


pq_status pq_rtn_tensor_range(const pq_ops *k, const float *w, int64_t n_elems, float *mn,
                              float *mx, int64_t *n_nonfinite)
{
    if (n_elems < 0) return pq_err(PQ_ERR_INTERNAL, "pq_rtn_tensor_range: %lld elements", (long long)n_elems);
    const int64_t chunk = (int64_t)1 << 20;
    float lo = INFINITY, hi = -INFINITY;
    int64_t bad = 0;
    for (int64_t i = 0; i < n_elems; i += chunk) {
        float l, h;
        int64_t b;
        k->row_minmax(w + i, n_elems - i < chunk ? n_elems - i : chunk, &l, &h, &b);
        if (l < lo) lo = l;
        if (h > hi) hi = h;
        bad += b;
    }
    *mn = lo;
    *mx = hi;
    *n_nonfinite = bad;
    return PQ_OK;
}

/* Everything a row needs, shared read-only by the threads. */
typedef struct rtn_job {
    const pq_ops *k;
    const float *w;
    int64_t cols, gs, n_groups, row_bytes;
    int32_t qmin, qmax;
    bool symmetric, per_tensor, four_bit, zero_nan, metrics;
    float t_scale; /* per-tensor qparams */
    int32_t t_zp;
    pq_rtn_rows *out;
} rtn_job;

/* Per-thread scratch: a float copy of a group with non-finite values zeroed
 * (policy ZERO only, allocated on first need) and the int8 codes of a row
 * before 4-bit packing. */
typedef struct rtn_scratch {
    float *clean;
    int8_t *codes;
    bool oom;
} rtn_scratch;

/* Running error sums of one row. The sums are split into PQ_RTN_LANES
 * partial sums by column index (column mod PQ_RTN_LANES) and combined by a
 * fixed pairwise tree at the end of the row: a fixed order, so a row's result
 * does not depend on threads, ranks or its group layout, and the independent
 * partial sums let the loop run at the speed of the quantizer instead of the
 * latency of one chain of double additions. */
#define PQ_RTN_LANES 8
typedef struct row_acc {
    double s[PQ_RTN_LANES], e[PQ_RTN_LANES], m[PQ_RTN_LANES];
} row_acc;

/* One element: w, its code q, qparams; lane = column mod PQ_RTN_LANES. */
static inline void acc_one(row_acc *a, int j, float x, int8_t q, float scale, int32_t zp)
{
    double wv = x;
    /* w_hat exactly as dequantize_row computes it (fp32) */
    double d = wv - (double)((float)((int32_t)q - zp) * scale);
    a->s[j] += wv * wv;
    a->e[j] += d * d;
    d = fabs(d);
    a->m[j] = d > a->m[j] ? d : a->m[j];
}

/* Metric pass over the columns [c0, c0 + n) of a row: the lane-aligned
 * body through the dispatched kernel (pq_ops.error_lanes, whose lanes are
 * these), the ragged ends element by element; the arithmetic is the same
 * as acc_one's. */
static void group_metrics(const pq_ops *k, row_acc *a, int64_t c0, const float *x,
                          const int8_t *q, int64_t n, float scale, int32_t zp)
{
    int64_t i = 0;
    for (; i < n && ((c0 + i) % PQ_RTN_LANES); i++)
        acc_one(a, (int)((c0 + i) % PQ_RTN_LANES), x[i], q[i], scale, zp);
    const int64_t body = (n - i) / PQ_RTN_LANES * PQ_RTN_LANES;
    if (body) k->error_lanes(x + i, q + i, body, scale, zp, a->s, a->e, a->m);
    for (i += body; i < n; i++) acc_one(a, (int)((c0 + i) % PQ_RTN_LANES), x[i], q[i], scale, zp);
}

/* Pairwise tree over the lanes: ((0+1)+(2+3))+((4+5)+(6+7)). */
static double lanes_sum(const double *v)
{
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

/* Quantize row r. Returns the number of non-finite elements met; under policy
 * ERROR the row is left unfinished when that is not 0. */
static int64_t do_row(const rtn_job *J, int64_t r, rtn_scratch *sc)
{
    const pq_ops *k = J->k;
    const float *x = J->w + r * J->cols;
    unsigned char *crow = (unsigned char *)J->out->codes + r * J->row_bytes;
    int8_t *q = J->four_bit ? sc->codes : (int8_t *)crow;
    row_acc acc;
    memset(&acc, 0, sizeof acc);
    int64_t row_bad = 0;
    for (int64_t g = 0; g < J->n_groups; g++) {
        const int64_t c0 = g * J->gs;
        const int64_t n = J->cols - c0 < J->gs ? J->cols - c0 : J->gs;
        const float *src = x + c0;
        float mn, mx, scale;
        int32_t zp;
        int64_t bad;
        k->row_minmax(src, n, &mn, &mx, &bad);
        if (bad) {
            row_bad += bad;
            if (!J->zero_nan) return row_bad;
            if (!sc->clean && !(sc->clean = malloc((size_t)J->gs * sizeof(float)))) {
                sc->oom = true;
                return 0;
            }
            for (int64_t i = 0; i < n; i++) sc->clean[i] = isfinite(src[i]) ? src[i] : 0.0f;
            src = sc->clean;
            /* the zeroed elements are part of the statistics */
            mn = mn < 0.0f ? mn : 0.0f;
            mx = mx > 0.0f ? mx : 0.0f;
        }
        if (J->per_tensor) {
            scale = J->t_scale;
            zp = J->t_zp;
        } else {
            pq_qparams(mn, mx, J->qmin, J->qmax, J->symmetric, &scale, &zp);
            J->out->scale[r * J->n_groups + g] = scale;
            if (!J->symmetric) J->out->zero_point[r * J->n_groups + g] = zp;
        }
        k->quantize_row(src, n, 1.0f / scale, zp, J->qmin, J->qmax, q + c0);
        if (J->metrics) group_metrics(k, &acc, c0, src, q + c0, n, scale, zp);
    }
    if (J->four_bit) k->pack_i4(q, J->cols, crow);
    if (J->metrics) {
        double me = 0.0;
        for (int j = 0; j < PQ_RTN_LANES; j++) me = acc.m[j] > me ? acc.m[j] : me;
        J->out->row_sum_sq[r] = lanes_sum(acc.s);
        J->out->row_err_sq[r] = lanes_sum(acc.e);
        J->out->row_max_err[r] = (float)me;
    }
    return row_bad;
}

/* Detail for the first non-finite element of row r. */
static pq_status nonfinite_error(const rtn_job *J, int64_t r, const char *name, int64_t row_offset)
{
    const float *x = J->w + r * J->cols;
    int64_t c = 0;
    while (c < J->cols && isfinite(x[c])) c++;
    const char *what = c < J->cols && isinf(x[c]) ? (x[c] > 0 ? "+Inf" : "-Inf") : "NaN";
    return pq_err(PQ_ERR_QUANTIZATION,
                  "tensor '%s': row %lld (column %lld) holds %s; use --nan-policy zero|keep to override",
                  name ? name : "?", (long long)(row_offset + r), (long long)c, what);
}

pq_status pq_rtn_quantize_rows(const pq_ops *ops, int n_threads, const float *w, int64_t n_rows,
                               int64_t cols, const pq_qspec *spec, pq_nan_policy pol,
                               const float tensor_range[2], const char *tensor_name,
                               int64_t row_offset, pq_rtn_rows *out)
{
    const char *name = tensor_name ? tensor_name : "?";
    out->n_nonfinite = 0;
    if (spec->bits != 8 && spec->bits != 4)
        return pq_err(PQ_ERR_CONFIG, "tensor '%s': %d-bit quantization is not supported (8 or 4)",
                      name, spec->bits);
    if (spec->gran == PQ_GRAN_GROUP && (spec->group_size < 32 || spec->group_size > 256))
        return pq_err(PQ_ERR_CONFIG, "tensor '%s': group size %d is outside 32..256", name,
                      spec->group_size);
    if (n_rows < 0 || cols < 0)
        return pq_err(PQ_ERR_INTERNAL, "tensor '%s': bad shape [%lld, %lld]", name,
                      (long long)n_rows, (long long)cols);
    if (!spec->symmetric && !out->zero_point)
        return pq_err(PQ_ERR_INTERNAL, "tensor '%s': asymmetric quantization without zero points", name);

    rtn_job J = {
        .k = ops, .w = w, .cols = cols,
        .symmetric = spec->symmetric, .per_tensor = spec->gran == PQ_GRAN_TENSOR,
        .four_bit = spec->bits == 4, .zero_nan = pol == PQ_NAN_ZERO,
        .metrics = out->row_sum_sq && out->row_err_sq && out->row_max_err, .out = out,
    };
    pq_qspec_range(spec, &J.qmin, &J.qmax);
    J.n_groups = pq_qspec_groups(spec, cols);
    J.gs = spec->gran == PQ_GRAN_GROUP ? spec->group_size : (cols ? cols : 1);
    J.row_bytes = pq_qspec_row_bytes(spec, cols);

    if (J.per_tensor) {
        float mn, mx;
        if (tensor_range) {
            mn = tensor_range[0];
            mx = tensor_range[1];
        } else {
            int64_t bad;
            pq_status st = pq_rtn_tensor_range(ops, w, n_rows * cols, &mn, &mx, &bad);
            if (st) return st;
        }
        /* Under ZERO a tensor of only NaN/Inf observed zeros, not nothing. */
        if (J.zero_nan && mn == INFINITY && mx == -INFINITY && n_rows * cols > 0) mn = mx = 0.0f;
        pq_qparams(mn, mx, J.qmin, J.qmax, J.symmetric, &J.t_scale, &J.t_zp);
        out->scale[0] = J.t_scale;
        if (!J.symmetric) out->zero_point[0] = J.t_zp;
    }

    int64_t first_bad = INT64_MAX, total_bad = 0;
    bool oom = false;
    const int nt = pq_loop_threads(n_threads, n_rows);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : total_bad)
#endif
    {
        rtn_scratch sc = {0};
        bool stop = false;
        if (J.four_bit && !(sc.codes = malloc((size_t)cols + 1))) sc.oom = stop = true;
        /* static schedule: each thread sees its rows in ascending order, so
         * its first failing row is the lowest of its block */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < n_rows; r++) {
            if (stop) continue;
            int64_t b = do_row(&J, r, &sc);
            total_bad += b;
            if (sc.oom || (b && !J.zero_nan)) {
                stop = true;
                if (b && !J.zero_nan) {
#ifdef _OPENMP
#pragma omp critical(pq_rtn_first_bad)
#endif
                    if (r < first_bad) first_bad = r;
                }
            }
        }
        if (sc.oom) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            oom = true;
        }
        free(sc.clean);
        free(sc.codes);
    }
    (void)nt;
    if (oom) return pq_err(PQ_ERR_RESOURCE, "tensor '%s': out of memory for quantization scratch", name);
    if (first_bad != INT64_MAX) return nonfinite_error(&J, first_bad, name, row_offset);
    out->n_nonfinite = total_bad;
    return PQ_OK;
}

pq_status pq_rtn_quantize(const pq_ops *ops, int n_threads, const float *w, int64_t rows,
                          int64_t cols, const pq_qspec *spec, pq_nan_policy pol,
                          const char *tensor_name, pq_qtensor *out)
{
    pq_status st;
    double *ss = NULL, *es = NULL;
    float *me = NULL;
    if ((st = pq_qtensor_alloc(out, spec, rows, cols))) return st;
    ss = malloc((size_t)rows * sizeof *ss + 1);
    es = malloc((size_t)rows * sizeof *es + 1);
    me = malloc((size_t)rows * sizeof *me + 1);
    if (!ss || !es || !me) {
        st = pq_err(PQ_ERR_RESOURCE, "tensor '%s': out of memory for metrics", tensor_name ? tensor_name : "?");
        goto cleanup;
    }
    pq_rtn_rows r = {
        .codes = out->codes, .scale = out->scale, .zero_point = out->zero_point,
        .row_sum_sq = ss, .row_err_sq = es, .row_max_err = me,
    };
    if ((st = pq_rtn_quantize_rows(ops, n_threads, w, rows, cols, spec, pol, NULL, tensor_name, 0, &r)))
        goto cleanup;
    pq_qmetrics_from_rows(ss, es, me, rows, r.n_nonfinite, &out->metrics);
cleanup:
    free(ss);
    free(es);
    free(me);
    if (st) pq_qtensor_free(out);
    return st;
}

void pq_qmetrics_from_rows(const double *row_sum_sq, const double *row_err_sq,
                           const float *row_max_err, int64_t n_rows, int64_t n_nonfinite,
                           pq_qmetrics *m)
{
    memset(m, 0, sizeof *m);
    for (int64_t r = 0; r < n_rows; r++) {
        m->sum_sq += row_sum_sq[r];
        m->err_sq += row_err_sq[r];
        if (row_max_err[r] > m->max_abs_err) m->max_abs_err = row_max_err[r];
    }
    m->n_nonfinite = n_nonfinite;
    pq_qmetrics_finish(m);
}
