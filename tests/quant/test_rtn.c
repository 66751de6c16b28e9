/* SPDX-License-Identifier: Apache-2.0 */
/* test_rtn.c - round-to-nearest quantization of weight rows: hand-computed
 * codes for every granularity, int4 packing, degenerate rows, the NaN policy,
 * split and thread-count invariance, metrics and dequantization. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/rtn.h"

#define EPS 1.1920928955078125e-07f

/* The kernel context the tests run with (the best this CPU runs), and the
 * scalar reference that every context must match byte for byte. */
static pq_ops g_ops, g_ref;

static int setup(void **state)
{
    (void)state;
    pq_ops_init_ref(&g_ref);
    return pq_ops_select("cpu", &g_ops) == PQ_KOK ? 0 : -1;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(float lo, float hi)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static pq_qspec spec_of(int bits, pq_granularity g, int gs, bool sym)
{
    pq_qspec s = {.bits = bits, .gran = g, .group_size = gs, .symmetric = sym};
    return s;
}

static void test_channel_hand(void **state)
{
    (void)state;
    /* row 0 sym: amax 127 -> scale 1, codes are RNE of the values.
     * row 1: amax 254 -> scale 2 (exact), x/2 exact. */
    const float w[2 * 6] = {127, -3.2f, 0.5f, 1.5f, -2.5f, 64.49f,
                            -254, 3, 5, -7, 0.9f, 254};
    const int8_t want[12] = {127, -3, 0, 2, -2, 64, -127, 2, 2, -4, 0, 127};
    pq_qspec s = spec_of(8, PQ_GRAN_CHANNEL, 0, true);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 2, 6, &s, PQ_NAN_ERROR, "w", &qt), PQ_OK);
    assert_int_equal(qt.n_scales, 2);
    assert_null(qt.zero_point);
    assert_true(qt.scale[0] == 1.0f && qt.scale[1] == 2.0f);
    assert_memory_equal(qt.codes, want, 12);
    pq_qtensor_free(&qt);

    /* asym: [-51, 204] -> scale 1, zp -77; codes = round(x) - 77 */
    const float a[6] = {-51, 204, 0, 10.5f, 11.5f, -0.0f};
    const int8_t wa[6] = {-128, 127, -77, -67, -65, -77};
    s.symmetric = false;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, a, 1, 6, &s, PQ_NAN_ERROR, "a", &qt), PQ_OK);
    assert_true(qt.scale[0] == 1.0f);
    assert_int_equal(qt.zero_point[0], -77);
    assert_memory_equal(qt.codes, wa, 6);
    pq_qtensor_free(&qt);
}

static void test_degenerate_rows(void **state)
{
    (void)state;
    /* rows: all zero, constant 2, negative-only, tiny */
    float w[4 * 5] = {0, 0, 0, 0, 0,
                      2, 2, 2, 2, 2,
                      -51, -10, -3, -51, -20,
                      1e-30f, -1e-30f, 0, 1e-38f, 1e-45f};
    pq_qspec s = spec_of(8, PQ_GRAN_CHANNEL, 0, true);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 4, 5, &s, PQ_NAN_ERROR, "deg", &qt), PQ_OK);
    const int8_t *q = qt.codes;
    assert_true(qt.scale[0] == EPS);
    for (int i = 0; i < 5; i++) assert_int_equal(q[i], 0);
    assert_true(qt.scale[1] == (float)(2.0 / 127.0));
    for (int i = 0; i < 5; i++) assert_int_equal(q[5 + i], 127);
    assert_true(qt.scale[2] == (float)(51.0 / 127.0));
    assert_int_equal(q[10], -127);
    assert_true(qt.scale[3] == EPS);
    for (int i = 0; i < 5; i++) assert_int_equal(q[15 + i], 0); /* 1e-30 / eps ~ 8e-24 */
    assert_true(isinf(qt.metrics.sqnr_db) || qt.metrics.sqnr_db > 30);
    pq_qtensor_free(&qt);

    s.symmetric = false;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 4, 5, &s, PQ_NAN_ERROR, "deg", &qt), PQ_OK);
    q = qt.codes;
    assert_true(qt.scale[0] == EPS);
    assert_int_equal(qt.zero_point[0], -128);
    for (int i = 0; i < 5; i++) assert_int_equal(q[i], -128);
    assert_true(qt.scale[1] == (float)(2.0 / 255.0));
    assert_int_equal(qt.zero_point[1], -128);
    for (int i = 0; i < 5; i++) assert_int_equal(q[5 + i], 127);
    assert_true(qt.scale[2] == 0.2f);
    assert_int_equal(qt.zero_point[2], 127);
    assert_int_equal(q[10], -128); /* -51 / 0.2 = -255 -> 127 - 255 */
    assert_int_equal(q[11], 127 - 50);
    assert_true(qt.scale[3] == EPS);
    assert_int_equal(qt.zero_point[3], -128);
    pq_qtensor_free(&qt);
}

