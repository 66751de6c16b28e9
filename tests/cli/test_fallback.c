/* SPDX-License-Identifier: Apache-2.0 */
/* test_fallback.c - the fallback's order of attempts (pipeline/fallback.h)
 * on hand-built plans and evaluation reports whose accuracies and per-Linear
 * SQNRs are chosen here: which step comes next, what it changes in the
 * configuration and the plan, the budget's boundary, the best attempt, the
 * trail's JSON; and the two configuration keys' bad values. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pipeline/fallback.h"

#define L 2 /* layers of the hand-built model */

/* Tensors: layer 0 q (int4), layer 0 k (int4), layer 0 fc1 (int8, per
 * channel), layer 1 q (int4), a LayerNorm weight (1-D, float). */
static pq_st_tensor k_st[] = {
    {.name = "esm.encoder.layer.0.attention.self.key.weight", .ndim = 2, .shape = {4, 4}},
    {.name = "esm.encoder.layer.0.attention.self.query.weight", .ndim = 2, .shape = {4, 4}},
    {.name = "esm.encoder.layer.0.intermediate.dense.weight", .ndim = 2, .shape = {8, 4}},
    {.name = "esm.encoder.layer.1.LayerNorm.weight", .ndim = 1, .shape = {4}},
    {.name = "esm.encoder.layer.1.attention.self.query.weight", .ndim = 2, .shape = {4, 4}},
};
enum { T_K0, T_Q0, T_FC1_0, T_LN1, T_Q1, N_T };

typedef struct fixture {
    pq_plan_tensor pt[N_T];
    pq_plan plan;
    pq_config cfg;
    pq_fallback fb;
    pq_eval_sqnr sqnr[(L + 1) * PQ_EVAL_N_SITES];
    pq_eval_report rep;
} fixture;

static const pq_qspec k_int4 = {.bits = 4, .gran = PQ_GRAN_TENSOR, .symmetric = true};
static const pq_qspec k_int8_ch = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = true};

/* The plan a configuration gives: the recipe by hand, then its overrides. */
static void build_plan(fixture *f)
{
    const pq_esm2_role roles[N_T] = {PQ_ESM2_K, PQ_ESM2_Q, PQ_ESM2_FC1, PQ_ESM2_LN_FFN_W, PQ_ESM2_Q};
    const int layers[N_T] = {0, 0, 0, 1, 1};
    for (int i = 0; i < N_T; i++) {
        f->pt[i] = (pq_plan_tensor){.st = &k_st[i], .role = roles[i], .layer = layers[i], .action = PQ_ACT_QUANT,
                                    .spec = pq_config_qspec(&f->cfg)};
    }
    f->pt[T_FC1_0].spec = k_int8_ch;
    f->pt[T_LN1].action = PQ_ACT_FLOAT;
    f->plan = (pq_plan){.n_tensors = N_T, .tensors = f->pt};
    assert_int_equal(pq_plan_apply_overrides(&f->cfg, &f->plan), PQ_OK);
    assert_int_equal(pq_fallback_snapshot(&f->fb, &f->plan), PQ_OK);
}

/* SQNR of site (layer, col) = db: signal 1, error 10^(-db/10). */
static void set_sqnr(fixture *f, int layer, int col, double db)
{
    f->sqnr[layer * PQ_EVAL_N_SITES + col] = (pq_eval_sqnr){.sig = 1.0, .err = pow(10.0, -db / 10.0)};
}

/* A report of 1000 masked positions, 100 right for the reference and
 * `correct` for the model, KL kl. */
