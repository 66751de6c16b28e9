/* SPDX-License-Identifier: Apache-2.0 */
/* test_qfwd.c - the quantized ESM-2 forward against independent expectations:
 * weight-only int8/int4 against the fp32 engine on the dequantized weights;
 * dynamic and static W8A8 Linears against a double-precision reference that
 * quantizes activations as FORMAT.md / pq_gemm.h state; fusion on/off and
 * q/k/v stacked into one GEMM bit-identical to three; 1 vs 2 threads
 * bit-identical; weight bytes; bad inputs. The fixture is a
 * small random ESM-2 written to HDF5 here, with codes and (for static W8A8)
 * activation scales calibrated in this file. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels/kernels_impl.h"
#include "model/esm2_model.h"
#include "pipeline/config.h"
#include "format/h5model.h"
#include "model/tokenizer.h"

enum { L = 2, D = 64, H = 4, F = 256, V = 33 };
static const pq_esm2_role k_lin[6] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2};

static char g_dir[256];
static char p_i8[300], p_i4[300], p_st[300], p_st4[300], p_sta[300];
static pq_ops g_cpu; /* the best context this CPU runs, for Linears run alone */

/* the codes each file holds, kept for the double reference: [layer][role] */
typedef struct qcopy {
    int8_t *codes;
    float *scale;
    float *bias;
    int64_t rows, cols;
    float act_scale;
    int32_t act_zp;
} qcopy;
static qcopy g_q8[L][PQ__ESM2_ROLE_COUNT];     /* per-channel int8 (all 8-bit files share codes) */
static float g_amin[L][PQ__ESM2_ROLE_COUNT], g_amax[L][PQ__ESM2_ROLE_COUNT];

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int64_t role_rows(pq_esm2_role r) { return r == PQ_ESM2_FC1 ? F : D; }
static int64_t role_cols(pq_esm2_role r) { return r == PQ_ESM2_FC2 ? F : D; }

typedef struct fweights {
    float *t[L + 1][PQ__ESM2_ROLE_COUNT]; /* row L: globals */
} fweights;
static fweights g_w;

static int64_t elems(pq_esm2_role r)
{
    switch (r) {
    case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: case PQ_ESM2_OUT: case PQ_ESM2_FC1: case PQ_ESM2_FC2:
        return role_rows(r) * role_cols(r);
    case PQ_ESM2_FC1_BIAS: return F;
    case PQ_ESM2_EMBED: return V * D;
    case PQ_ESM2_LM_DENSE_W: return D * D;
    case PQ_ESM2_LM_BIAS: return V;
    default: return D;
    }
}

static void make_weights(void)
{
    for (int l = 0; l < L; l++)
        for (int r = PQ_ESM2_Q; r <= PQ_ESM2_LN_FFN_B; r++) {
            int64_t n = elems((pq_esm2_role)r);
            float *p = malloc((size_t)n * sizeof(float));
            bool ln_w = (r == PQ_ESM2_LN_ATTN_W || r == PQ_ESM2_LN_FFN_W);
            float amp = r <= PQ_ESM2_FC2 ? 1.7f / sqrtf((float)role_cols((pq_esm2_role)r)) : 0.05f;
            for (int64_t i = 0; i < n; i++) p[i] = (ln_w ? 1.0f : 0.0f) + amp * frand();
            /* one outlier input column per Linear, as real models have */
            if (r <= PQ_ESM2_FC2)
                for (int64_t o = 0; o < role_rows((pq_esm2_role)r); o++) p[o * role_cols((pq_esm2_role)r) + 3] *= 6.0f;
            g_w.t[l][r] = p;
        }
    static const pq_esm2_role gr[] = {PQ_ESM2_EMBED, PQ_ESM2_LN_FINAL_W, PQ_ESM2_LN_FINAL_B, PQ_ESM2_LM_DENSE_W,
                                      PQ_ESM2_LM_DENSE_B, PQ_ESM2_LM_LN_W, PQ_ESM2_LM_LN_B, PQ_ESM2_LM_BIAS};
    for (size_t i = 0; i < sizeof gr / sizeof gr[0]; i++) {
        int64_t n = elems(gr[i]);
        float *p = malloc((size_t)n * sizeof(float));
        bool ln_w = (gr[i] == PQ_ESM2_LN_FINAL_W || gr[i] == PQ_ESM2_LM_LN_W);
        float amp = gr[i] == PQ_ESM2_EMBED ? 1.0f : gr[i] == PQ_ESM2_LM_DENSE_W ? 0.2f : 0.05f;
        for (int64_t j = 0; j < n; j++) p[j] = (ln_w ? 1.0f : 0.0f) + amp * frand();
        g_w.t[L][gr[i]] = p;
    }
}

/* Symmetric int8 per channel or int4 per group of 32, quantized here. */
static void quantize(const float *w, int64_t rows, int64_t cols, int bits, pq_qtensor *qt)
{
    pq_qspec spec = {.bits = bits, .gran = bits == 8 ? PQ_GRAN_CHANNEL : PQ_GRAN_GROUP,
                     .group_size = bits == 8 ? 0 : 32, .symmetric = true};
    assert_int_equal(pq_qtensor_alloc(qt, &spec, rows, cols), PQ_OK);
    int64_t gs = bits == 8 ? cols : 32, ng = (cols + gs - 1) / gs;
    float qmax = bits == 8 ? 127.0f : 7.0f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            float amax = 0.0f;
            for (int64_t c = g * gs; c < (g + 1) * gs && c < cols; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
            float s = amax / qmax;
            if (s == 0.0f) s = 1.0f;
            qt->scale[r * ng + g] = s;
            for (int64_t c = g * gs; c < (g + 1) * gs && c < cols; c++) {
                int q = (int)nearbyintf(w[r * cols + c] / s);
                q = q < -(int)qmax ? -(int)qmax : q > (int)qmax ? (int)qmax : q;
                if (bits == 8) {
                    ((int8_t *)qt->codes)[r * cols + c] = (int8_t)q;
                } else {
                    uint8_t *b = (uint8_t *)qt->codes + r * qt->code_row_bytes + c / 2;
                    if (c % 2 == 0) *b = (uint8_t)((*b & 0xF0) | (q + 8));
                    else *b = (uint8_t)((*b & 0x0F) | (q + 8) << 4);
                }
            }
        }
}