static void test_group_partial(void **state)
{
    (void)state;
    /* 2 rows x 70 cols, groups of 32: 32 + 32 + 6. Group maxima chosen so
     * that the scales are powers of two and x/scale is exact. */
    enum { R = 2, C = 70, GS = 32 };
    static const float gscale[R][3] = {{1.0f, 2.0f, 0.5f}, {4.0f, 0.25f, 1.0f}};
    float w[R * C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float sc = gscale[r][c / GS];
            w[r * C + c] = (c % GS == 0 ? 127.0f : (float)((int)(rng % 200) - 100) * 0.25f) * sc;
            if (c % GS == 1) w[r * C + c] = -50.5f * sc; /* a tie: RNE -> -50 */
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        }
    pq_qspec s = spec_of(8, PQ_GRAN_GROUP, GS, true);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, R, C, &s, PQ_NAN_ERROR, "g", &qt), PQ_OK);
    assert_int_equal(qt.n_groups, 3);
    assert_int_equal(qt.n_scales, R * 3);
    const int8_t *q = qt.codes;
    for (int r = 0; r < R; r++) {
        for (int g = 0; g < 3; g++) assert_true(qt.scale[r * 3 + g] == gscale[r][g]);
        for (int c = 0; c < C; c++) {
            double v = (double)w[r * C + c] / gscale[r][c / GS];
            int want = (int)nearbyint(v);
            if (q[r * C + c] != want) fail_msg("r%d c%d: %d want %d", r, c, q[r * C + c], want);
        }
        assert_int_equal(q[r * C + 1], -50);
        assert_int_equal(q[r * C + GS + 1], -50);
    }
    pq_qtensor_free(&qt);
}

static void test_int4_packing(void **state)
{
    (void)state;
    /* amax 7 -> scale 1: codes {7,-7,4,-2,1} */
    const float w[5] = {7, -7, 3.5f, -2.5f, 1};
    pq_qspec s = spec_of(4, PQ_GRAN_CHANNEL, 0, true);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 1, 5, &s, PQ_NAN_ERROR, "p", &qt), PQ_OK);
    assert_int_equal(qt.code_row_bytes, 3);
    const uint8_t want[3] = {0x1F, 0x6C, 0x89};
    assert_memory_equal(qt.codes, want, 3);
    float back[5];
    pq_qtensor_dequantize_rows(&qt, 0, 1, back);
    const float wb[5] = {7, -7, 4, -2, 1};
    assert_memory_equal(back, wb, sizeof wb);
    pq_qtensor_free(&qt);

    /* asym int4 [-1, 2]: scale 0.2f, zp -3 (test_qparams); 2 -> 2/0.2f = 10 -> 7 */
    const float a[3] = {-1, 2, 0};
    s.symmetric = false;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, a, 1, 3, &s, PQ_NAN_ERROR, "p", &qt), PQ_OK);
    assert_int_equal(qt.zero_point[0], -3);
    const uint8_t wa[2] = {(uint8_t)((-8 + 8) | (7 + 8) << 4), (uint8_t)((-3 + 8) | 8 << 4)};
    assert_memory_equal(qt.codes, wa, 2);
    pq_qtensor_free(&qt);
}

