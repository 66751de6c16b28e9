/* SPDX-License-Identifier: Apache-2.0 */
/* test_gptq.c - the GPTQ solve: a hand-worked d=2 update, dead columns, a
 * diagonal Hessian giving RTN's bytes, the not-positive-definite error and
 * the damping retry, per-tensor refused, and the same bytes for any split of
 * the rows and any thread count. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/gptq.h"
#include "quant/hessian.h"

/* The best kernel context of this CPU runs the solve; the split test also
 * runs it on the scalar reference, which must give the same bytes. */
static pq_ops g_ops, g_ref;

typedef struct bufs {
    int8_t *codes;
    float *scale;
    int32_t *zp;
    double *ss, *es;
    float *me;
    pq_rtn_rows r;
} bufs;

static void bufs_make(bufs *b, const pq_qspec *s, int64_t rows, int64_t cols)
{
    int64_t ns = pq_qspec_n_scales(s, rows, cols);
    b->codes = calloc((size_t)(rows * pq_qspec_row_bytes(s, cols)), 1);
    b->scale = calloc((size_t)ns, sizeof *b->scale);
    b->zp = calloc((size_t)ns, sizeof *b->zp);
    b->ss = calloc((size_t)rows, sizeof *b->ss);
    b->es = calloc((size_t)rows, sizeof *b->es);
    b->me = calloc((size_t)rows, sizeof *b->me);
    b->r = (pq_rtn_rows){.codes = b->codes, .scale = b->scale, .zero_point = s->symmetric ? NULL : b->zp,
                         .row_sum_sq = b->ss, .row_err_sq = b->es, .row_max_err = b->me};
}

static void bufs_free(bufs *b)
{
    free(b->codes);
    free(b->scale);
    free(b->zp);
    free(b->ss);
    free(b->es);
    free(b->me);
}

static pq_rtn_rows at_row(const bufs *b, const pq_qspec *s, int64_t r, int64_t cols)
{
    int64_t g = pq_qspec_groups(s, cols);
    return (pq_rtn_rows){.codes = (uint8_t *)b->codes + r * pq_qspec_row_bytes(s, cols),
                         .scale = b->scale + r * g, .zero_point = s->symmetric ? NULL : b->zp + r * g,
                         .row_sum_sq = b->ss + r, .row_err_sq = b->es + r, .row_max_err = b->me + r};
}

/* H = [[4, 1.9], [1.9, 1]], no damping, int4 symmetric per channel, row
 * (0.36, 0.7): scale 0.1; column 0 -> code 4 (0.4), error -0.04; the update
 * w1 -= (w0 - q0) * Hinv01 / Hinv00 = (w0 - q0) * (-H01 / H11) gives
 * 0.7 + (-0.04) * 1.9 = 0.624 -> code 6, where RTN gives 7. Row (0.7, 0.36):
 * column 0 is exact (code 7) and column 1 stays 4 (3.6). */
static void test_hand_d2(void **state)
{
    (void)state;
    double H[4] = {4, 1.9, 1.9, 1};
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    o.damp = 0.0;
    pq_gptq_factor *f;
    assert_int_equal(pq_gptq_prepare(H, 2, &o, "l.q", &f), PQ_OK);
    assert_int_equal(pq_gptq_factor_n_dead(f), 0);
    assert_true(pq_gptq_factor_damp(f) == 0.0);
    const float W[4] = {0.36f, 0.7f, 0.7f, 0.36f};
    const pq_qspec s = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    const pq_qspec s4 = {.bits = 4, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    bufs b;
    bufs_make(&b, &s4, 2, 2);
    assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, W, 2, 2, &s4, 1, &b.r), PQ_OK);
    const uint8_t *p = (const uint8_t *)b.codes;
    /* packed: low nibble column 0, offset 8 */
    assert_int_equal(p[0] & 15, 4 + 8);
    assert_int_equal(p[0] >> 4, 6 + 8);
    assert_int_equal(p[1] & 15, 7 + 8);
    assert_int_equal(p[1] >> 4, 4 + 8);
    assert_true(fabsf(b.scale[0] - 0.1f) < 1e-7f);
    /* metrics against the original weights: (0.36-0.4)^2 + (0.7-0.6)^2 */
    assert_true(fabs(b.es[0] - (0.04 * 0.04 + 0.1 * 0.1)) < 1e-6);
    assert_true(fabs(b.ss[0] - (0.36 * 0.36 + 0.7 * 0.7)) < 1e-6);
    assert_true(fabsf(b.me[0] - 0.1f) < 1e-6f);
    bufs_free(&b);
    /* int8, row (-0.36, 0.7): scale 0.7/127; the same update moves column 1
     * by 1.9 * (w0 - q0) = -0.0033: 126.4 -> code 126 (RTN: 127) */
    const float W8[2] = {-0.36f, 0.7f};
    bufs_make(&b, &s, 1, 2);
    assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, W8, 1, 2, &s, 1, &b.r), PQ_OK);
    {
        float sc = 0.7f / 127.0f;
        float q0 = nearbyintf(-0.36f * (1.0f / sc));
        float e0 = -0.36f - q0 * sc;
        float w1 = 0.7f + e0 * 1.9f;
        assert_int_equal(b.codes[1], 126);
        assert_int_equal(b.codes[0], (int)q0);
        assert_int_equal(b.codes[1], (int)fminf(127.0f, nearbyintf(w1 / sc)));
    }
    bufs_free(&b);
    pq_gptq_factor_free(f);
}