/* act: 0 none, 1 static symmetric, 2 static asymmetric (from g_amin/g_amax) */
static void write_model(const char *path, int bits, int act)
{
    pq_h5_meta meta = {.architecture = "esm2_custom", .model_name = "qfwd_test", .source_sha256 = "0",
                       .created_by = "test_qfwd", .config_json = "{}", .num_ranks = 1};
    meta.cfg = (pq_esm2_config){.num_layers = L, .embed_dim = D, .attention_heads = H, .head_dim = D / H,
                                .ffn_dim = F, .vocab_size = V, .layer_norm_eps = 1e-5f, .token_dropout = true};
    pq_h5w *w = NULL;
    assert_int_equal(pq_h5w_create(path, &meta, &w), PQ_OK);
    char name[256];
    for (int l = 0; l <= L; l++)
        for (int r = 1; r < PQ__ESM2_ROLE_COUNT; r++) {
            float *t = g_w.t[l][r];
            if (!t) continue;
            pq_esm2_name((pq_esm2_role)r, l == L ? -1 : l, name, sizeof name);
            bool lin = l < L && r <= PQ_ESM2_FC2;
            if (!lin) {
                int64_t shape[2] = {elems((pq_esm2_role)r) / D, D};
                int nd = 2;
                if (r == PQ_ESM2_FC1_BIAS || r == PQ_ESM2_LM_BIAS || (r != PQ_ESM2_EMBED && r != PQ_ESM2_LM_DENSE_W)) {
                    nd = 1;
                    shape[0] = elems((pq_esm2_role)r);
                }
                assert_int_equal(pq_h5w_put_float(w, name, nd, shape, t, false), PQ_OK);
                continue;
            }
            pq_qtensor qt;
            memset(&qt, 0, sizeof qt);
            quantize(t, role_rows((pq_esm2_role)r), role_cols((pq_esm2_role)r), bits, &qt);
            assert_int_equal(pq_h5w_put_qtensor(w, name, &qt, "dynamic", "rtn"), PQ_OK);
            if (act) {
                float mn = g_amin[l][r], mx = g_amax[l][r], s;
                int32_t zp = 0;
                if (act == 1) {
                    s = fmaxf(-mn, mx) / 127.0f;
                } else {
                    s = (mx - mn) / 255.0f;
                    zp = -128 - (int32_t)nearbyintf(mn / s);
                }
                g_q8[l][r].act_scale = s;
                g_q8[l][r].act_zp = zp;
                assert_int_equal(pq_h5w_put_act_qparams(w, name, s, act == 2 ? &zp : NULL), PQ_OK);
            }
            if (bits == 8 && !g_q8[l][r].codes) {
                qcopy *c = &g_q8[l][r];
                c->rows = qt.rows;
                c->cols = qt.cols;
                c->codes = malloc((size_t)(qt.rows * qt.cols));
                c->scale = malloc((size_t)qt.rows * sizeof(float));
                memcpy(c->codes, qt.codes, (size_t)(qt.rows * qt.cols));
                memcpy(c->scale, qt.scale, (size_t)qt.rows * sizeof(float));
            }
            pq_qtensor_free(&qt);
        }
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
}

/* two sequences, one with a <mask>, packed */
static int32_t g_ids[64];
static int64_t g_off[3];
static pq_esm2_batch g_batch;

static void make_batch(void)
{
    int64_t n = 0;
    g_off[0] = 0;
    int lens[2] = {23, 17};
    for (int s = 0; s < 2; s++) {
        g_ids[n++] = PQ_TOK_CLS;
        for (int i = 0; i < lens[s]; i++) g_ids[n++] = (s == 1 && i == 5) ? PQ_TOK_MASK : 4 + (i * 7 + s * 3) % 20;
        g_ids[n++] = PQ_TOK_EOS;
        g_off[s + 1] = n;
    }
    g_batch = (pq_esm2_batch){.n_seqs = 2, .offsets = g_off, .ids = g_ids};
}

static pq_esm2_model *open_model(const char *path, pq_esm2_qmode mode, bool fusion, int threads)
{
    pq_esm2_model_opts o = {.n_threads = threads, .quantized_mode = mode, .no_fusion = !fusion};
    pq_esm2_model *m = NULL;
    pq_status st = pq_esm2_model_open(path, &o, &m);
    if (st != PQ_OK) fprintf(stderr, "open %s: %s\n", path, pq_err_detail());
    assert_int_equal(st, PQ_OK);
    return m;
}

static float *logits_of(pq_esm2_model *m)
{
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    out.want_logits = true;
    assert_int_equal(pq_esm2_forward(m, &g_batch, NULL, &out), PQ_OK);
    float *r = out.logits;
    out.logits = NULL;
    pq_esm2_outputs_clear(&out);
    return r;
}

static float *run_logits(const char *path, pq_esm2_qmode mode, bool fusion, int threads)
{
    pq_esm2_model *m = open_model(path, mode, fusion, threads);
    float *r = logits_of(m);
    pq_esm2_model_free(m);
    return r;
}