static void test_per_tensor(void **state)
{
    (void)state;
    /* range [-1, 254] asym int8 -> scale 1, zp -127 */
    const float w[2 * 3] = {-1, 254, 0.5f, 3, 2.5f, 100};
    pq_qspec s = spec_of(8, PQ_GRAN_TENSOR, 0, false);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 2, 3, &s, PQ_NAN_ERROR, "t", &qt), PQ_OK);
    assert_int_equal(qt.n_scales, 1);
    assert_true(qt.scale[0] == 1.0f);
    assert_int_equal(qt.zero_point[0], -127);
    const int8_t want[6] = {-128, 127, -127, -124, -125, -27};
    assert_memory_equal(qt.codes, want, 6);

    /* a block of rows quantized with the whole tensor's range gives the
     * same rows */
    float range[2];
    int64_t bad;
    assert_int_equal(pq_rtn_tensor_range(&g_ops, w, 6, &range[0], &range[1], &bad), PQ_OK);
    assert_true(range[0] == -1.0f && range[1] == 254.0f && bad == 0);
    int8_t codes[3];
    float sc;
    int32_t zp;
    pq_rtn_rows out = {.codes = codes, .scale = &sc, .zero_point = &zp};
    assert_int_equal(pq_rtn_quantize_rows(&g_ops, 1, w + 3, 1, 3, &s, PQ_NAN_ERROR, range, "t", 1, &out), PQ_OK);
    assert_memory_equal(codes, want + 3, 3);
    assert_true(sc == 1.0f && zp == -127);
    pq_qtensor_free(&qt);
}

static void test_nan_error(void **state)
{
    (void)state;
    float w[4 * 8];
    for (int i = 0; i < 32; i++) w[i] = frand(-1, 1);
    w[2 * 8 + 5] = NAN;
    w[3 * 8 + 1] = INFINITY;
    pq_qspec s = spec_of(8, PQ_GRAN_CHANNEL, 0, true);
    int8_t codes[32];
    float sc[4];
    pq_rtn_rows out = {.codes = codes, .scale = sc};
    for (int threads = 1; threads <= 2; threads++) {
        pq_err_clear();
        pq_status st =
            pq_rtn_quantize_rows(&g_ops, threads, w, 4, 8, &s, PQ_NAN_ERROR, NULL, "layer.w", 10, &out);
        assert_int_equal(st, PQ_ERR_QUANTIZATION);
        assert_string_equal(pq_err_detail(),
                            "tensor 'layer.w': row 12 (column 5) holds NaN; use --nan-policy zero|keep to override");
    }
    /* KEEP_FLOAT is the caller's job: rtn refuses like ERROR */
    pq_err_clear();
    assert_int_equal(pq_rtn_quantize_rows(&g_ops, 1, w + 24, 1, 8, &s, PQ_NAN_KEEP_FLOAT, NULL, "x", 3, &out),
                     PQ_ERR_QUANTIZATION);
    assert_non_null(strstr(pq_err_detail(), "tensor 'x': row 3 (column 1) holds +Inf"));
    /* group-wise and per-tensor report too */
    pq_qspec g = spec_of(4, PQ_GRAN_GROUP, 32, false);
    pq_qtensor qt;
    pq_err_clear();
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 4, 8, &g, PQ_NAN_ERROR, "gw", &qt), PQ_ERR_QUANTIZATION);
    assert_non_null(strstr(pq_err_detail(), "tensor 'gw': row 2 (column 5) holds NaN"));
    assert_null(qt.codes);
    pq_qspec t = spec_of(8, PQ_GRAN_TENSOR, 0, true);
    pq_err_clear();
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 4, 8, &t, PQ_NAN_ERROR, "tw", &qt), PQ_ERR_QUANTIZATION);
    assert_non_null(strstr(pq_err_detail(), "row 2 (column 5)"));
}

