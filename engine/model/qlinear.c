/* SPDX-License-Identifier: Apache-2.0 */
/* qlinear.c - a Linear layer on fp32 (OpenBLAS) or packed integer weights
 * (pq_gemm), with bias, GELU or residual add as its epilogue. */
#include "model/qlinear.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/blas.h"
#include "kernels/gemm/pq_gemm.h"

struct pq_qlinear {
    pq_qlinear_kind kind;
    int bits;
    int64_t out_dim, in_dim;
    float *w;                 /* fp32 kind: [out, in] */
    pq_gemm_w *pw;            /* quantized kinds */
    int64_t bytes;
    float act_scale;          /* static W8A8 */
    int32_t act_zp, act_qmin, act_qmax;
    const pq_qlinear *parent; /* a view: output rows [row0, row0 + out_dim) of parent */
    int64_t row0;
};

const char *pq_qlinear_kind_name(pq_qlinear_kind k)
{
    switch (k) {
    case PQ_QLINEAR_F32: return "fp32";
    case PQ_QLINEAR_W8A8_DYNAMIC: return "w8a8-dynamic";
    case PQ_QLINEAR_W8A8_STATIC: return "w8a8-static";
    case PQ_QLINEAR_WEIGHT_ONLY: return "weight-only";
    }
    return "?";
}

pq_status pq_qlinear_from_f32(const float *w, int64_t out_dim, int64_t in_dim, pq_qlinear **out)
{
    *out = NULL;
    pq_status st = pq_blas_load();
    if (st) return st;
    pq_qlinear *l = calloc(1, sizeof *l);
    if (!l) return pq_err(PQ_ERR_RESOURCE, "qlinear: out of memory");
    size_t n = (size_t)(out_dim * in_dim);
    l->w = malloc(n * sizeof(float));
    if (!l->w) {
        free(l);
        return pq_err(PQ_ERR_RESOURCE, "qlinear: out of memory for [%lld, %lld] fp32 weights",
                      (long long)out_dim, (long long)in_dim);
    }
    memcpy(l->w, w, n * sizeof(float));
    l->kind = PQ_QLINEAR_F32;
    l->bits = 32;
    l->out_dim = out_dim;
    l->in_dim = in_dim;
    l->bytes = (int64_t)(n * sizeof(float));
    *out = l;
    return PQ_OK;
}

pq_qlinear_kind pq_qlinear_choose(int bits, pq_granularity gran, const char *scheme,
                                  bool has_act_scale, bool force_weight_only)
{
    if (force_weight_only || (bits == 8 && gran == PQ_GRAN_GROUP) || (bits != 8 && bits != 4))
        return PQ_QLINEAR_WEIGHT_ONLY;
    if (scheme && (!strcmp(scheme, "weight-only") || !strcmp(scheme, "w8a16") || !strcmp(scheme, "w4a16")))
        return PQ_QLINEAR_WEIGHT_ONLY;
    return has_act_scale ? PQ_QLINEAR_W8A8_STATIC : PQ_QLINEAR_W8A8_DYNAMIC;
}

/* A GEMM call's status as an error about `what` (a Linear's name or role). */
static pq_status gemm_status(pq_kstatus k, const char *what)
{
    if (k == PQ_KOK) return PQ_OK;
    if (k == PQ_KNOMEM) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory in the integer GEMM", what);
    return pq_err(PQ_ERR_CONFIG, "%s: the integer GEMM refused its arguments (%s)", what,
                  pq_kstatus_str(k));
}

/* What pq_gemm_pack_* would refuse, said with the tensor's name: zero
 * points outside the code range, int8 x int8 sums that could leave int32. */
