/* SPDX-License-Identifier: Apache-2.0 */
/* gptq.c - see gptq.h. The solve follows the paper's Algorithm 1 with lazy
 * batch updates: inside a block of columns the rows of a tile are quantized
 * and updated column by column by the ops context's kernel
 * (pq_ops.gptq_block, vectors across rows; the same bits in every context);
 * after the block the rest of the row tile is updated by one sgemm,
 * W[:, i2:] -= Err @ U[i1:i2, i2:]. */
#include "quant/gptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/pq_cpu.h"
#include "model/blas.h"
#include "quant/gptq_factor.h"

/* Rows per tile. Every sgemm of a solve has the same shape whatever rows a
 * call is given (a short last tile is padded with zero rows), so a row's
 * numbers never depend on the block it came in. 128 rather than 64: the
 * sgemm packs each panel of U half as often (about 5 % of the solve). */
#define PQ_GPTQ_TILE 128
/* Retries multiply the damping by this. */
#define PQ_GPTQ_DAMP_STEP 10.0

struct pq_gptq_factor {
    int64_t d;
    int block;
    bool act_order;
    double damp_frac;  /* used */
    int64_t n_dead;
    int64_t *perm;     /* position -> original column */
    uint8_t *dead;     /* by original column */
    float *U;          /* d x d row-major, upper triangle (the rest zero) */
    char *name;
};

void pq_gptq_factor_free(pq_gptq_factor *f)
{
    if (!f) return;
    free(f->perm);
    free(f->dead);
    free(f->U);
    free(f->name);
    free(f);
}

/* Image layout: header, perm[d] (int64), U[d*d] (fp32), dead[d] (bytes). */
typedef struct factor_header {
    int64_t d, block, act_order, n_dead;
    double damp_frac;
} factor_header;

size_t pq_gptq_factor_image_bytes(int64_t d)
{
    return sizeof(factor_header) + (size_t)d * sizeof(int64_t) + (size_t)(d * d) * sizeof(float) + (size_t)d;
}

void pq_gptq_factor_to_image(const pq_gptq_factor *f, void *image)
{
    unsigned char *p = image;
    const factor_header h = {.d = f->d, .block = f->block, .act_order = f->act_order, .n_dead = f->n_dead,
                             .damp_frac = f->damp_frac};
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, f->perm, (size_t)f->d * sizeof *f->perm);
    p += (size_t)f->d * sizeof *f->perm;
    memcpy(p, f->U, (size_t)(f->d * f->d) * sizeof *f->U);
    p += (size_t)(f->d * f->d) * sizeof *f->U;
    memcpy(p, f->dead, (size_t)f->d);
}

pq_status pq_gptq_factor_from_image(const void *image, int64_t d, const char *name, pq_gptq_factor **out)
{
    const unsigned char *p = image;
    factor_header h;
    memcpy(&h, p, sizeof h);
    *out = NULL;
    if (h.d != d) return pq_err(PQ_ERR_PROTO, "GPTQ factor of '%s': an image of width %lld, %lld expected", name,
                                (long long)h.d, (long long)d);
    pq_gptq_factor *f = calloc(1, sizeof *f);
    if (!f) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    f->d = d;
    f->block = (int)h.block;
    f->act_order = h.act_order != 0;
    f->n_dead = h.n_dead;
    f->damp_frac = h.damp_frac;
    f->perm = malloc((size_t)d * sizeof *f->perm);
    f->U = malloc((size_t)(d * d) * sizeof *f->U);
    f->dead = malloc((size_t)d);
    f->name = strdup(name);
    if (!f->perm || !f->U || !f->dead || !f->name) {
        pq_gptq_factor_free(f);
        return pq_err(PQ_ERR_RESOURCE, "out of memory for the GPTQ factor of '%s'", name);
    }
    p += sizeof h;
    memcpy(f->perm, p, (size_t)d * sizeof *f->perm);
    p += (size_t)d * sizeof *f->perm;
    memcpy(f->U, p, (size_t)(d * d) * sizeof *f->U);
    p += (size_t)(d * d) * sizeof *f->U;
    memcpy(f->dead, p, (size_t)d);
    *out = f;
    return PQ_OK;
}