static void test_nan_zero(void **state)
{
    (void)state;
    /* row 0: NaN and Inf count as 0: amax 127 -> scale 1, codes of 0;
     * row 1: nothing finite -> observed zeros -> eps floor */
    const float w[2 * 4] = {NAN, 127, -63, INFINITY, NAN, -INFINITY, NAN, NAN};
    pq_qspec s = spec_of(8, PQ_GRAN_CHANNEL, 0, true);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 2, 4, &s, PQ_NAN_ZERO, "z", &qt), PQ_OK);
    const int8_t want[8] = {0, 127, -63, 0, 0, 0, 0, 0};
    assert_memory_equal(qt.codes, want, 8);
    assert_true(qt.scale[0] == 1.0f && qt.scale[1] == EPS);
    assert_int_equal(qt.metrics.n_nonfinite, 6);
    assert_true(qt.metrics.sum_sq == 127.0 * 127 + 63.0 * 63);
    assert_true(qt.metrics.err_sq == 0.0);
    pq_qtensor_free(&qt);

    s.symmetric = false;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 2, 4, &s, PQ_NAN_ZERO, "z", &qt), PQ_OK);
    const int8_t *q = qt.codes;
    assert_int_equal(qt.zero_point[1], -128);
    for (int i = 4; i < 8; i++) assert_int_equal(q[i], -128);
    assert_int_equal(q[0], qt.zero_point[0]);
    assert_int_equal(q[3], qt.zero_point[0]);
    pq_qtensor_free(&qt);

    /* per-tensor of only NaN under ZERO: zeros observed, eps floor */
    s.gran = PQ_GRAN_TENSOR;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w + 4, 1, 4, &s, PQ_NAN_ZERO, "z", &qt), PQ_OK);
    assert_true(qt.scale[0] == EPS);
    assert_int_equal(qt.zero_point[0], -128);
    pq_qtensor_free(&qt);
}

static void test_metrics_hand(void **state)
{
    (void)state;
    /* scale 1: codes {127, 0, -2, 2}; errors {0, 0.4f, 0.5, 0} */
    const float w[4] = {127, 0.4f, -1.5f, 2};
    pq_qspec s = spec_of(8, PQ_GRAN_CHANNEL, 0, true);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, 1, 4, &s, PQ_NAN_ERROR, "m", &qt), PQ_OK);
    double e4 = (double)0.4f;
    double sum_sq = 127.0 * 127.0 + e4 * e4 + 2.25 + 4.0, err_sq = e4 * e4 + 0.25;
    assert_float_equal(qt.metrics.sum_sq, sum_sq, 1e-12 * sum_sq);
    assert_float_equal(qt.metrics.err_sq, err_sq, 1e-15);
    assert_true(qt.metrics.max_abs_err == 0.5);
    assert_float_equal(qt.metrics.sqnr_db, 10.0 * log10(sum_sq / err_sq), 1e-9);
    assert_float_equal(qt.metrics.rel_l2, sqrt(err_sq / sum_sq), 1e-12);
    assert_int_equal(qt.metrics.n_nonfinite, 0);
    pq_qtensor_free(&qt);

    /* exact quantization: +inf dB, rel 0; all-zero: rel 0 */
    const float z[3] = {0, 0, 0};
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, z, 1, 3, &s, PQ_NAN_ERROR, "m", &qt), PQ_OK);
    assert_true(isinf(qt.metrics.sqnr_db) && qt.metrics.sqnr_db > 0);
    assert_true(qt.metrics.rel_l2 == 0.0);
    pq_qtensor_free(&qt);

    /* merging rows: sums in row order, max of maxima */
    const double ss[2] = {1.5, 2.5}, es[2] = {0.25, 0.5};
    const float me[2] = {0.5f, 0.25f};
    pq_qmetrics m;
    pq_qmetrics_from_rows(ss, es, me, 2, 7, &m);
    assert_true(m.sum_sq == 4.0 && m.err_sq == 0.75 && m.max_abs_err == 0.5 && m.n_nonfinite == 7);
    assert_float_equal(m.sqnr_db, 10.0 * log10(4.0 / 0.75), 1e-12);

    /* a longer row: metrics against a plain double computation */
    enum { N = 1001 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = frand(-3, 3);
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, x, 1, N, &s, PQ_NAN_ERROR, "m", &qt), PQ_OK);
    double ws = 0, we = 0, wm = 0;
    for (int i = 0; i < N; i++) {
        double wh = (double)(float)((float)((const int8_t *)qt.codes)[i] * qt.scale[0]);
        ws += (double)x[i] * x[i];
        we += (x[i] - wh) * (x[i] - wh);
        wm = fmax(wm, fabs(x[i] - wh));
    }
    assert_float_equal(qt.metrics.sum_sq, ws, 1e-12 * ws);
    assert_float_equal(qt.metrics.err_sq, we, 1e-12 * we);
    assert_true(qt.metrics.max_abs_err == (double)(float)wm);
    pq_qtensor_free(&qt);
}