static double max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* calibration observer: min/max of every Linear input */
static void calib_obs(void *u, const pq_ops *ops, int layer, pq_esm2_role site, const float *x, int64_t N,
                      int64_t d)
{
    (void)u, (void)ops;
    if (layer < 0) return;
    for (int64_t i = 0; i < N * d; i++) {
        g_amin[layer][site] = fminf(g_amin[layer][site], x[i]);
        g_amax[layer][site] = fmaxf(g_amax[layer][site], x[i]);
    }
}

static int setup(void **state)
{
    (void)state;
    if (pq_ops_select("cpu", &g_cpu) != PQ_KOK) return -1;
    snprintf(g_dir, sizeof g_dir, "/tmp/pq_qfwd_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
    if (system(cmd) != 0) return -1;
    snprintf(p_i8, sizeof p_i8, "%s/i8.h5", g_dir);
    snprintf(p_i4, sizeof p_i4, "%s/i4.h5", g_dir);
    snprintf(p_st, sizeof p_st, "%s/static.h5", g_dir);
    snprintf(p_sta, sizeof p_sta, "%s/static_asym.h5", g_dir);
    snprintf(p_st4, sizeof p_st4, "%s/static_i4.h5", g_dir);
    make_weights();
    make_batch();
    write_model(p_i8, 8, 0);
    write_model(p_i4, 4, 0);
    /* calibrate the static scales on the dequantized int8 model, same batch */
    for (int l = 0; l < L; l++)
        for (int r = 0; r < PQ__ESM2_ROLE_COUNT; r++) g_amin[l][r] = INFINITY, g_amax[l][r] = -INFINITY;
    pq_esm2_model *m = open_model(p_i8, PQ_ESM2_QMODE_DEQUANT, true, 2);
    pq_esm2_model_set_observer(m, calib_obs, NULL);
    free(logits_of(m));
    pq_esm2_model_free(m);
    write_model(p_st, 8, 1);
    write_model(p_st4, 4, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int64_t n_logits(void) { return g_off[2] * V; }

/* weight-only kernels do the fp32 engine's math on the same dequantized
 * weights, in another summation order: relative 1e-5 of the logit range */
static void test_weight_only_int8_matches_dequant(void **state)
{
    (void)state;
    float *a = run_logits(p_i8, PQ_ESM2_QMODE_DEQUANT, true, 2);
    float *b = run_logits(p_i8, PQ_ESM2_QMODE_WEIGHT_ONLY, true, 2);
    double d = max_diff(a, b, n_logits()), s = max_abs(a, n_logits());
    printf("  weight-only int8 vs dequant: max diff %.3g of max |logit| %.3g\n", d, s);
    assert_true(d <= 1e-5 * s);
    free(a);
    free(b);
}

static void test_int4_matches_dequant(void **state)
{
    (void)state;
    float *a = run_logits(p_i4, PQ_ESM2_QMODE_DEQUANT, true, 2);
    pq_esm2_model *m = open_model(p_i4, PQ_ESM2_QMODE_WEIGHT_ONLY, true, 2);
    assert_int_equal(pq_qlinear_get_kind(pq_esm2_model_qlinear(m, PQ_ESM2_FC1, 1)), PQ_QLINEAR_WEIGHT_ONLY);
    assert_int_equal(pq_qlinear_bits(pq_esm2_model_qlinear(m, PQ_ESM2_FC1, 1)), 4);
    float *b = logits_of(m);
    double d = max_diff(a, b, n_logits()), s = max_abs(a, n_logits());
    printf("  int4 weight-only vs dequant: max diff %.3g of max |logit| %.3g\n", d, s);
    assert_true(d <= 1e-5 * s);
    free(a);
    free(b);
    pq_esm2_model_free(m);
}

/* Cosine of two logit arrays of n floats, in double. */
static double cosine(const float *a, const float *b, int64_t n)
{
    double dot = 0, a2 = 0, b2 = 0;
    for (int64_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        a2 += (double)a[i] * a[i];
        b2 += (double)b[i] * b[i];
    }
    return dot / sqrt(a2 * b2);
}

/* The contract's per-token codes of row xr (fp32 reciprocal and product,
 * round half even, [-127, 127]) into aq; returns the row's scale. */
static float quant_dynamic(const float *xr, int64_t d, int8_t *aq)
{
    float amax = 0.0f;
    for (int64_t k = 0; k < d; k++) amax = fmaxf(amax, fabsf(xr[k]));
    float s = fmaxf(amax, 1e-5f) / 127.0f, inv = 1.0f / s;
    for (int64_t k = 0; k < d; k++) {
        float v = nearbyintf(xr[k] * inv);
        aq[k] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
    }
    return s;
}

/* The observed Linear run on its input x [N, in] with the model's own
 * context, as its forward runs it: an owned [N, out] output; *bias is the
 * Linear's bias. */
static float *linear_out(const pq_ops *ops, const pq_qlinear *ql, int layer, pq_esm2_role site, const float *x,
                         int64_t N, const float **bias)
{
    *bias = g_w.t[layer][site + (PQ_ESM2_Q_BIAS - PQ_ESM2_Q)];
    float *y = malloc((size_t)(N * pq_qlinear_out_dim(ql)) * sizeof(float));
    assert_int_equal(pq_qlinear_forward(ops, ql, x, N, *bias, PQ_QLINEAR_POST_NONE, NULL, y, 1), PQ_OK);
    return y;
}

/* Reference W8A8 Linear in double: activation codes exactly as the contract
 * (fp32 reciprocal and product, round half even, clamp), integer dot products,
 * then scales and bias. */
typedef struct lin_check {
    pq_esm2_model *m;
    bool is_static;
    double worst;   /* max |y - ref| / max |ref| over the Linears */
    int n_checked;
} lin_check;

static void check_obs(void *u, const pq_ops *ops, int layer, pq_esm2_role site, const float *x, int64_t N,
                      int64_t d)
{
    lin_check *c = u;
    if (layer < 0) return;
    const qcopy *q = &g_q8[layer][site];
    const pq_qlinear *ql = pq_esm2_model_qlinear(c->m, site, layer);
    assert_non_null(ql);
    assert_int_equal(pq_qlinear_get_kind(ql), c->is_static ? PQ_QLINEAR_W8A8_STATIC : PQ_QLINEAR_W8A8_DYNAMIC);
    int64_t n = q->rows;
    const float *bias = NULL;
    float *y = linear_out(ops, ql, layer, site, x, N, &bias);
    int8_t *aq = malloc((size_t)d);
    double maxref = 0, maxerr = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *xr = x + i * d;
        double as;
        int32_t zp = 0;
        if (c->is_static) {
            float inv = 1.0f / q->act_scale;
            zp = q->act_zp;
            int32_t lo = zp ? -128 : -127;
            for (int64_t k = 0; k < d; k++) {
                float v = (float)zp + nearbyintf(xr[k] * inv);
                int32_t iv = (int32_t)v;
                aq[k] = (int8_t)(iv < lo ? lo : iv > 127 ? 127 : iv);
            }
            as = q->act_scale;
        } else {
            as = quant_dynamic(xr, d, aq);
        }
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t k = 0; k < d; k++) acc += (double)(aq[k] - zp) * q->codes[j * d + k];
            double ref = acc * as * q->scale[j] + bias[j];
            maxref = fmax(maxref, fabs(ref));
            maxerr = fmax(maxerr, fabs(ref - y[i * n + j]));
        }
    }
    c->worst = fmax(c->worst, maxerr / maxref);
    c->n_checked++;
    free(y);
    free(aq);
}