static const pq_eval_report *report(fixture *f, int64_t correct, double kl)
{
    f->rep = (pq_eval_report){.n_sequences = 5, .num_layers = L, .kl_mean = kl, .sqnr = f->sqnr};
    f->rep.ref.mlm = (pq_eval_mlm){.n_masked = 1000, .n_correct = 100};
    f->rep.q.mlm = (pq_eval_mlm){.n_masked = 1000, .n_correct = correct};
    return &f->rep;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    pq_config_defaults(&f->cfg);
    for (int i = 0; i < (L + 1) * PQ_EVAL_N_SITES; i++) f->sqnr[i] = (pq_eval_sqnr){.sig = 1, .err = 0}; /* inf */
    /* key 0: 20 dB, query 0: 14 dB, fc1 0: 30 dB, query 1: 14 dB (a tie
     * with query 0, which comes later in the plan) */
    set_sqnr(f, 0, 1, 20.0);
    set_sqnr(f, 0, 0, 14.0);
    set_sqnr(f, 0, 4, 30.0);
    set_sqnr(f, 1, 0, 14.0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pq_fallback_free(&f->fb);
    pq_config_free(&f->cfg);
    free(f);
    return 0;
}

static void set(pq_config *c, const char *key, const char *v)
{
    assert_int_equal(pq_config_set(c, key, v), PQ_OK);
}

/* Requested static int4 -> dynamic -> int8 -> keep the lowest-SQNR Linear
 * float -> within the budget at exactly 0.01. */
static void test_full_order(void **state)
{
    fixture *f = *state;
    set(&f->cfg, "scheme", "static");
    set(&f->cfg, "calibration_method", "entropy");
    set(&f->cfg, "precision", "int4");
    set(&f->cfg, "fallback_scheme", "dynamic");
    set(&f->cfg, "allow_accuracy_drop", "0.01");
    assert_true(pq_fallback_wanted(&f->cfg));
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    build_plan(f);
    pq_fb_attempt *a = pq_fallback_current(&f->fb);
    assert_string_equal(a->what, "requested");
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 80, 0.5), 1000), PQ_OK);
    assert_false(a->met); /* 20 of 1000 lost: 0.02 > 0.01 */
    assert_float_equal(a->drop, 0.02, 1e-15);

    pq_fb_step s = pq_fallback_next(&f->fb);
    assert_int_equal(s.kind, PQ_FB_SCHEME);
    assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
    assert_string_equal(f->cfg.scheme, "dynamic");
    assert_string_equal(f->cfg.calibration_method, "minmax"); /* entropy needs the static scheme */
    assert_int_equal(pq_config_validate(&f->cfg), PQ_OK);
    a = pq_fallback_current(&f->fb);
    assert_int_equal(a->number, 2);
    assert_string_equal(a->what, "fallback scheme dynamic");
    build_plan(f);
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 85, 0.4), 1000), PQ_OK);
    assert_false(a->met);

    s = pq_fallback_next(&f->fb);
    assert_int_equal(s.kind, PQ_FB_INT8);
    assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
    assert_int_equal(f->cfg.bits, 8);
    assert_int_equal(f->cfg.n_overrides, 3); /* the three int4 tensors */
    a = pq_fallback_current(&f->fb);
    assert_string_equal(a->what, "int4 -> int8");
    build_plan(f);
    for (int i = 0; i < N_T; i++)
        if (i != T_LN1) assert_int_equal(f->pt[i].spec.bits, 8);
    assert_int_equal(f->pt[T_FC1_0].spec.gran, PQ_GRAN_CHANNEL); /* its own granularity kept */
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 89, 0.3), 1000), PQ_OK);
    assert_false(a->met); /* 11 lost */

    /* query 0 and query 1 both 14 dB: the first in the plan, query 0 */
    s = pq_fallback_next(&f->fb);
    assert_int_equal(s.kind, PQ_FB_KEEP_FLOAT);
    assert_int_equal(s.tensor, T_Q0);
    assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
    a = pq_fallback_current(&f->fb);
    assert_string_equal(a->what, "keep esm.encoder.layer.0.attention.self.query.weight fp32");
    assert_int_equal(a->n_kept, 1);
    build_plan(f);
    assert_int_equal(f->pt[T_Q0].action, PQ_ACT_FLOAT);
    assert_false(f->pt[T_Q0].float16);
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 90, 0.2), 1000), PQ_OK);
    assert_true(a->met); /* 10 of 1000 lost: exactly the budget */
    assert_int_equal(pq_fallback_best(&f->fb), 3);
}