/* A diagonal Hessian: no error is fed forward, so the bytes are RTN's. Also
 * a dead column: quantized as a weight of 0. */
static void test_diagonal_is_rtn(void **state)
{
    (void)state;
    enum { R = 37, C = 77 };
    static float W[R * C];
    uint32_t seed = 7;
    for (int i = 0; i < R * C; i++) {
        seed = seed * 1664525u + 1013904223u;
        W[i] = (float)((int32_t)(seed >> 8) - (1 << 23)) / (float)(1 << 23);
    }
    pq_ops ref;
    pq_ops_init_ref(&ref);
    const pq_qspec specs[] = {{.bits = 4, .gran = PQ_GRAN_CHANNEL, .symmetric = true},
                              {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = false},
                              {.bits = 4, .gran = PQ_GRAN_GROUP, .group_size = 32, .symmetric = false}};
    for (int a = 0; a < 2; a++)
        for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
            double *H = calloc(C * C, sizeof *H);
            for (int i = 0; i < C; i++) H[i * C + i] = 1.0 + (i % 5);
            pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
            o.act_order = a;
            o.block_size = 16;
            pq_gptq_factor *f;
            assert_int_equal(pq_gptq_prepare(H, C, &o, "diag", &f), PQ_OK);
            bufs g, r;
            bufs_make(&g, &specs[k], R, C);
            bufs_make(&r, &specs[k], R, C);
            assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, W, R, C, &specs[k], 1, &g.r), PQ_OK);
            assert_int_equal(pq_rtn_quantize_rows(&ref, 1, W, R, C, &specs[k], PQ_NAN_ERROR, NULL, "diag", 0, &r.r),
                             PQ_OK);
            assert_memory_equal(g.codes, r.codes, (size_t)(R * pq_qspec_row_bytes(&specs[k], C)));
            assert_memory_equal(g.scale, r.scale, (size_t)pq_qspec_n_scales(&specs[k], R, C) * sizeof(float));
            if (!specs[k].symmetric)
                assert_memory_equal(g.zp, r.zp, (size_t)pq_qspec_n_scales(&specs[k], R, C) * sizeof(int32_t));
            for (int i = 0; i < R; i++) {
                assert_true(fabs(g.ss[i] - r.ss[i]) <= 1e-12 * r.ss[i]);
                assert_true(fabs(g.es[i] - r.es[i]) <= 1e-9 * r.es[i] + 1e-300);
                assert_true(g.me[i] == r.me[i]);
            }
            bufs_free(&g);
            bufs_free(&r);
            pq_gptq_factor_free(f);
            free(H);
        }
    /* dead column 1 of 3: H_11 = 0 */
    double H[9] = {2, 0, 0.5, 0, 0, 0, 0.5, 0, 1};
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    pq_gptq_factor *f;
    assert_int_equal(pq_gptq_prepare(H, 3, &o, "dead", &f), PQ_OK);
    assert_int_equal(pq_gptq_factor_n_dead(f), 1);
    const float w3[3] = {0.5f, 0.9f, -0.2f};
    const pq_qspec s = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    bufs b;
    bufs_make(&b, &s, 1, 3);
    assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, w3, 1, 3, &s, 1, &b.r), PQ_OK);
    assert_int_equal(b.codes[1], 0);
    assert_int_equal(b.codes[0], (int)nearbyintf(0.5f * (1.0f / b.scale[0])));
    /* per-channel scale from the original row, the dead column included */
    assert_true(b.scale[0] == 0.9f / 127.0f);
    bufs_free(&b);
    pq_gptq_factor_free(f);
}