int64_t pq_gptq_factor_dim(const pq_gptq_factor *f) { return f->d; }
double pq_gptq_factor_damp(const pq_gptq_factor *f) { return f->damp_frac; }
int64_t pq_gptq_factor_n_dead(const pq_gptq_factor *f) { return f->n_dead; }

/* descending diagonal, ties by column: a total order, so qsort is stable */
static const double *sort_diag;
static int cmp_diag_desc(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    double x = sort_diag[i], y = sort_diag[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

pq_status pq_gptq_prepare(double *H, int64_t d, const pq_gptq_opts *o, const char *name,
                          pq_gptq_factor **out)
{
    return pq_gptq_prepare_with(H, d, o, name, &pq_factor_comm_local, PQ_GPTQ_FACTOR_NB, 1, out);
}

pq_status pq_gptq_prepare_with(double *H, int64_t d, const pq_gptq_opts *o, const char *name,
                               const pq_factor_comm *c, int nb, int n_threads, pq_gptq_factor **out)
{
    *out = NULL;
    if (!name) name = "?";
    if (d < 1 || d > INT32_MAX / 2)
        return pq_err(PQ_ERR_CONFIG, "Linear '%s': bad width %lld", name, (long long)d);
    if (!(o->damp >= 0.0) || !isfinite(o->damp) || o->block_size < 1 || o->damp_retries < 0)
        return pq_err(PQ_ERR_CONFIG, "Linear '%s': bad GPTQ options (damp %g, block size %d, retries %d)",
                      name, o->damp, o->block_size, o->damp_retries);
    for (int64_t k = 0; k < d * d; k++)
        if (!isfinite(H[k]))
            return pq_err(PQ_ERR_CALIBRATION, "Linear '%s': the Hessian holds NaN/Inf at (%lld, %lld)", name,
                          (long long)(k / d), (long long)(k % d));

    pq_status st = PQ_OK;
    float *X = NULL;
    pq_gptq_factor *f = calloc(1, sizeof *f);
    double *diag = malloc((size_t)d * sizeof *diag);
    double *A = malloc((size_t)(d * d) * sizeof *A);
    if (!f || !diag || !A) goto oom;
    f->d = d;
    f->block = o->block_size;
    f->act_order = o->act_order;
    f->perm = malloc((size_t)d * sizeof *f->perm);
    f->dead = calloc((size_t)d, 1);
    f->name = strdup(name);
    X = malloc((size_t)(d * d) * sizeof *X);
    if (!f->perm || !f->dead || !f->name || !X) goto oom;

    /* dead columns: H_ii = 1, as the reference */
    for (int64_t i = 0; i < d; i++) {
        if (H[i * d + i] == 0.0) {
            H[i * d + i] = 1.0;
            f->dead[i] = 1;
            f->n_dead++;
        }
        diag[i] = H[i * d + i];
        f->perm[i] = i;
    }
    if (o->act_order) {
        sort_diag = diag;
        qsort(f->perm, (size_t)d, sizeof *f->perm, cmp_diag_desc);
        sort_diag = NULL;
    }
    double mean = 0.0;
    for (int64_t i = 0; i < d; i++) mean += diag[i];
    mean /= (double)d;

    /* H permuted, kept in H for the retries (row-major; symmetric, so
     * LAPACK's column-major view is the same matrix) */
    if (o->act_order) {
        for (int64_t a = 0; a < d; a++)
            for (int64_t b = 0; b < d; b++) A[a * d + b] = H[f->perm[a] * d + f->perm[b]];
        memcpy(H, A, (size_t)(d * d) * sizeof *H);
    }

    /* U = chol_upper(H^-1) from one Cholesky and one triangular inverse
     * instead of the reference's three steps (cholesky, cholesky_inverse,
     * cholesky(upper); 2/3 d^3 flops instead of 4/3 d^3): with J the
     * reversal of rows and columns, the lower Cholesky factor of J H J,
     * L L^T = J H J, gives H = (J L J)(J L J)^T with J L J upper, so
     * H^-1 = V^T V with V = (J L J)^-1 = J L^-1 J upper and positive on its
     * diagonal: V is the unique upper Cholesky factor of H^-1. J H J of a
     * symmetric row-major H is the flat array reversed, which is also its
     * column-major view. Both steps are blocked with a fixed block size
     * (quant/gptq_factor.h), shared by the ranks of c and the threads, so
     * the bits do not depend on either count. */
    double frac = o->damp;
    const int64_t dd = d * d;
    for (int attempt = 0;; attempt++) {
        int64_t bad = 0;
        for (int64_t k = 0; k < dd; k++) A[k] = H[dd - 1 - k];
        for (int64_t i = 0; i < d; i++) A[i * d + i] += frac * mean;
        st = pq_gptq_chol_inv(A, d, nb, c, n_threads, X, &bad);
        if (st) goto fail;
        if (!bad) break;
        if (attempt >= o->damp_retries) {
            /* bad counts in the reversed order: the original column */
            st = pq_err(PQ_ERR_QUANTIZATION,
                        "Linear '%s': the Hessian is not positive definite after damping %g (%g of the mean "
                        "diagonal %g; Cholesky failed at column %lld): too few or degenerate calibration "
                        "tokens for this input; raise the damping",
                        name, frac * mean, frac, mean, (long long)(d + 1 - bad));
            goto fail;
        }
        frac *= PQ_GPTQ_DAMP_STEP;
    }
    f->damp_frac = frac;
    free(A);
    A = NULL;
    /* U(i, j) = L^-1(d-1-i, d-1-j), i <= j; L^-1(a, b) = X[a + b*d] (column-major
     * lower): row-major U[i*d + j] = X[dd - 1 - (i + j*d)] */
    f->U = calloc((size_t)dd, sizeof *f->U);
    if (!f->U) goto oom;
    for (int64_t ib = 0; ib < d; ib += 64) /* by 64 x 64 blocks: one side is read across */
        for (int64_t jb = ib; jb < d; jb += 64)
            for (int64_t i = ib; i < ib + 64 && i < d; i++)
                for (int64_t j = jb > i ? jb : i; j < jb + 64 && j < d; j++) f->U[i * d + j] = X[dd - 1 - (i + j * d)];
    free(X);
    free(diag);
    *out = f;
    return PQ_OK;

oom:
    st = pq_err(PQ_ERR_RESOURCE, "Linear '%s': out of memory for the GPTQ factor (width %lld)", name,
                (long long)d);
fail:
    free(X);
    free(diag);
    free(A);
    pq_gptq_factor_free(f);
    return st;
}

/* ------------------------------------------------------------------ */

typedef struct qp {
    float scale, inv;
    int32_t zp;
} qp;

static inline qp make_qp(float mn, float mx, int32_t qmin, int32_t qmax, bool sym)
{
    qp p;
    pq_qparams(mn, mx, qmin, qmax, sym, &p.scale, &p.zp);
    p.inv = 1.0f / p.scale;
    return p;
}

static inline void range_of(const float *x, int64_t n, float *mn, float *mx)
{
    float a = INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *mn = a;
    *mx = b;
}

typedef struct job {
    const pq_gptq_factor *f;
    const float *W;
    int64_t n_rows, d, n_groups, gs;
    int32_t qmin, qmax;
    bool sym, group, four_bit, metrics;
    int64_t row_bytes;
    pq_rtn_rows *out;
    const pq_ops *ops;
} job;

/* qparams of a tile, group-major and row-minor ([g * TILE + r]), so that a
 * column's parameters for all the tile's rows are contiguous */
typedef struct scratch {
    float *Wt;      /* TILE x d, permuted columns, row-major (the sgemm's C) */
    float *Bt;      /* block x TILE: the current block, column-major */
    float *Et;      /* block x TILE: the block's scaled errors, column-major */
    int8_t *q;      /* d x TILE codes, permuted positions, column-major */
    int8_t *qrow;   /* d codes, original order */
    int64_t *goff;  /* block: g * TILE of each column of the block */
    float *scale, *inv, *lo, *hi;  /* TILE x n_groups (per-channel: 1) */
    int32_t *zp;
} scratch;

static void scratch_free(scratch *s)
{
    free(s->Wt);
    free(s->Bt);
    free(s->Et);
    free(s->q);
    free(s->qrow);
    free(s->goff);
    free(s->scale);
    free(s->inv);
    free(s->lo);
    free(s->hi);
    free(s->zp);
}

static bool scratch_alloc(scratch *s, const job *J)
{
    const int64_t T = PQ_GPTQ_TILE, d = J->d, B = J->f->block, TG = T * J->n_groups;
    memset(s, 0, sizeof *s);
    s->Wt = malloc((size_t)(T * d) * sizeof *s->Wt);
    s->Bt = malloc((size_t)(T * B) * sizeof *s->Bt);
    s->Et = malloc((size_t)(T * B) * sizeof *s->Et);
    s->q = malloc((size_t)(T * d));
    s->qrow = malloc((size_t)d);
    s->goff = malloc((size_t)B * sizeof *s->goff);
    s->scale = malloc((size_t)TG * sizeof *s->scale);
    s->inv = malloc((size_t)TG * sizeof *s->inv);
    s->lo = malloc((size_t)TG * sizeof *s->lo);
    s->hi = malloc((size_t)TG * sizeof *s->hi);
    s->zp = malloc((size_t)TG * sizeof *s->zp);
    return s->Wt && s->Bt && s->Et && s->q && s->qrow && s->goff && s->scale && s->inv && s->lo && s->hi && s->zp;
}

static void set_qp(scratch *s, int64_t k, float mn, float mx, const job *J)
{
    qp p = make_qp(mn, mx, J->qmin, J->qmax, J->sym);
    s->scale[k] = p.scale;
    s->inv[k] = p.inv;
    s->zp[k] = p.zp;
    s->lo[k] = (float)(J->qmin - p.zp);
    s->hi[k] = (float)(J->qmax - p.zp);
}

static double lanes_sum(const double *v)
{
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

/* Solve rows [r0, r0 + nr) of the job (nr <= TILE). */
static pq_status run_tile(const job *J, scratch *s, int64_t r0, int64_t nr)
{
    const pq_gptq_factor *f = J->f;
    const int64_t T = PQ_GPTQ_TILE, d = J->d, B = f->block, G = J->n_groups, gs = J->gs;
    const int64_t *perm = f->perm;
    const float *U = f->U;
    /* rows the column loop runs: the given ones, rounded up to a vector
     * (zero rows with zero errors); the rest of the tile's errors stay 0 */
    const int64_t nrv = (nr + 15) / 16 * 16 < T ? (nr + 15) / 16 * 16 : T;

    memset(s->Et, 0, (size_t)(T * B) * sizeof *s->Et);
    /* load, zero dead columns, static qparams */
    for (int64_t r = 0; r < T; r++) {
        float *wt = s->Wt + r * d;
        if (r >= nr) {
            memset(wt, 0, (size_t)d * sizeof *wt);
            for (int64_t g = 0; g < G; g++) set_qp(s, g * T + r, 0.0f, 0.0f, J);
            continue;
        }
        const float *w = J->W + (r0 + r) * d;
        for (int64_t i = 0; i < d; i++) wt[i] = f->dead[perm[i]] ? 0.0f : w[perm[i]];
        if (!J->group) {
            /* per-channel: the original row, dead columns included (the
             * reference's find_params before it zeroes them) */
            float mn, mx;
            range_of(w, d, &mn, &mx);
            set_qp(s, r, mn, mx, J);
        } else if (f->act_order) {
            /* static groups: original order, dead columns as 0 */
            for (int64_t g = 0; g < G; g++) {
                float mn = INFINITY, mx = -INFINITY;
                for (int64_t c = g * gs; c < d && c < (g + 1) * gs; c++) {
                    float v = f->dead[c] ? 0.0f : w[c];
                    mn = v < mn ? v : mn;
                    mx = v > mx ? v : mx;
                }
                set_qp(s, g * T + r, mn, mx, J);
            }
        }
    }

    for (int64_t i1 = 0; i1 < d; i1 += B) {
        const int64_t i2 = i1 + B < d ? i1 + B : d, nb = i2 - i1;
        for (int64_t r = 0; r < nr; r++) {
            const float *wt = s->Wt + r * d;
            /* dynamic groups starting in this block: from the weights as all
             * earlier blocks left them (the reference's find_params on W) */
            if (J->group && !f->act_order)
                for (int64_t g0 = (i1 + gs - 1) / gs * gs; g0 < i2; g0 += gs) {
                    float mn, mx;
                    range_of(wt + g0, (g0 + gs < d ? g0 + gs : d) - g0, &mn, &mx);
                    set_qp(s, g0 / gs * T + r, mn, mx, J);
                }
            for (int64_t k = 0; k < nb; k++) s->Bt[k * T + r] = wt[i1 + k];
        }
        for (int64_t r = nr; r < nrv; r++)
            for (int64_t k = 0; k < nb; k++) s->Bt[k * T + r] = 0.0f;
        for (int64_t k = 0; k < nb; k++) {
            const int64_t i = i1 + k;
            s->goff[k] = (!J->group ? 0 : f->act_order ? perm[i] / gs : i / gs) * T;
        }
        const pq_gptq_block blk = {.ld = T, .nb = nb, .u = U + i1 * d + i1, .ldu = d, .goff = s->goff,
                                   .scale = s->scale, .inv = s->inv, .lo = s->lo, .hi = s->hi, .zp = s->zp,
                                   .x = s->Bt, .e = s->Et, .q = s->q + i1 * T};
        J->ops->gptq_block(&blk, 0, nrv);
        if (i2 < d) {
            pq_status st = pq_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)(d - i2), (int)nb,
                                    -1.0f, s->Et, (int)T, U + i1 * d + i2, (int)d, 1.0f, s->Wt + i2, (int)d);
            if (st) return st;
        }
    }

    /* write out in the original column order, with the metrics */
    for (int64_t r = 0; r < nr; r++) {
        const int64_t row = r0 + r;
        const float *w = J->W + row * d;
        int8_t *dst = J->four_bit ? s->qrow : (int8_t *)J->out->codes + row * J->row_bytes;
        for (int64_t i = 0; i < d; i++) dst[perm[i]] = s->q[i * T + r];
        if (J->four_bit) J->ops->pack_i4(s->qrow, d, (uint8_t *)J->out->codes + row * J->row_bytes);
        for (int64_t g = 0; g < G; g++) {
            J->out->scale[row * G + g] = s->scale[g * T + r];
            if (!J->sym) J->out->zero_point[row * G + g] = s->zp[g * T + r];
        }
        if (J->metrics) {
            double as[8] = {0}, ae[8] = {0}, am = 0.0;
            for (int64_t g = 0; g < G; g++) { /* per channel: G = 1, gs = d */
                const int64_t k = g * T + r, c1 = (g + 1) * gs < d ? (g + 1) * gs : d;
                const float sc = s->scale[k];
                const int32_t zp = s->zp[k];
                for (int64_t c = g * gs; c < c1; c++) {
                    const double wv = w[c];
                    const double df = wv - (double)((float)((int32_t)dst[c] - zp) * sc);
                    as[c % 8] += wv * wv;
                    ae[c % 8] += df * df;
                    am = fabs(df) > am ? fabs(df) : am;
                }
            }
            J->out->row_sum_sq[row] = lanes_sum(as);
            J->out->row_err_sq[row] = lanes_sum(ae);
            J->out->row_max_err[row] = (float)am;
        }
    }
    return PQ_OK;
}

pq_status pq_gptq_quantize_rows(const pq_ops *ops, const pq_gptq_factor *f, const float *W, int64_t n_rows,
                                int64_t d, const pq_qspec *spec, int n_threads, pq_rtn_rows *out)
{
    if (spec->gran == PQ_GRAN_TENSOR)
        return pq_err(PQ_ERR_CONFIG,
                      "Linear '%s': GPTQ needs per-channel or group scales, not per-tensor granularity", f->name);
    if (d != f->d)
        return pq_err(PQ_ERR_CONFIG, "Linear '%s': weight width %lld, Hessian width %lld", f->name,
                      (long long)d, (long long)f->d);
    if (spec->bits != 4 && spec->bits != 8)
        return pq_err(PQ_ERR_CONFIG, "Linear '%s': %d-bit codes are not supported", f->name, spec->bits);
    if (spec->gran == PQ_GRAN_GROUP && spec->group_size < 1)
        return pq_err(PQ_ERR_CONFIG, "Linear '%s': group size %d", f->name, spec->group_size);
    out->n_nonfinite = 0;
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t c = 0; c < d; c++)
            if (!isfinite(W[r * d + c]))
                return pq_err(PQ_ERR_QUANTIZATION, "Linear '%s': row %lld (column %lld) holds %s", f->name,
                              (long long)r, (long long)c, isnan(W[r * d + c]) ? "NaN" : "Inf");
    if (n_rows <= 0) return PQ_OK;
    pq_status st = pq_blas_load();
    if (st) return st;

    job J = {.f = f, .W = W, .n_rows = n_rows, .d = d, .n_groups = pq_qspec_groups(spec, d),
             .gs = spec->gran == PQ_GRAN_GROUP ? spec->group_size : d, .sym = spec->symmetric,
             .group = spec->gran == PQ_GRAN_GROUP, .four_bit = spec->bits == 4,
             .metrics = out->row_sum_sq && out->row_err_sq && out->row_max_err,
             .row_bytes = pq_qspec_row_bytes(spec, d), .out = out, .ops = ops};
    pq_qspec_range(spec, &J.qmin, &J.qmax);

    const int64_t n_tiles = (n_rows + PQ_GPTQ_TILE - 1) / PQ_GPTQ_TILE;
    const int nt = pq_loop_threads(n_threads, n_tiles);
    /* several solver threads: one BLAS thread each */
    const int nt_blas = nt > 1 ? pq_blas_get_threads() : 1;
    if (nt_blas != 1) pq_blas_set_threads(1);
    int n_fail = 0;
    pq_status first = PQ_OK;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : n_fail)
    {
        scratch s;
        bool ok = scratch_alloc(&s, &J);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tiles; t++) {
            if (!ok) {
                n_fail++;
                continue;
            }
            int64_t r0 = t * PQ_GPTQ_TILE;
            pq_status e = run_tile(&J, &s, r0, n_rows - r0 < PQ_GPTQ_TILE ? n_rows - r0 : PQ_GPTQ_TILE);
            if (e) {
                n_fail++;
#pragma omp critical(pq_gptq_first)
                if (!first) first = e;
            }
        }
        scratch_free(&s);
    }
    if (nt_blas != 1) pq_blas_set_threads(nt_blas);
    if (n_fail) return first ? first : pq_err(PQ_ERR_RESOURCE, "Linear '%s': out of memory in the GPTQ solve", f->name);
    return PQ_OK;
}