static pq_status check_pack(const char *name, const pq_qspec *spec, int64_t cols, const int32_t *zero_point,
                            int64_t nsc, bool w8a8)
{
    int64_t kmax = spec->bits == 8 ? 32768 : 65536;
    if (w8a8 && cols > kmax)
        return pq_err(PQ_ERR_CONFIG, "%s: W%dA8 needs at most %lld input columns (got %lld)", name,
                      spec->bits, (long long)kmax, (long long)cols);
    int32_t lo = spec->bits == 8 ? -128 : -8, hi = spec->bits == 8 ? 127 : 7;
    for (int64_t i = 0; zero_point && i < nsc; i++)
        if (zero_point[i] < lo || zero_point[i] > hi)
            return pq_err(PQ_ERR_FORMAT, "%s: zero point %d (scale %lld) is outside [%d, %d]", name,
                          (int)zero_point[i], (long long)i, (int)lo, (int)hi);
    return PQ_OK;
}

static pq_gemm_gran to_gemm_gran(pq_granularity g)
{
    return g == PQ_GRAN_TENSOR ? PQ_GEMM_TENSOR : g == PQ_GRAN_CHANNEL ? PQ_GEMM_CHANNEL : PQ_GEMM_GROUP;
}

/* The weights to pack: codes in n_parts row blocks (borrowed), the scales
 * and zero points of all their rows under spec. */
typedef struct qweights {
    pq_qspec spec;
    int64_t rows, cols;
    const void *const *codes;
    const int64_t *part_rows;
    int n_parts;
    const float *scale;
    const int32_t *zero_point; /* NULL when symmetric */
} qweights;

static pq_status from_qweights(const char *name, const qweights *q, pq_qlinear_kind kind, float act_scale,
                               int32_t act_zp, int n_threads, pq_qlinear **out)
{
    *out = NULL;
    if (kind == PQ_QLINEAR_F32)
        return pq_err(PQ_ERR_CONFIG, "%s: a quantized tensor cannot run as an fp32 Linear", name);
    bool w8a8 = (kind != PQ_QLINEAR_WEIGHT_ONLY);
    if (w8a8 && !(q->spec.bits == 4 || (q->spec.bits == 8 && q->spec.gran != PQ_GRAN_GROUP)))
        return pq_err(PQ_ERR_CONFIG, "%s: int8 activations need 8-bit per-tensor or per-channel weights or "
                      "4-bit weights (W4A8), not %d-bit %s", name, q->spec.bits,
                      pq_granularity_name(q->spec.gran));
    if (kind == PQ_QLINEAR_W8A8_STATIC && !(act_scale > 0.0f))
        return pq_err(PQ_ERR_FORMAT, "%s: static W8A8 needs a positive act_scale (got %g)", name,
                      (double)act_scale);
    int64_t n_groups = pq_qspec_groups(&q->spec, q->cols);
    int64_t nsc = q->spec.gran == PQ_GRAN_TENSOR ? 1 : q->rows * n_groups;
    pq_status st = check_pack(name, &q->spec, q->cols, q->zero_point, nsc, w8a8);
    if (st != PQ_OK) return st;
    pq_qlinear *l = calloc(1, sizeof *l);
    if (!l) return pq_err(PQ_ERR_RESOURCE, "qlinear: out of memory");
    l->kind = kind;
    l->bits = q->spec.bits;
    l->out_dim = q->rows;
    l->in_dim = q->cols;
    l->act_scale = act_scale;
    l->act_zp = act_zp;
    l->act_qmin = act_zp ? -128 : -127;
    l->act_qmax = 127;
    pq_kstatus ks = pq_gemm_pack_parts(q->spec.bits, q->codes, q->part_rows, q->n_parts, q->cols, q->scale,
                                       q->zero_point, to_gemm_gran(q->spec.gran), q->spec.group_size,
                                       w8a8 ? PQ_GEMM_USE_I8I8 : PQ_GEMM_USE_WONLY, n_threads, &l->pw);
    if (ks != PQ_KOK) {
        free(l);
        if (ks == PQ_KNOMEM)
            return pq_err(PQ_ERR_RESOURCE, "%s: out of memory packing [%lld, %lld] weights", name,
                          (long long)q->rows, (long long)q->cols);
        return pq_err(PQ_ERR_CONFIG, "%s: packing the weights failed (%s)", name, pq_kstatus_str(ks));
    }
    /* what the pack holds: codes, one scale (+ zero point) per scale slot,
     * and the int32 code sums of 8-bit packs (per row) and W4A8 packs (per
     * row and group) */
    int64_t codes = q->rows * pq_qspec_row_bytes(&q->spec, q->cols);
    int64_t sums = q->spec.bits == 8 ? q->rows : w8a8 ? q->rows * n_groups : 0;
    l->bytes = codes + nsc * 4 * (q->zero_point ? 2 : 1) + sums * 4;
    *out = l;
    return PQ_OK;
}