/* Without a fallback scheme and without int4: straight to keeping Linears
 * float, lowest SQNR first, until no measured quantized Linear is left. */
static void test_keep_float_order_to_the_end(void **state)
{
    fixture *f = *state;
    set(&f->cfg, "allow_accuracy_drop", "0");
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    build_plan(f);
    /* a NaN SQNR (a NaN in the outputs) counts as the most sensitive */
    f->sqnr[1 * PQ_EVAL_N_SITES + 0] = (pq_eval_sqnr){.sig = NAN, .err = 1};
    const int want[] = {T_Q1, T_Q0, T_K0, T_FC1_0};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(pq_fallback_measured(&f->fb, report(f, 99, 0.1), 10), PQ_OK);
        assert_false(pq_fallback_current(&f->fb)->met); /* budget 0: one lost is too many */
        pq_fb_step s = pq_fallback_next(&f->fb);
        assert_int_equal(s.kind, PQ_FB_KEEP_FLOAT);
        assert_int_equal(s.tensor, want[k]);
        assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
        build_plan(f);
        assert_int_equal(pq_fallback_current(&f->fb)->n_kept, k + 1);
    }
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 99, 0.1), 10), PQ_OK);
    assert_int_equal(pq_fallback_next(&f->fb).kind, PQ_FB_NONE); /* every Linear float */
    assert_int_equal(f->fb.n_attempts, 5);
}

/* A failed calibration, with and without a fallback scheme. */
static void test_calibration_failure(void **state)
{
    fixture *f = *state;
    set(&f->cfg, "scheme", "static");
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    build_plan(f);
    pq_fallback_failed(&f->fb, PQ_ERR_CALIBRATION, "site x never fired");
    /* no fallback scheme: the failure stands */
    assert_int_equal(pq_fallback_next(&f->fb).kind, PQ_FB_NONE);
    pq_fallback_free(&f->fb);
    set(&f->cfg, "fallback_scheme", "weight-only");
    set(&f->cfg, "smoothquant_alpha", "0.5");
    set(&f->cfg, "precision", "int8");
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    build_plan(f);
    pq_fallback_failed(&f->fb, PQ_ERR_CALIBRATION, "site x never fired");
    pq_fb_step s = pq_fallback_next(&f->fb);
    assert_int_equal(s.kind, PQ_FB_SCHEME);
    assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
    assert_string_equal(f->cfg.scheme, "weight-only");
    assert_true(f->cfg.smoothquant_alpha == 0.0); /* SmoothQuant is for int8 activations */
    assert_int_equal(pq_config_validate(&f->cfg), PQ_OK);
    /* no budget: the attempt that quantizes is accepted */
    build_plan(f);
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 0, 9.0), 10), PQ_OK);
    assert_true(pq_fallback_current(&f->fb)->met);
    char *text = pq_fallback_trail_json(&f->fb);
    assert_non_null(text);
    json_error_t e;
    json_t *t = json_loads(text, 0, &e);
    free(text);
    assert_non_null(t);
    json_t *a1 = json_array_get(t, 0), *a2 = json_array_get(t, 1);
    assert_string_equal(json_string_value(json_object_get(a1, "error")), "calibration error: site x never fired");
    assert_true(json_is_null(json_object_get(a1, "accuracy")));
    assert_false(json_is_true(json_object_get(a1, "accepted")));
    assert_string_equal(json_string_value(json_object_get(a2, "what")), "fallback scheme weight-only");
    assert_true(json_is_true(json_object_get(a2, "accepted")));
    assert_null(json_object_get(a2, "error"));
    json_decref(t);
}