static void check_w8a8(const char *path, bool is_static)
{
    lin_check c = {.is_static = is_static};
    c.m = open_model(path, PQ_ESM2_QMODE_AUTO, true, 2);
    pq_esm2_model_set_observer(c.m, check_obs, &c);
    float *lq = logits_of(c.m);
    pq_esm2_model_free(c.m);
    printf("  %s W8A8: %d Linears, worst |y - ref| / max|ref| %.3g\n", is_static ? "static" : "dynamic",
           c.n_checked, c.worst);
    assert_int_equal(c.n_checked, 6 * L);
    /* fp32 epilogue (two products and a sum) vs double: a few ulp */
    assert_true(c.worst < 2e-6);
    /* and the whole forward stays close to the dequantized fp32 engine */
    float *ld = run_logits(path, PQ_ESM2_QMODE_DEQUANT, true, 2);
    double cos = cosine(lq, ld, n_logits());
    printf("  %s W8A8 logits cosine vs dequant %.6f\n", is_static ? "static" : "dynamic", cos);
    assert_true(cos > 0.999);
    free(lq);
    free(ld);
}

static void test_w8a8_dynamic_vs_double_reference(void **state)
{
    (void)state;
    check_w8a8(p_i8, false);
}

static void test_w8a8_static_vs_double_reference(void **state)
{
    (void)state;
    check_w8a8(p_st, true);
    /* asymmetric activation zero points: calibrated range, zp != 0 */
    write_model(p_sta, 8, 2);
    bool any_zp = false;
    for (int l = 0; l < L; l++)
        for (int r = 0; r < 6; r++) any_zp |= g_q8[l][k_lin[r]].act_zp != 0;
    assert_true(any_zp);
    check_w8a8(p_sta, true);
}

/* W4A8 (the int4 file's scheme "dynamic" under auto): each Linear against
 * the contract in double (per-token codes as above, exact integer sums per
 * group of 32, then the group scales, the token scale and the bias), and the
 * logits close to the dequantized fp32 engine's. */
static void w4a8_obs(void *u, const pq_ops *ops, int layer, pq_esm2_role site, const float *x, int64_t N,
                     int64_t d)
{
    lin_check *c = u;
    if (layer < 0) return;
    const pq_qlinear *ql = pq_esm2_model_qlinear(c->m, site, layer);
    assert_int_equal(pq_qlinear_get_kind(ql), PQ_QLINEAR_W8A8_DYNAMIC);
    assert_int_equal(pq_qlinear_bits(ql), 4);
    int64_t n = pq_qlinear_out_dim(ql), ng = d / 32;
    pq_qtensor qt;
    memset(&qt, 0, sizeof qt);
    quantize(g_w.t[layer][site], n, d, 4, &qt);
    const float *bias = NULL;
    float *y = linear_out(ops, ql, layer, site, x, N, &bias);
    int8_t *aq = malloc((size_t)d);
    double maxref = 0, maxerr = 0;
    for (int64_t i = 0; i < N; i++) {
        float s = quant_dynamic(x + i * d, d, aq);
        for (int64_t j = 0; j < n; j++) {
            double ref = bias[j];
            for (int64_t g = 0; g < ng; g++) {
                double acc = 0;
                for (int64_t k = g * 32; k < (g + 1) * 32; k++) {
                    uint8_t b = ((const uint8_t *)qt.codes)[j * qt.code_row_bytes + k / 2];
                    acc += (double)aq[k] * (double)(((k & 1) ? b >> 4 : b & 15) - 8);
                }
                ref += acc * qt.scale[j * ng + g] * s;
            }
            maxref = fmax(maxref, fabs(ref));
            maxerr = fmax(maxerr, fabs(ref - y[i * n + j]));
        }
    }
    c->worst = fmax(c->worst, maxerr / maxref);
    c->n_checked++;
    pq_qtensor_free(&qt);
    free(y);
    free(aq);
}