pq_status pq_qlinear_from_qtensor(const char *name, const pq_qtensor *qt, pq_qlinear_kind kind,
                                  float act_scale, int32_t act_zp, int n_threads, pq_qlinear **out)
{
    const void *codes[1] = {qt->codes};
    qweights q = {.spec = qt->spec, .rows = qt->rows, .cols = qt->cols, .codes = codes,
                  .part_rows = &qt->rows, .n_parts = 1, .scale = qt->scale, .zero_point = qt->zero_point};
    return from_qweights(name, &q, kind, act_scale, act_zp, n_threads, out);
}

/* A per-tensor scale stacks as one repeated per row. */
static pq_granularity stacked_gran(pq_granularity g)
{
    return g == PQ_GRAN_TENSOR ? PQ_GRAN_CHANNEL : g;
}

bool pq_qlinear_specs_stack(const pq_qspec *a, const pq_qspec *b)
{
    pq_granularity ga = stacked_gran(a->gran);
    return a->bits == b->bits && ga == stacked_gran(b->gran) && a->symmetric == b->symmetric &&
           (ga != PQ_GRAN_GROUP || a->group_size == b->group_size);
}

pq_status pq_qlinear_from_qtensors_stacked(const char *name, const pq_qtensor *const *qts, int n_parts,
                                           pq_qlinear_kind kind, float act_scale, int32_t act_zp, int n_threads,
                                           pq_qlinear **out)
{
    enum { MAX_PARTS = 8 };
    *out = NULL;
    if (n_parts < 1 || n_parts > MAX_PARTS)
        return pq_err(PQ_ERR_CONFIG, "%s: %d parts to stack (1 to %d)", name, n_parts, (int)MAX_PARTS);
    const pq_qtensor *q0 = qts[0];
    pq_qspec spec = q0->spec;
    spec.gran = stacked_gran(spec.gran);
    spec.symmetric = (q0->zero_point == NULL);
    int64_t rows = 0, part_rows[MAX_PARTS];
    const void *codes[MAX_PARTS];
    for (int i = 0; i < n_parts; i++) {
        const pq_qtensor *q = qts[i];
        if (!pq_qlinear_specs_stack(&q->spec, &q0->spec) || q->cols != q0->cols ||
            (q->zero_point == NULL) != spec.symmetric)
            return pq_err(PQ_ERR_CONFIG, "%s: part %d (%d-bit %s, %lld columns) does not stack with part 0 "
                          "(%d-bit %s, %lld columns)", name, i, q->spec.bits, pq_granularity_name(q->spec.gran),
                          (long long)q->cols, q0->spec.bits, pq_granularity_name(q0->spec.gran),
                          (long long)q0->cols);
        codes[i] = q->codes;
        part_rows[i] = q->rows;
        rows += q->rows;
    }
    /* the codes stay where they are (the pack reads each part's rows); the
     * scales and zero points per (row, group), a tensor scale repeated */
    int64_t ng = pq_qspec_groups(&spec, q0->cols);
    float *scale = malloc((size_t)(rows * ng) * sizeof *scale + 1);
    int32_t *zp = spec.symmetric ? NULL : malloc((size_t)(rows * ng) * sizeof *zp + 1);
    if (!scale || (!spec.symmetric && !zp)) {
        free(scale);
        free(zp);
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory for the scales of [%lld, %lld] weights", name,
                      (long long)rows, (long long)q0->cols);
    }
    int64_t r = 0;
    for (int i = 0; i < n_parts; i++) {
        const pq_qtensor *q = qts[i];
        for (int64_t j = 0; j < q->rows * ng; j++) {
            int64_t src = q->spec.gran == PQ_GRAN_TENSOR ? 0 : j;
            scale[r * ng + j] = q->scale[src];
            if (zp) zp[r * ng + j] = q->zero_point[src];
        }
        r += q->rows;
    }
    qweights q = {.spec = spec, .rows = rows, .cols = q0->cols, .codes = codes, .part_rows = part_rows,
                  .n_parts = n_parts, .scale = scale, .zero_point = zp};
    pq_status st = from_qweights(name, &q, kind, act_scale, act_zp, n_threads, out);
    free(scale);
    free(zp);
    return st;
}