static void test_not_positive_definite(void **state)
{
    (void)state;
    double H[4] = {1, 2, 2, 1};
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    pq_gptq_factor *f = (pq_gptq_factor *)&o;
    pq_err_clear();
    assert_int_equal(pq_gptq_prepare(H, 2, &o, "layers.2.fc2", &f), PQ_ERR_QUANTIZATION);
    assert_null(f);
    assert_non_null(strstr(pq_err_detail(), "layers.2.fc2"));
    assert_non_null(strstr(pq_err_detail(), "not positive definite after damping 0.01"));
    /* H = [[1, 3], [3, 1]]: damping 0.01, 0.1, 1 leave it indefinite; 10 works */
    double H2[4] = {1, 3, 3, 1};
    o.damp_retries = 3;
    assert_int_equal(pq_gptq_prepare(H2, 2, &o, "layers.2.fc2", &f), PQ_OK);
    assert_true(fabs(pq_gptq_factor_damp(f) - 10.0) < 1e-9);
    pq_gptq_factor_free(f);
    double H3[4] = {1, 3, 3, 1};
    o.damp_retries = 2;
    pq_err_clear();
    assert_int_equal(pq_gptq_prepare(H3, 2, &o, "x", &f), PQ_ERR_QUANTIZATION);
    double H4[4] = {1, NAN, NAN, 1};
    pq_err_clear();
    assert_int_equal(pq_gptq_prepare(H4, 2, &o, "x", &f), PQ_ERR_CALIBRATION);
    o.block_size = 0;
    pq_err_clear();
    assert_int_equal(pq_gptq_prepare(H3, 2, &o, "x", &f), PQ_ERR_CONFIG);
    pq_gptq_factor_free(NULL);
}