static void test_w4a8_vs_double_reference(void **state)
{
    (void)state;
    lin_check c = {0};
    c.m = open_model(p_i4, PQ_ESM2_QMODE_AUTO, true, 2);
    pq_esm2_model_set_observer(c.m, w4a8_obs, &c);
    float *lq = logits_of(c.m);
    pq_esm2_model_free(c.m);
    printf("  W4A8: %d Linears, worst |y - ref| / max|ref| %.3g\n", c.n_checked, c.worst);
    assert_int_equal(c.n_checked, 6 * L);
    /* per group a conversion, a product and a sum in fp32, then two more */
    assert_true(c.worst < 4e-6);
    float *ld = run_logits(p_i4, PQ_ESM2_QMODE_DEQUANT, true, 2);
    double cos = cosine(lq, ld, n_logits());
    printf("  W4A8 logits cosine vs dequant %.6f\n", cos);
    assert_true(cos > 0.999);
    free(lq);
    free(ld);
}

/* --mode dynamic: the static file's Linears run with per-token activations,
 * bit for bit the logits of the dynamic file with the same weights; the int4
 * file as under auto (its scheme is dynamic). */
static void test_mode_dynamic(void **state)
{
    (void)state;
    pq_esm2_model *m = open_model(p_st, PQ_ESM2_QMODE_DYNAMIC, true, 2);
    assert_int_equal(pq_qlinear_get_kind(pq_esm2_model_qlinear(m, PQ_ESM2_FC1, 0)), PQ_QLINEAR_W8A8_DYNAMIC);
    float *a = logits_of(m);
    pq_esm2_model_free(m);
    float *b = run_logits(p_i8, PQ_ESM2_QMODE_AUTO, true, 2);
    float *c = run_logits(p_st, PQ_ESM2_QMODE_AUTO, true, 2);
    assert_memory_equal(a, b, (size_t)n_logits() * sizeof(float));
    assert_memory_not_equal(a, c, (size_t)n_logits() * sizeof(float));
    float *d = run_logits(p_i4, PQ_ESM2_QMODE_DYNAMIC, true, 1);
    float *e = run_logits(p_i4, PQ_ESM2_QMODE_AUTO, true, 2);
    assert_memory_equal(d, e, (size_t)n_logits() * sizeof(float));
    free(a), free(b), free(c), free(d), free(e);
}

/* static W4A8: int4 weights with a stored act_scale run with the static
 * int8 input (kind static, 4 bits), 1 and 2 threads bit for bit, close to
 * the dequantized fp32 engine. */
static void test_w4a8_static(void **state)
{
    (void)state;
    pq_esm2_model *m = open_model(p_st4, PQ_ESM2_QMODE_AUTO, true, 2);
    const pq_qlinear *ql = pq_esm2_model_qlinear(m, PQ_ESM2_FC2, 1);
    assert_int_equal(pq_qlinear_get_kind(ql), PQ_QLINEAR_W8A8_STATIC);
    assert_int_equal(pq_qlinear_bits(ql), 4);
    float *a = logits_of(m);
    pq_esm2_model_free(m);
    float *b = run_logits(p_st4, PQ_ESM2_QMODE_AUTO, true, 1);
    float *c = run_logits(p_st4, PQ_ESM2_QMODE_DEQUANT, true, 2);
    assert_memory_equal(a, b, (size_t)n_logits() * sizeof(float));
    double cos = cosine(a, c, n_logits());
    printf("  static W4A8 logits cosine vs dequant %.6f\n", cos);
    assert_true(cos > 0.999);
    free(a), free(b), free(c);
}

/* fusion: the fused epilogue does the same fp32 operations in the same order
 * as the unfused path, so the logits are bit-identical */
static void test_fusion_identical(void **state)
{
    (void)state;
    const char *paths[] = {p_i8, p_i4, p_st};
    for (int i = 0; i < 3; i++)
        for (int mode = PQ_ESM2_QMODE_AUTO; mode <= PQ_ESM2_QMODE_WEIGHT_ONLY; mode += 2) {
            float *a = run_logits(paths[i], (pq_esm2_qmode)mode, true, 2);
            float *b = run_logits(paths[i], (pq_esm2_qmode)mode, false, 2);
            assert_memory_equal(a, b, (size_t)n_logits() * sizeof(float));
            free(a);
            free(b);
        }
}

/* q/k/v stacked into one GEMM at load (fusion on): the views stand for
 * them (no bytes of their own); the unfused load keeps three packs. The
 * logits of the stacked and three-GEMM forwards are bit-identical, and so
 * are those after pq_esm2_model_set_fusion(false) on the stacked model
 * (three Linears through the views). */
static void test_qkv_stacked_identical(void **state)
{
    (void)state;
    const char *paths[] = {p_i8, p_i4, p_st, p_sta};
    for (int i = 0; i < 4; i++)
        for (int mode = PQ_ESM2_QMODE_AUTO; mode <= PQ_ESM2_QMODE_WEIGHT_ONLY; mode += 2) {
            pq_esm2_model *fu = open_model(paths[i], (pq_esm2_qmode)mode, true, 2);
            pq_esm2_model *un = open_model(paths[i], (pq_esm2_qmode)mode, false, 2);
            for (int l = 0; l < L; l++)
                for (int r = PQ_ESM2_Q; r <= PQ_ESM2_V; r++) {
                    assert_int_equal(pq_qlinear_weight_bytes(pq_esm2_model_qlinear(fu, (pq_esm2_role)r, l)), 0);
                    assert_true(pq_qlinear_weight_bytes(pq_esm2_model_qlinear(un, (pq_esm2_role)r, l)) > 0);
                }
            int64_t tf, lf, tu, lu;
            pq_esm2_model_weight_bytes(fu, &tf, &lf);
            pq_esm2_model_weight_bytes(un, &tu, &lu);
            assert_int_equal(lf, lu);
            float *a = logits_of(fu);
            float *b = logits_of(un);
            assert_memory_equal(a, b, (size_t)n_logits() * sizeof(float));
            pq_esm2_model_set_fusion(fu, false);
            pq_esm2_model_set_fusion(un, false);
            float *c = logits_of(fu);
            float *d = logits_of(un);
            assert_memory_equal(a, c, (size_t)n_logits() * sizeof(float));
            assert_memory_equal(a, d, (size_t)n_logits() * sizeof(float));
            free(a); free(b); free(c); free(d);
            pq_esm2_model_free(fu);
            pq_esm2_model_free(un);
        }
}