pq_status pq_qlinear_view_rows(const pq_qlinear *parent, int64_t row0, int64_t n, pq_qlinear **out)
{
    *out = NULL;
    if (row0 < 0 || n <= 0 || row0 + n > parent->out_dim)
        return pq_err(PQ_ERR_CONFIG, "qlinear: rows [%lld, %lld) are not inside the %lld output rows",
                      (long long)row0, (long long)(row0 + n), (long long)parent->out_dim);
    pq_qlinear *l = calloc(1, sizeof *l);
    if (!l) return pq_err(PQ_ERR_RESOURCE, "qlinear: out of memory");
    *l = *parent;
    l->w = NULL;
    l->pw = NULL;
    l->bytes = 0;
    l->parent = parent->parent ? parent->parent : parent;
    l->row0 = parent->row0 + row0;
    l->out_dim = n;
    *out = l;
    return PQ_OK;
}

/* A view: the parent's whole output into scratch, bias placed at the view's
 * columns (zeros elsewhere, discarded), then the columns copied out. The
 * residual add follows the copy: the same one fp32 add as the epilogue. */
static pq_status view_forward(const pq_ops *ops, const pq_qlinear *l, const float *x, int64_t m, pq_row_segs rows,
                              const float *bias, pq_qlinear_post post, const float *residual, float *y,
                              int n_threads)
{
    const pq_qlinear *p = l->parent;
    int64_t n = l->out_dim, pn = p->out_dim;
    float *full = malloc((size_t)(m * pn) * sizeof(float));
    float *pb = bias ? calloc((size_t)pn, sizeof(float)) : NULL;
    if (!full || (bias && !pb)) {
        free(full);
        free(pb);
        return pq_err(PQ_ERR_RESOURCE, "qlinear: out of memory for a [%lld, %lld] output", (long long)m,
                      (long long)pn);
    }
    if (pb) memcpy(pb + l->row0, bias, (size_t)n * sizeof(float));
    pq_status st = pq_qlinear_forward_rows(ops, p, x, m, rows, pb,
                                           post == PQ_QLINEAR_POST_GELU ? post : PQ_QLINEAR_POST_NONE, NULL, full,
                                           n_threads);
    if (st == PQ_OK)
        for (int64_t i = 0; i < m; i++) {
            float *yr = y + i * n;
            memcpy(yr, full + i * pn + l->row0, (size_t)n * sizeof(float));
            if (post == PQ_QLINEAR_POST_RESIDUAL)
                for (int64_t j = 0; j < n; j++) yr[j] = residual[i * n + j] + yr[j];
        }
    free(full);
    free(pb);
    return st;
}

static void post_f32(const pq_ops *ops, float *y, int64_t m, int64_t n, pq_qlinear_post post,
                     const float *residual)
{
    if (post == PQ_QLINEAR_POST_GELU) {
        ops->gelu(y, m * n);
    } else if (post == PQ_QLINEAR_POST_RESIDUAL) {
        for (int64_t i = 0; i < m * n; i++) y[i] = residual[i] + y[i];
    }
}