static void test_max_attempts(void **state)
{
    fixture *f = *state;
    set(&f->cfg, "allow_accuracy_drop", "0.001");
    set(&f->cfg, "precision", "int4");
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 2), PQ_OK);
    build_plan(f);
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 90, 0.1), 10), PQ_OK);
    pq_fb_step s = pq_fallback_next(&f->fb);
    assert_int_equal(s.kind, PQ_FB_INT8);
    assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
    build_plan(f);
    assert_int_equal(pq_fallback_measured(&f->fb, report(f, 95, 0.05), 10), PQ_OK);
    assert_int_equal(pq_fallback_next(&f->fb).kind, PQ_FB_NONE); /* 2 attempts made */
    assert_int_equal(pq_fallback_best(&f->fb), 1);
}

/* The budget's boundary in whole positions, worked by hand. */
static void test_within(void **state)
{
    (void)state;
    assert_true(pq_fallback_within(0.01, 3, 300));    /* 0.01 x 300 is 3 */
    assert_false(pq_fallback_within(0.01, 4, 300));
    assert_true(pq_fallback_within(0.001, 1, 1000));
    assert_false(pq_fallback_within(0.001, 2, 1000));
    assert_true(pq_fallback_within(0.0, 0, 50));
    assert_false(pq_fallback_within(0.0, 1, 50));
    assert_true(pq_fallback_within(0.0, -3, 50));     /* the model did better */
    assert_true(pq_fallback_within(NAN, 50, 50));     /* no budget */
    assert_true(pq_fallback_within(0.07, 7, 100));    /* 0.07 x 100 = 7.000000000000001 */
    assert_true(pq_fallback_within(0.29, 29, 100));   /* 0.29 x 100 = 28.999999999999996 */
}

/* The best attempt: the fewest positions lost, then the smaller KL, then
 * the earlier; the trail's numbers are the counts' ratios. */
static void test_best_and_trail(void **state)
{
    fixture *f = *state;
    set(&f->cfg, "allow_accuracy_drop", "0");
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    build_plan(f);
    const int64_t correct[] = {97, 98, 98, 96};
    const double kl[] = {0.1, 0.3, 0.2, 0.05};
    for (int k = 0; k < 4; k++) {
        if (k) {
            pq_fb_step s = pq_fallback_next(&f->fb);
            assert_int_equal(pq_fallback_apply(&f->fb, s, &f->cfg), PQ_OK);
            build_plan(f);
        }
        assert_int_equal(pq_fallback_measured(&f->fb, report(f, correct[k], kl[k]), 1000 + k), PQ_OK);
    }
    assert_int_equal(pq_fallback_best(&f->fb), 2); /* 2 lost like attempt 2, smaller KL */
    f->fb.attempts[2].written = true;
    char *text = pq_fallback_trail_json(&f->fb);
    json_error_t e;
    json_t *t = json_loads(text, 0, &e);
    free(text);
    assert_int_equal(json_array_size(t), 4);
    json_t *a = json_array_get(t, 2);
    assert_int_equal(json_integer_value(json_object_get(a, "attempt")), 3);
    assert_float_equal(json_real_value(json_object_get(a, "accuracy")), 0.098, 1e-15);
    assert_float_equal(json_real_value(json_object_get(a, "reference_accuracy")), 0.1, 1e-15);
    assert_float_equal(json_real_value(json_object_get(a, "drop")), 0.002, 1e-15);
    assert_float_equal(json_real_value(json_object_get(a, "kl")), 0.2, 0);
    assert_int_equal(json_integer_value(json_object_get(a, "bytes")), 1002);
    assert_true(json_is_true(json_object_get(a, "written")));
    assert_false(json_is_true(json_object_get(a, "accepted")));
    json_t *kept = json_object_get(a, "kept_float");
    assert_int_equal(json_array_size(kept), 2);
    assert_string_equal(json_string_value(json_array_get(kept, 0)),
                        "esm.encoder.layer.0.attention.self.query.weight");
    assert_string_equal(json_string_value(json_array_get(kept, 1)),
                        "esm.encoder.layer.1.attention.self.query.weight");
    json_t *r = json_object_get(a, "recipe");
    assert_string_equal(json_string_value(json_object_get(r, "precision")), "int8");
    assert_int_equal(json_integer_value(json_object_get(r, "group_size")), 0);
    assert_true(json_is_true(json_object_get(r, "symmetric")));
    assert_false(json_is_true(json_object_get(r, "per_channel")));
    json_decref(t);
}