/* pq_qlinear_from_qtensors_stacked on parts with per-tensor and per-channel
 * scales: every part's columns equal that part run as its own Linear, bit for
 * bit, for dynamic and static W8A8 and weight-only; views of the stack too. */
static void test_stacked_linear_parts(void **state)
{
    (void)state;
    enum { M = 9, K = D };
    const int64_t rows[3] = {D, 2 * D, D}, n_all = 4 * D;
    pq_qtensor qt[3];
    for (int i = 0; i < 3; i++) {
        memset(&qt[i], 0, sizeof qt[i]);
        float *w = malloc((size_t)(rows[i] * K) * sizeof(float));
        for (int64_t j = 0; j < rows[i] * K; j++) w[j] = frand();
        quantize(w, rows[i], K, 8, &qt[i]);
        free(w);
    }
    /* part 1 per-tensor: one scale */
    qt[1].spec.gran = PQ_GRAN_TENSOR;
    qt[1].scale[0] = 0.0123f;
    qt[1].n_scales = 1;
    float x[M * K], bias[4 * D], y[M * 4 * D], yp[M * 2 * D], yv[M * 2 * D];
    for (int j = 0; j < M * K; j++) x[j] = 3.0f * frand();
    for (int j = 0; j < 4 * D; j++) bias[j] = frand();
    const pq_qtensor *parts[3] = {&qt[0], &qt[1], &qt[2]};
    const pq_qlinear_kind kinds[3] = {PQ_QLINEAR_W8A8_DYNAMIC, PQ_QLINEAR_W8A8_STATIC, PQ_QLINEAR_WEIGHT_ONLY};
    for (int kk = 0; kk < 3; kk++) {
        pq_qlinear *st = NULL;
        assert_int_equal(pq_qlinear_from_qtensors_stacked("stack", parts, 3, kinds[kk], 0.02f, 3, 0, &st), PQ_OK);
        assert_int_equal(pq_qlinear_out_dim(st), n_all);
        assert_int_equal(pq_qlinear_forward(&g_cpu, st, x, M, bias, PQ_QLINEAR_POST_NONE, NULL, y, 2), PQ_OK);
        int64_t r0 = 0;
        for (int i = 0; i < 3; i++) {
            pq_qlinear *one = NULL, *view = NULL;
            assert_int_equal(pq_qlinear_from_qtensor("part", &qt[i], kinds[kk], 0.02f, 3, 0, &one), PQ_OK);
            assert_int_equal(pq_qlinear_view_rows(st, r0, rows[i], &view), PQ_OK);
            assert_int_equal(pq_qlinear_forward(&g_cpu, one, x, M, bias + r0, PQ_QLINEAR_POST_NONE, NULL, yp, 1), PQ_OK);
            assert_int_equal(pq_qlinear_forward(&g_cpu, view, x, M, bias + r0, PQ_QLINEAR_POST_NONE, NULL, yv, 1), PQ_OK);
            for (int m = 0; m < M; m++) {
                assert_memory_equal(y + m * n_all + r0, yp + m * rows[i], (size_t)rows[i] * sizeof(float));
                assert_memory_equal(yv + m * rows[i], yp + m * rows[i], (size_t)rows[i] * sizeof(float));
            }
            pq_qlinear_free(one);
            pq_qlinear_free(view);
            r0 += rows[i];
        }
        pq_qlinear_free(st);
    }
    /* parts that do not stack: different widths */
    pq_qtensor narrow;
    memset(&narrow, 0, sizeof narrow);
    float w[D * 32];
    for (int j = 0; j < D * 32; j++) w[j] = frand();
    quantize(w, D, 32, 8, &narrow);
    const pq_qtensor *bad[2] = {&qt[0], &narrow};
    pq_qlinear *st = NULL;
    pq_err_clear();
    assert_int_equal(pq_qlinear_from_qtensors_stacked("mixed", bad, 2, PQ_QLINEAR_W8A8_DYNAMIC, 0, 0, 0, &st),
                     PQ_ERR_CONFIG);
    assert_null(st);
    assert_non_null(strstr(pq_err_detail(), "mixed"));
    pq_qtensor_free(&narrow);
    for (int i = 0; i < 3; i++) pq_qtensor_free(&qt[i]);
}

/* The forward keeps its scratch in the model: a short batch, then the full
 * one (scratch grows), then the short one again give what fresh models give. */
static void test_scratch_reuse(void **state)
{
    (void)state;
    int64_t off1[2] = {0, g_off[1]};
    pq_esm2_batch one = {.n_seqs = 1, .offsets = off1, .ids = g_ids};
    pq_esm2_model *m = open_model(p_i8, PQ_ESM2_QMODE_AUTO, true, 2);
    pq_esm2_outputs o1, o2, o3;
    memset(&o1, 0, sizeof o1);
    o1.want_logits = true;
    o2 = o3 = o1;
    assert_int_equal(pq_esm2_forward(m, &one, NULL, &o1), PQ_OK);
    assert_int_equal(pq_esm2_forward(m, &g_batch, NULL, &o2), PQ_OK);
    assert_int_equal(pq_esm2_forward(m, &one, NULL, &o3), PQ_OK);
    float *full = run_logits(p_i8, PQ_ESM2_QMODE_AUTO, true, 2);
    assert_memory_equal(o2.logits, full, (size_t)n_logits() * sizeof(float));
    free(full);
    pq_esm2_model *fresh = open_model(p_i8, PQ_ESM2_QMODE_AUTO, true, 2);
    pq_esm2_outputs o4;
    memset(&o4, 0, sizeof o4);
    o4.want_logits = true;
    assert_int_equal(pq_esm2_forward(fresh, &one, NULL, &o4), PQ_OK);
    assert_memory_equal(o1.logits, o4.logits, (size_t)(g_off[1] * V) * sizeof(float));
    assert_memory_equal(o3.logits, o4.logits, (size_t)(g_off[1] * V) * sizeof(float));
    pq_esm2_outputs_clear(&o4);
    pq_esm2_model_free(fresh);
    pq_esm2_outputs_clear(&o1);
    pq_esm2_outputs_clear(&o2);
    pq_esm2_outputs_clear(&o3);
    pq_esm2_model_free(m);
}