pq_status pq_qlinear_forward(const pq_ops *ops, const pq_qlinear *l, const float *x, int64_t m,
                             const float *bias, pq_qlinear_post post, const float *residual, float *y,
                             int n_threads)
{
    return pq_qlinear_forward_rows(ops, l, x, m, (pq_row_segs){0}, bias, post, residual, y, n_threads);
}

pq_status pq_qlinear_forward_rows(const pq_ops *ops, const pq_qlinear *l, const float *x, int64_t m,
                                  pq_row_segs rows, const float *bias, pq_qlinear_post post,
                                  const float *residual, float *y, int n_threads)
{
    int64_t n = l->out_dim, k = l->in_dim;
    if (m <= 0) return PQ_OK;
    if (post == PQ_QLINEAR_POST_RESIDUAL && (!residual || residual == y))
        return pq_err(PQ_ERR_CONFIG, "qlinear: residual post-op needs a residual apart from the output");
    if (l->parent) return view_forward(ops, l, x, m, rows, bias, post, residual, y, n_threads);
    if (l->kind == PQ_QLINEAR_F32) {
        pq_status st = pq_linear_f32(x, m, k, l->w, bias, n, y, rows, n_threads);
        if (st) return st;
        post_f32(ops, y, m, n, post, residual);
        return PQ_OK;
    }
    pq_gemm_epilogue epi = {.bias = bias,
                            .post = post == PQ_QLINEAR_POST_GELU ? PQ_GEMM_POST_GELU
                                    : post == PQ_QLINEAR_POST_RESIDUAL ? PQ_GEMM_POST_RESIDUAL
                                                                       : PQ_GEMM_POST_NONE,
                            .residual = residual, .ldr = n};
    const char *what = l->bits == 4 && l->kind != PQ_QLINEAR_WEIGHT_ONLY
                           ? (l->kind == PQ_QLINEAR_W8A8_DYNAMIC ? "w4a8-dynamic" : "w4a8-static")
                           : pq_qlinear_kind_name(l->kind);
    if (l->kind == PQ_QLINEAR_WEIGHT_ONLY)
        return gemm_status(pq_gemm_wonly_f32(ops, x, m, k, l->pw, &epi, y, n, n_threads), what);
    if (l->kind == PQ_QLINEAR_W8A8_DYNAMIC)
        return gemm_status(pq_gemm_w8a8_f32(ops, x, m, k, l->pw, &epi, y, n, n_threads), what);
    int8_t *q = malloc((size_t)(m * k));
    if (!q) return pq_err(PQ_ERR_RESOURCE, "qlinear: out of memory for %lld x %lld codes", (long long)m,
                          (long long)k);
    pq_gemm_quantize_rows_static(x, m, k, k, l->act_scale, l->act_zp, l->act_qmin, l->act_qmax, q, k);
    pq_status st = gemm_status(pq_gemm_i8i8_f32(ops, q, m, k, &l->act_scale, 0, l->act_zp, l->pw,
                                                &epi, y, n, n_threads), what);
    free(q);
    return st;
}

pq_qlinear_kind pq_qlinear_get_kind(const pq_qlinear *l) { return l->kind; }
int pq_qlinear_bits(const pq_qlinear *l) { return l->bits; }
int64_t pq_qlinear_out_dim(const pq_qlinear *l) { return l->out_dim; }
int64_t pq_qlinear_in_dim(const pq_qlinear *l) { return l->in_dim; }
int64_t pq_qlinear_weight_bytes(const pq_qlinear *l) { return l->bytes; }

void pq_qlinear_free(pq_qlinear *l)
{
    if (!l) return;
    free(l->w);
    pq_gemm_w_free(l->pw);
    free(l);
}