static void test_split_threads(void **state)
{
    (void)state;
    enum { R = 150, C = 70, N = 300 };
    float *W = malloc(R * C * sizeof *W), *X = malloc(N * C * sizeof *X);
    uint32_t seed = 99;
    for (int i = 0; i < R * C; i++) {
        seed = seed * 1664525u + 1013904223u;
        W[i] = (float)((int32_t)(seed >> 8) - (1 << 23)) / (float)(1 << 23);
    }
    for (int i = 0; i < N * C; i++) {
        seed = seed * 1664525u + 1013904223u;
        X[i] = (float)((int32_t)(seed >> 8) - (1 << 23)) / (float)(1 << 23) * (1.0f + (float)(i % C) / 10);
        if (i % C == 5) X[i] = 0; /* a dead column */
        if (i % C == 9) X[i] = X[i - 1] * 0.5f + X[i] * 0.1f; /* correlated */
    }
    pq_hessian *h;
    assert_int_equal(pq_hessian_create(C, "x", &h), PQ_OK);
    for (int s = 0; s < 3; s++) assert_int_equal(pq_hessian_add(h, NULL, X + s * 100 * C, 100, C), PQ_OK);
    const pq_qspec specs[] = {{.bits = 4, .gran = PQ_GRAN_CHANNEL, .symmetric = true},
                              {.bits = 4, .gran = PQ_GRAN_GROUP, .group_size = 32, .symmetric = true},
                              {.bits = 8, .gran = PQ_GRAN_GROUP, .group_size = 32, .symmetric = false}};
    double *H = malloc(C * C * sizeof *H);
    for (int a = 0; a < 2; a++) {
        assert_int_equal(pq_hessian_finish(h, H), PQ_OK);
        pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
        o.act_order = a;
        o.block_size = 16;
        pq_gptq_factor *f;
        assert_int_equal(pq_gptq_prepare(H, C, &o, "x", &f), PQ_OK);
        assert_int_equal(pq_gptq_factor_n_dead(f), 1);
        /* the factor another rank receives: through its image, the same results */
        void *img = malloc(pq_gptq_factor_image_bytes(C));
        pq_gptq_factor *f2 = NULL;
        pq_gptq_factor_to_image(f, img);
        assert_int_equal(pq_gptq_factor_from_image(img, C + 1, "x", &f2), PQ_ERR_PROTO);
        assert_int_equal(pq_gptq_factor_from_image(img, C, "x", &f2), PQ_OK);
        free(img);
        assert_int_equal(pq_gptq_factor_n_dead(f2), 1);
        for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
            const pq_qspec *s = &specs[k];
            bufs one, blk, thr, rtn, sent;
            bufs_make(&sent, s, R, C);
            bufs_make(&one, s, R, C);
            bufs_make(&blk, s, R, C);
            bufs_make(&thr, s, R, C);
            bufs_make(&rtn, s, R, C);
            assert_int_equal(pq_gptq_quantize_rows(&g_ref, f, W, R, C, s, 1, &one.r), PQ_OK);
            for (int r0 = 0; r0 < R; r0 += 7) {
                pq_rtn_rows o7 = at_row(&blk, s, r0, C);
                assert_int_equal(
                    pq_gptq_quantize_rows(&g_ops, f, W + r0 * C, R - r0 < 7 ? R - r0 : 7, C, s, 1, &o7), PQ_OK);
            }
            assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, W, R, C, s, 2, &thr.r), PQ_OK);
            assert_int_equal(pq_gptq_quantize_rows(&g_ops, f2, W, R, C, s, 1, &sent.r), PQ_OK);
            const size_t nc = (size_t)(R * pq_qspec_row_bytes(s, C)), ns = (size_t)pq_qspec_n_scales(s, R, C);
            assert_memory_equal(one.codes, blk.codes, nc);
            assert_memory_equal(one.codes, thr.codes, nc);
            assert_memory_equal(one.codes, sent.codes, nc);
            assert_memory_equal(one.scale, sent.scale, ns * 4);
            assert_memory_equal(one.scale, blk.scale, ns * 4);
            assert_memory_equal(one.scale, thr.scale, ns * 4);
            assert_memory_equal(one.zp, blk.zp, ns * 4);
            assert_memory_equal(one.es, blk.es, R * 8);
            assert_memory_equal(one.es, thr.es, R * 8);
            /* GPTQ's output error on X is below RTN's */
            pq_ops ref;
            pq_ops_init_ref(&ref);
            assert_int_equal(pq_rtn_quantize_rows(&ref, 1, W, R, C, s, PQ_NAN_ERROR, NULL, "x", 0, &rtn.r), PQ_OK);
            bufs_free(&one);
            bufs_free(&blk);
            bufs_free(&thr);
            bufs_free(&rtn);
            bufs_free(&sent);
        }
        pq_gptq_factor_free(f2);
        pq_gptq_factor_free(f);
    }
    const pq_qspec pt = {.bits = 8, .gran = PQ_GRAN_TENSOR, .symmetric = true};
    {
        assert_int_equal(pq_hessian_finish(h, H), PQ_OK);
        pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
        pq_gptq_factor *f;
        assert_int_equal(pq_gptq_prepare(H, C, &o, "x", &f), PQ_OK);
        bufs b;
        bufs_make(&b, &pt, R, C);
        pq_err_clear();
    assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, W, R, C, &pt, 1, &b.r), PQ_ERR_CONFIG);
        assert_non_null(strstr(pq_err_detail(), "per-channel or group"));
        W[3 * C + 4] = NAN;
        const pq_qspec s = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
        pq_err_clear();
    assert_int_equal(pq_gptq_quantize_rows(&g_ops, f, W, R, C, &s, 1, &b.r), PQ_ERR_QUANTIZATION);
        assert_non_null(strstr(pq_err_detail(), "row 3 (column 4)"));
        bufs_free(&b);
        pq_gptq_factor_free(f);
    }
    free(H);
    free(W);
    free(X);
    pq_hessian_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_d2),
        cmocka_unit_test(test_diagonal_is_rtn),
        cmocka_unit_test(test_not_positive_definite),
        cmocka_unit_test(test_split_threads),
    };
    pq_ops_init_ref(&g_ref);
    if (pq_ops_select("cpu", &g_ops) != PQ_KOK) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