static void test_threads_identical(void **state)
{
    (void)state;
    const char *paths[] = {p_i8, p_i4, p_st};
    for (int i = 0; i < 3; i++) {
        float *a = run_logits(paths[i], PQ_ESM2_QMODE_AUTO, true, 1);
        float *b = run_logits(paths[i], PQ_ESM2_QMODE_AUTO, true, 2);
        assert_memory_equal(a, b, (size_t)n_logits() * sizeof(float));
        pq_esm2_model_opts o = {.n_threads = 2, .no_threading = true};
        pq_esm2_model *m = NULL;
        assert_int_equal(pq_esm2_model_open(paths[i], &o, &m), PQ_OK);
        float *c = logits_of(m);
        assert_memory_equal(a, c, (size_t)n_logits() * sizeof(float));
        pq_esm2_model_free(m);
        /* the unfused path too (three q/k/v GEMMs, element-wise passes) */
        float *d = run_logits(paths[i], PQ_ESM2_QMODE_AUTO, false, 1);
        float *e = run_logits(paths[i], PQ_ESM2_QMODE_AUTO, false, 2);
        assert_memory_equal(d, e, (size_t)n_logits() * sizeof(float));
        free(a);
        free(b);
        free(c);
        free(d);
        free(e);
    }
}

static void test_weight_bytes(void **state)
{
    (void)state;
    pq_esm2_model *f = open_model(p_i8, PQ_ESM2_QMODE_DEQUANT, true, 1);
    pq_esm2_model *q8 = open_model(p_i8, PQ_ESM2_QMODE_AUTO, true, 1);
    pq_esm2_model *q4 = open_model(p_i4, PQ_ESM2_QMODE_AUTO, true, 1);
    int64_t tf, lf, t8, l8, t4, l4;
    pq_esm2_model_weight_bytes(f, &tf, &lf);
    pq_esm2_model_weight_bytes(q8, &t8, &l8);
    pq_esm2_model_weight_bytes(q4, &t4, &l4);
    /* fp32 Linears: 4 bytes a weight, hand-counted for this shape */
    int64_t n_lin = (int64_t)L * (4 * D * D + 2 * D * F);
    assert_int_equal(lf, 4 * (n_lin + D * D));
    /* int8: a byte a code, per-row scale and row sum; int4 (W4A8) half a
     * byte, a scale and a code sum per 32 columns */
    int64_t rows = (int64_t)L * (4 * D + F + D);
    assert_int_equal(l8, n_lin + 8 * rows + 4 * D * D);
    int64_t groups = (int64_t)L * (4 * D * (D / 32) + F * (D / 32) + D * (F / 32));
    assert_int_equal(l4, n_lin / 2 + 8 * groups + 4 * D * D);
    assert_true((double)(lf - 4 * D * D) / (double)(l8 - 4 * D * D) >= 3.5);
    pq_esm2_model_free(f);
    pq_esm2_model_free(q8);
    pq_esm2_model_free(q4);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    pq_esm2_model *m = NULL;
    pq_esm2_model_opts o = {0};
    char p[320];
    snprintf(p, sizeof p, "%s/missing.h5", g_dir);
    pq_err_clear();
    assert_int_not_equal(pq_esm2_model_open(p, &o, &m), PQ_OK);
    assert_null(m);
    printf("  missing file: %s\n", pq_err_detail());
    assert_non_null(strstr(pq_err_detail(), "missing.h5"));
    /* int8 activations cannot run 8-bit group weights (refused before the
     * scales are read) */
    pq_qtensor qt;
    memset(&qt, 0, sizeof qt);
    quantize(g_w.t[0][PQ_ESM2_Q], D, D, 8, &qt);
    qt.spec.gran = PQ_GRAN_GROUP;
    qt.spec.group_size = 32;
    pq_qlinear *l = NULL;
    pq_err_clear();
    assert_int_equal(pq_qlinear_from_qtensor("t8g", &qt, PQ_QLINEAR_W8A8_DYNAMIC, 0, 0, 0, &l), PQ_ERR_CONFIG);
    assert_null(l);
    printf("  W8A8 on int8 groups: %s\n", pq_err_detail());
    assert_non_null(strstr(pq_err_detail(), "t8g"));
    qt.spec.gran = PQ_GRAN_CHANNEL;
    qt.spec.group_size = 0;
    pq_qtensor_free(&qt);
    /* static W8A8 without a usable act_scale */
    quantize(g_w.t[0][PQ_ESM2_Q], D, D, 8, &qt);
    pq_err_clear();
    assert_int_not_equal(pq_qlinear_from_qtensor("t8", &qt, PQ_QLINEAR_W8A8_STATIC, 0.0f, 0, 0, &l), PQ_OK);
    assert_null(l);
    pq_qtensor_free(&qt);
}

/* The one selector reaches the GEMM: hardware_target "ref" through the
 * configuration gives the reference GEMM entries, a model opened with a
 * context keeps it and runs its integer GEMMs through it (a counting spy in
 * the i8i8 slot sees them, with the reference's logits bit for bit). */