/* Quantize the same matrix whole, in two blocks of rows, and with 1/2/all
 * threads: every byte must agree. */
static void run_split(const float *w, int64_t rows, int64_t cols, const pq_qspec *s, int threads,
                      int64_t split, pq_qtensor *ref)
{
    pq_qtensor qt;
    assert_int_equal(pq_qtensor_alloc(&qt, s, rows, cols), PQ_OK);
    double *ss = malloc((size_t)rows * sizeof *ss), *es = malloc((size_t)rows * sizeof *es);
    float *me = malloc((size_t)rows * sizeof *me);
    for (int part = 0; part < 2; part++) {
        int64_t r0 = part ? split : 0, n = part ? rows - split : split;
        int64_t si = s->gran == PQ_GRAN_TENSOR ? 0 : r0 * qt.n_groups;
        pq_rtn_rows out = {
            .codes = (char *)qt.codes + r0 * qt.code_row_bytes, .scale = qt.scale + si,
            .zero_point = qt.zero_point ? qt.zero_point + si : NULL,
            .row_sum_sq = ss + r0, .row_err_sq = es + r0, .row_max_err = me + r0,
        };
        assert_int_equal(pq_rtn_quantize_rows(&g_ops, threads, w + r0 * cols, n, cols, s, PQ_NAN_ERROR, NULL,
                                              "s", r0, &out),
                         PQ_OK);
    }
    pq_qmetrics_from_rows(ss, es, me, rows, 0, &qt.metrics);
    assert_memory_equal(qt.codes, ref->codes, (size_t)(rows * qt.code_row_bytes));
    assert_memory_equal(qt.scale, ref->scale, (size_t)qt.n_scales * sizeof(float));
    if (qt.zero_point) assert_memory_equal(qt.zero_point, ref->zero_point, (size_t)qt.n_scales * 4);
    assert_memory_equal(&qt.metrics, &ref->metrics, sizeof qt.metrics);
    free(ss);
    free(es);
    free(me);
    pq_qtensor_free(&qt);
}

static void test_split_and_threads(void **state)
{
    (void)state;
    enum { R = 67, C = 301 };
    float *w = malloc(R * C * sizeof *w);
    for (int i = 0; i < R * C; i++) w[i] = frand(-2, 2) * (i % 7 == 0 ? 10.0f : 1.0f);
    const pq_qspec specs[] = {spec_of(8, PQ_GRAN_CHANNEL, 0, true), spec_of(8, PQ_GRAN_CHANNEL, 0, false),
                              spec_of(4, PQ_GRAN_GROUP, 64, false), spec_of(4, PQ_GRAN_GROUP, 33, true),
                              spec_of(8, PQ_GRAN_GROUP, 128, true)};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        pq_qtensor ref;
        assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, R, C, &specs[k], PQ_NAN_ERROR, "s", &ref), PQ_OK);
        /* 2 threads, and the scalar reference context: the same bytes */
        const pq_ops *ctx[2] = {&g_ops, &g_ref};
        for (int c = 0; c < 2; c++) {
            pq_qtensor t2;
            assert_int_equal(pq_rtn_quantize(ctx[c], 2, w, R, C, &specs[k], PQ_NAN_ERROR, "s", &t2), PQ_OK);
            assert_memory_equal(t2.codes, ref.codes, (size_t)(R * ref.code_row_bytes));
            assert_memory_equal(t2.scale, ref.scale, (size_t)ref.n_scales * sizeof(float));
            assert_memory_equal(&t2.metrics, &ref.metrics, sizeof ref.metrics);
            pq_qtensor_free(&t2);
        }
        run_split(w, R, C, &specs[k], 1, 20, &ref);
        run_split(w, R, C, &specs[k], 2, 41, &ref);
        run_split(w, R, C, &specs[k], 0, 1, &ref);
        pq_qtensor_free(&ref);
    }
    free(w);
}