/* Nothing masked: a configuration error, not a division by zero. */
static void test_nothing_masked(void **state)
{
    fixture *f = *state;
    set(&f->cfg, "allow_accuracy_drop", "0.01");
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    build_plan(f);
    pq_eval_report r = {.num_layers = L, .sqnr = f->sqnr};
    assert_int_equal(pq_fallback_measured(&f->fb, &r, 1), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "masked no position"));
}

static void test_override_errors(void **state)
{
    fixture *f = *state;
    assert_int_equal(pq_fallback_init(&f->fb, &f->cfg, 0), PQ_OK);
    assert_int_equal(pq_config_override(&f->cfg, "esm.no.such.weight", false, NULL, false), PQ_OK);
    pq_plan_tensor pt[N_T];
    for (int i = 0; i < N_T; i++) pt[i] = (pq_plan_tensor){.st = &k_st[i], .action = PQ_ACT_FLOAT};
    pq_plan p = {.n_tensors = N_T, .tensors = pt};
    pq_err_clear();
    assert_int_equal(pq_plan_apply_overrides(&f->cfg, &p), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "esm.no.such.weight"));
    pq_config_free(&f->cfg);
    assert_int_equal(pq_config_override(&f->cfg, k_st[T_LN1].name, true, &k_int4, false), PQ_OK);
    pq_err_clear();
    assert_int_equal(pq_plan_apply_overrides(&f->cfg, &p), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "2-D"));
    /* a second override of one tensor replaces the first */
    assert_int_equal(pq_config_override(&f->cfg, k_st[T_LN1].name, false, NULL, true), PQ_OK);
    assert_int_equal(f->cfg.n_overrides, 1);
    assert_int_equal(pq_plan_apply_overrides(&f->cfg, &p), PQ_OK);
    assert_true(pt[T_LN1].float16);
}

/* The two configuration keys: what they accept, what they refuse, and the
 * configuration's JSON. */
static void test_config_keys(void **state)
{
    fixture *f = *state;
    pq_config *c = &f->cfg;
    assert_false(pq_fallback_wanted(c));
    const char *bad_drop[] = {"2", "-0.01", "1.5", "abc", "", "0.01x", "nan", NULL};
    for (int i = 0; bad_drop[i]; i++) {
        pq_err_clear();
        assert_int_equal(pq_config_set(c, "allow_accuracy_drop", bad_drop[i]), PQ_ERR_CONFIG);
        assert_non_null(strstr(pq_err_detail(), "0.01 allows one percentage point"));
    }
    pq_err_clear();
    assert_int_equal(pq_config_set(c, "fallback_scheme", "fast"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "dynamic, static, weight-only"));
    /* set, then unset: the JSON names them only while they are set */
    const char *drop[] = {"1", "null"}, *scheme[] = {"weight-only", "none"};
    for (int k = 0; k < 2; k++) {
        set(c, "allow_accuracy_drop", drop[k]);
        set(c, "fallback_scheme", scheme[k]);
        assert_int_equal(pq_fallback_wanted(c), k == 0);
        char *j = pq_config_to_json(c);
        assert_int_equal(strstr(j, "\"allow_accuracy_drop\":1") != NULL, k == 0);
        assert_int_equal(strstr(j, "\"fallback_scheme\":\"weight-only\"") != NULL, k == 0);
        free(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_float_order_to_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calibration_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_attempts, setup, teardown),
        cmocka_unit_test(test_within),
        cmocka_unit_test_setup_teardown(test_best_and_trail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