static _Atomic int g_spy_calls;
static void spy_i8i8(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1)
{
    g_spy_calls++;
    pq_gemm_kernels_ref.i8i8(job, p0, p1);
}

static float *logits_with(const char *path, const pq_ops *ops)
{
    pq_esm2_model_opts o = {.n_threads = 1, .ops = *ops};
    pq_esm2_model *m = NULL;
    assert_int_equal(pq_esm2_model_open(path, &o, &m), PQ_OK);
    assert_string_equal(pq_esm2_model_ops(m)->name, ops->name);
    assert_ptr_equal(pq_esm2_model_ops(m)->gemm.i8i8, ops->gemm.i8i8);
    float *r = logits_of(m);
    pq_esm2_model_free(m);
    return r;
}

static void test_hardware_target_reaches_gemm(void **state)
{
    (void)state;
    pq_config c;
    pq_config_defaults(&c);
    pq_ops ops;
    assert_int_equal(pq_config_set(&c, "hardware_target", "ref"), PQ_OK);
    assert_int_equal(pq_config_apply_hardware(&c, &ops), PQ_OK);
    assert_string_equal(ops.name, "ref");
    assert_string_equal(ops.gemm.name, "ref");
    assert_ptr_equal(ops.gemm.i8i8, pq_gemm_kernels_ref.i8i8);
    assert_ptr_equal(ops.gemm.wonly, pq_gemm_kernels_ref.wonly);
    float *want = logits_with(p_i8, &ops);
    pq_ops spy = ops;
    spy.gemm.i8i8 = spy_i8i8;
    g_spy_calls = 0;
    float *got = logits_with(p_i8, &spy);
    assert_true(g_spy_calls > 0);
    assert_memory_equal(want, got, (size_t)n_logits() * sizeof(float));
    free(want);
    free(got);
    /* no context given: the best this CPU runs */
    pq_esm2_model_opts o = {.n_threads = 1};
    pq_esm2_model *m = NULL;
    assert_int_equal(pq_esm2_model_open(p_i8, &o, &m), PQ_OK);
    assert_string_equal(pq_esm2_model_ops(m)->name, g_cpu.name);
    pq_esm2_model_free(m);
    /* avx512: accepted, with the VNNI GEMM, exactly where the CPU has it */
    assert_int_equal(pq_config_set(&c, "hardware_target", "avx512"), PQ_OK);
    pq_err_clear();
    pq_status st = pq_config_apply_hardware(&c, &ops);
    pq_ops probe;
    bool can = pq_cpu_has_avx512vnni() && pq_ops_select("avx512", &probe) != PQ_KNOTBUILT;
    print_message("hardware_target avx512: %s\n", st ? pq_err_detail() : "accepted");
    if (can) {
        assert_int_equal(st, PQ_OK);
        assert_string_equal(ops.gemm.name, "avx512vnni");
    } else {
        assert_int_equal(st, PQ_ERR_HARDWARE);
        assert_non_null(strstr(pq_err_detail(), "available"));
    }
    pq_config_free(&c);
}

/* PQ_KERNELS is read where the configuration resolves: it narrows "cpu" to
 * one context, an explicit target wins over it, and a value that names no
 * context is one configuration error naming it and listing the choices,
 * whatever the target. */
static void test_pq_kernels_env(void **state)
{
    (void)state;
    pq_ops ops;
    assert_int_equal(setenv("PQ_KERNELS", "ref", 1), 0);
    assert_int_equal(pq_hardware_select("cpu", &ops), PQ_OK);
    assert_string_equal(ops.name, "ref");
    assert_string_equal(ops.gemm.name, "ref");
    if (pq_ops_select("avx2", &ops) == PQ_KOK) {
        assert_int_equal(pq_hardware_select("avx2", &ops), PQ_OK);
        assert_string_equal(ops.name, "avx2");
    }
    const char *targets[] = {"cpu", "ref"};
    assert_int_equal(setenv("PQ_KERNELS", "avx9000", 1), 0);
    for (int i = 0; i < 2; i++) {
        pq_err_clear();
        assert_int_equal(pq_hardware_select(targets[i], &ops), PQ_ERR_CONFIG);
        print_message("PQ_KERNELS=avx9000: %s\n", pq_err_detail());
        assert_non_null(strstr(pq_err_detail(), "PQ_KERNELS 'avx9000'"));
        assert_non_null(strstr(pq_err_detail(), "cpu, ref, avx2, avx512"));
        assert_non_null(strstr(pq_err_detail(), "available here: "));
    }
    assert_int_equal(unsetenv("PQ_KERNELS"), 0);
    pq_err_clear();
    assert_int_equal(pq_hardware_select("sse9", &ops), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "hardware_target 'sse9'"));
    pq_err_clear();
    assert_int_equal(pq_hardware_select("cuda", &ops), PQ_ERR_HARDWARE);
    assert_non_null(strstr(pq_err_detail(), "available"));
    assert_int_equal(pq_hardware_select("cpu", &ops), PQ_OK);
    assert_string_equal(ops.name, g_cpu.name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_only_int8_matches_dequant),
        cmocka_unit_test(test_int4_matches_dequant),
        cmocka_unit_test(test_w4a8_vs_double_reference),
        cmocka_unit_test(test_mode_dynamic),
        cmocka_unit_test(test_w4a8_static),
        cmocka_unit_test(test_w8a8_dynamic_vs_double_reference),
        cmocka_unit_test(test_w8a8_static_vs_double_reference),
        cmocka_unit_test(test_fusion_identical),
        cmocka_unit_test(test_qkv_stacked_identical),
        cmocka_unit_test(test_stacked_linear_parts),
        cmocka_unit_test(test_scratch_reuse),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_weight_bytes),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_hardware_target_reaches_gemm),
        cmocka_unit_test(test_pq_kernels_env),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