static void test_dequantize_rows(void **state)
{
    (void)state;
    /* int4 groups of 33 (odd, so groups start mid-byte), 3 rows */
    enum { R = 3, C = 101 };
    float w[R * C], back[R * C];
    for (int i = 0; i < R * C; i++) w[i] = frand(-1, 1);
    pq_qspec s = spec_of(4, PQ_GRAN_GROUP, 33, false);
    pq_qtensor qt;
    assert_int_equal(pq_rtn_quantize(&g_ops, 1, w, R, C, &s, PQ_NAN_ERROR, "d", &qt), PQ_OK);
    pq_qtensor_dequantize_rows(&qt, 1, 2, back);
    const uint8_t *p = qt.codes;
    for (int r = 1; r < R; r++)
        for (int c = 0; c < C; c++) {
            uint8_t b = p[r * qt.code_row_bytes + c / 2];
            int q = (c & 1 ? b >> 4 : b & 15) - 8;
            int64_t si = r * qt.n_groups + c / 33;
            float want = (float)(q - qt.zero_point[si]) * qt.scale[si];
            assert_true(back[(r - 1) * C + c] == want);
            /* RTN error bound: half a step, plus rounding slack */
            assert_true(fabsf(back[(r - 1) * C + c] - w[r * C + c]) <= 0.5001f * qt.scale[si]);
        }
    pq_qtensor_free(&qt);
}

static void test_bad_spec(void **state)
{
    (void)state;
    float w[4] = {1, 2, 3, 4};
    int8_t codes[4];
    float sc[4];
    pq_rtn_rows out = {.codes = codes, .scale = sc};
    pq_qspec s = spec_of(3, PQ_GRAN_CHANNEL, 0, true);
    assert_int_equal(pq_rtn_quantize_rows(&g_ops, 1, w, 1, 4, &s, PQ_NAN_ERROR, NULL, "b", 0, &out), PQ_ERR_CONFIG);
    s = spec_of(8, PQ_GRAN_GROUP, 16, true);
    assert_int_equal(pq_rtn_quantize_rows(&g_ops, 1, w, 1, 4, &s, PQ_NAN_ERROR, NULL, "b", 0, &out), PQ_ERR_CONFIG);
    s = spec_of(8, PQ_GRAN_CHANNEL, 0, false); /* asymmetric needs zero points */
    assert_int_equal(pq_rtn_quantize_rows(&g_ops, 1, w, 1, 4, &s, PQ_NAN_ERROR, NULL, "b", 0, &out), PQ_ERR_INTERNAL);
    pq_err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_hand),
        cmocka_unit_test(test_degenerate_rows),
        cmocka_unit_test(test_group_partial),
        cmocka_unit_test(test_int4_packing),
        cmocka_unit_test(test_per_tensor),
        cmocka_unit_test(test_nan_error),
        cmocka_unit_test(test_nan_zero),
        cmocka_unit_test(test_metrics_hand),
        cmocka_unit_test(test_split_and_threads),
        cmocka_unit_test(test_dequantize_rows),
        cmocka_unit_test(test_bad_spec),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
