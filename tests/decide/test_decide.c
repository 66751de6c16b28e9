/* SPDX-License-Identifier: Apache-2.0 */
/* test_decide.c - engine/decide on hand-built sensitivity tables: candidate
 * bytes, Spearman's rho, the knapsack and its front (optima worked out by
 * hand), each constraint of the search with a measuring function whose
 * numbers follow from the table, impossible constraints, bad tables. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decide/decide.h"
#include "decide/knapsack.h"
#include "decide/recipe_out.h"
#include "decide/table.h"

static void test_cand_bytes(void **state)
{
    (void)state;
    pq_cand c[5];
    /* 320 and 1280 columns: 128 does not divide 320, 64 does */
    assert_int_equal(pq_cand_defaults(320, c), 5);
    assert_int_equal(c[1].precision, 4);
    assert_int_equal(c[1].group_size, 64);
    /* int4 per-channel 320 x 320: 160 bytes of codes and one fp32 scale a row */
    assert_int_equal(pq_cand_bytes(&c[0], 320, 320), 320 * 160 + 320 * 4);
    /* int4 groups of 64 on 320 x 1280: 640 bytes of codes, 20 scales a row */
    assert_int_equal(pq_cand_bytes(&c[1], 320, 1280), 320 * 640 + 320 * 20 * 4);
    assert_int_equal(pq_cand_bytes(&c[2], 320, 320), 320 * 320 + 320 * 4);
    assert_int_equal(pq_cand_bytes(&c[3], 320, 320), 320 * 320 * 2);
    assert_int_equal(pq_cand_bytes(&c[4], 320, 320), 320 * 320 * 4);
    pq_cand a = {.precision = 8, .symmetric = false}; /* per-tensor, with a zero point */
    assert_int_equal(pq_cand_bytes(&a, 4, 10), 40 + 4 + 4);
    /* 96 columns: no group of 128, 64 or 32 above the width that divides... 32 does */
    assert_int_equal(pq_cand_defaults(96, c), 5);
    assert_int_equal(c[1].group_size, 32);
    assert_int_equal(pq_cand_defaults(100, c), 4); /* none divides 100 */
    assert_false(pq_cand_fits(&(pq_cand){.precision = 4, .group_size = 64}, 100));
}

static void test_spearman(void **state)
{
    (void)state;
    /* ranks of y with a tie: 1, 2, 3.5, 5, 3.5; rho = 8 / sqrt(10 * 9.5) */
    double x[] = {1, 2, 3, 4, 5}, y[] = {5, 6, 7, 8, 7};
    assert_float_equal(pq_spearman(x, y, 5), 8.0 / sqrt(95.0), 1e-12);
    double z[] = {50, 40, 30, 20, 10};
    assert_float_equal(pq_spearman(x, z, 5), -1.0, 1e-12);
    double k[] = {3, 3, 3, 3, 3};
    assert_true(isnan(pq_spearman(x, k, 5)));
    assert_true(isnan(pq_spearman(x, y, 1)));
}

/* Three Linears, candidates int4, int8, fp32 (worked out by hand below):
 *   L0: 10, 20, 40 bytes; KL 5, 1, 0
 *   L1: 10, 20, 40 bytes; KL 1, 0.5, 0
 *   L2: 20, 40, 80 bytes; KL 8, 2, 0 */
static void hand_table(pq_sens_table *t)
{
    static const int64_t bytes[3][3] = {{10, 20, 40}, {10, 20, 40}, {20, 40, 80}};
    static const double kl[3][3] = {{5, 1, 0}, {1, 0.5, 0}, {8, 2, 0}};
    assert_int_equal(pq_sens_table_alloc(t, 3, 3), PQ_OK);
    t->cands[0] = (pq_cand){.precision = 4, .per_channel = true, .symmetric = true};
    t->cands[1] = (pq_cand){.precision = 8, .per_channel = true, .symmetric = true};
    t->cands[2] = (pq_cand){.precision = 32};
    for (int i = 0; i < 3; i++) {
        snprintf(t->lin[i].tensor, sizeof t->lin[i].tensor, "esm.encoder.layer.%d.attention.self.query.weight", i);
        t->lin[i].layer = i;
        t->lin[i].rows = t->lin[i].cols = 8;
        for (int j = 0; j < 3; j++) {
            pq_sens_at(t, i, j)->bytes = bytes[i][j];
            pq_sens_at(t, i, j)->kl = kl[i][j];
            pq_sens_at(t, i, j)->d_loss = kl[i][j] / 2;
            pq_sens_at(t, i, j)->estimate = kl[i][j] * 3;
        }
    }
}

static void test_knapsack_budgets(void **state)
{
    (void)state;
    pq_sens_table t;
    hand_table(&t);
    int ch[3];
    int64_t b;
    double cost;
    /* 50 bytes: 10 to spare, L0 to int8 (-4) */
    assert_int_equal(pq_knapsack_solve(&t, 50, 4096, ch, &b, &cost), PQ_OK);
    assert_int_equal(ch[0], 1); assert_int_equal(ch[1], 0); assert_int_equal(ch[2], 0);
    assert_int_equal(b, 50); assert_float_equal(cost, 10, 1e-12);
    /* 60: L2 to int8 (-6) beats L0 and L1 to int8 (-4.5) */
    assert_int_equal(pq_knapsack_solve(&t, 60, 4096, ch, &b, &cost), PQ_OK);
    assert_int_equal(ch[0], 0); assert_int_equal(ch[1], 0); assert_int_equal(ch[2], 1);
    assert_float_equal(cost, 8, 1e-12);
    /* 69: still 60's choice (70's needs 30 to spare) */
    assert_int_equal(pq_knapsack_solve(&t, 69, 4096, ch, &b, &cost), PQ_OK);
    assert_int_equal(b, 60);
    /* 70: L0 and L2 to int8 (-10) beats L0 to fp32 (-5) */
    assert_int_equal(pq_knapsack_solve(&t, 70, 4096, ch, &b, &cost), PQ_OK);
    assert_int_equal(ch[0], 1); assert_int_equal(ch[1], 0); assert_int_equal(ch[2], 1);
    assert_float_equal(cost, 4, 1e-12);
    /* plenty: everything fp32 */
    assert_int_equal(pq_knapsack_solve(&t, 1000, 4096, ch, &b, &cost), PQ_OK);
    assert_int_equal(b, 160); assert_float_equal(cost, 0, 0);
    /* below the smallest choice (40) */
    pq_err_clear();
    assert_int_equal(pq_knapsack_solve(&t, 39, 4096, ch, &b, &cost), PQ_ERR_ACCURACY);
    assert_non_null(strstr(pq_err_detail(), "smallest choice takes 40"));
    pq_sens_table_free(&t);
}

static void test_knapsack_front(void **state)
{
    (void)state;
    pq_sens_table t;
    hand_table(&t);
    pq_front_pt *f;
    int n;
    /* by hand: every 10 bytes to spare buys this much (costs strictly falling) */
    static const int64_t eb[] = {40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 160};
    static const double ec[] = {14, 10, 8, 4, 3.5, 3, 2.5, 2, 1.5, 1, 0.5, 0};
    assert_int_equal(pq_knapsack_front(&t, 4096, &f, &n), PQ_OK);
    assert_int_equal(n, 12);
    for (int k = 0; k < n; k++) {
        assert_int_equal(f[k].bytes, eb[k]);
        assert_float_equal(f[k].cost, ec[k], 1e-12);
    }
    pq_front_free(f, n);
    pq_sens_table_free(&t);
}

/* A measuring function whose numbers follow the table: the accuracy drop
 * in points is the summed KL, the file holds 5 bytes beside the cells, and
 * the speedup is 1 + (160 - cell bytes) / 40. */
typedef struct fake {
    int calls;
} fake;

static pq_status fake_measure(void *user, const pq_sens_table *t, pq_measured *m)
{
    fake *f = user;
    f->calls++;
    int64_t b = 0;
    double cost = 0;
    for (int i = 0; i < t->n_linears; i++) {
        b += pq_sens_at(t, i, m->choice[i])->bytes;
        cost += pq_sens_at(t, i, m->choice[i])->kl;
    }
    m->bytes = b + 5;
    m->ref_accuracy = 0.5;
    m->accuracy = 0.5 - cost / 100.0;
    m->kl = cost;
    m->ref_tokens_per_s = 100;
    m->tokens_per_s = 100 * (1 + (160 - b) / 40.0);
    return PQ_OK;
}

static const pq_measured *decide(const pq_constraints *c, pq_decision *d, fake *f)
{
    pq_sens_table t;
    hand_table(&t);
    assert_int_equal(pq_decide(&t, c, 4096, fake_measure, f, d), PQ_OK);
    pq_sens_table_free(&t);
    return d->chosen >= 0 ? &d->m[d->chosen] : NULL;
}

static void test_decide_max_size(void **state)
{
    (void)state;
    pq_decision d;
    fake f = {0};
    /* files up to 75 bytes: cells up to 70, the best of which costs 4 */
    const pq_measured *m = decide(&(pq_constraints){.max_size = 75, .max_drop = -1}, &d, &f);
    assert_non_null(m);
    assert_int_equal(m->bytes, 75);
    assert_float_equal(pq_measured_drop_points(m), 4, 1e-9);
    assert_int_equal(m->choice[0], 1); assert_int_equal(m->choice[1], 0); assert_int_equal(m->choice[2], 1);
    pq_decision_free(&d);
}

static void test_decide_max_drop(void **state)
{
    (void)state;
    pq_decision d;
    fake f = {0};
    /* at most 2.2 points: the smallest point costing <= 2.2 is 110 bytes (2) */
    const pq_measured *m = decide(&(pq_constraints){.max_drop = 2.2}, &d, &f);
    assert_non_null(m);
    assert_int_equal(m->bytes, 115);
    assert_float_equal(pq_measured_drop_points(m), 2, 1e-9);
    /* bisection: 2 uniform candidates and at most ceil(log2(12)) + 1 front points */
    assert_true(f.calls <= 2 + 5);
    pq_decision_free(&d);
}

static void test_decide_min_speedup(void **state)
{
    (void)state;
    pq_decision d;
    fake f = {0};
    /* 2.5x: cells at most 100 bytes; the most accurate of those costs 2.5 */
    const pq_measured *m = decide(&(pq_constraints){.max_drop = -1, .min_speedup = 2.5}, &d, &f);
    assert_non_null(m);
    assert_int_equal(m->bytes, 105);
    assert_float_equal(pq_measured_speedup(m), 2.5, 1e-9);
    pq_decision_free(&d);
}

static void test_decide_combined(void **state)
{
    (void)state;
    pq_decision d;
    fake f = {0};
    /* at most 4 points and 90 bytes: 70 (4), 80 (3.5) fit both; the smallest wins */
    const pq_measured *m = decide(&(pq_constraints){.max_size = 90, .max_drop = 4}, &d, &f);
    assert_non_null(m);
    assert_int_equal(m->bytes, 75);
    pq_decision_free(&d);
}

/* fake_measure, with a lucky accuracy (+20 points) for the all-int4 file */
static pq_status lucky_measure(void *user, const pq_sens_table *t, pq_measured *m)
{
    pq_status st = fake_measure(user, t, m);
    if (m->bytes == 45) m->accuracy += 0.2;
    return st;
}

static void test_decide_objective(void **state)
{
    (void)state;
    pq_decision d;
    fake f = {0};
    pq_sens_table t;
    hand_table(&t);
    /* under 75 bytes: the most accurate is the lucky all-int4 file (45) */
    pq_constraints c = {.max_size = 75, .max_drop = -1};
    assert_int_equal(pq_decide(&t, &c, 4096, lucky_measure, &f, &d), PQ_OK);
    assert_int_equal(d.m[d.chosen].bytes, 45);
    pq_decision_free(&d);
    /* by KL: the 75-byte file (KL 4 against 14) */
    c.by_kl = true;
    assert_int_equal(pq_decide(&t, &c, 4096, lucky_measure, &f, &d), PQ_OK);
    assert_int_equal(d.m[d.chosen].bytes, 75);
    assert_float_equal(d.m[d.chosen].kl, 4, 1e-12);
    pq_decision_free(&d);
    pq_sens_table_free(&t);
}

static void test_decide_impossible(void **state)
{
    (void)state;
    pq_decision d;
    fake f = {0};
    /* smaller than the smallest file (45) */
    assert_null(decide(&(pq_constraints){.max_size = 30, .max_drop = -1}, &d, &f));
    assert_int_equal(d.n_unmet, 1);
    assert_non_null(strstr(d.unmet[0], "--max-size 30 bytes"));
    pq_decision_free(&d);
    /* 75 bytes allow at best 4 points: 1 point cannot be had with it */
    assert_null(decide(&(pq_constraints){.max_size = 75, .max_drop = 1}, &d, &f));
    assert_true(d.n_unmet >= 1);
    assert_true(strstr(d.unmet[0], "--max-drop 1 points") || strstr(d.unmet[0], "--max-size 75"));
    pq_decision_free(&d);
    /* faster than everything (at most 4x) */
    assert_null(decide(&(pq_constraints){.max_drop = -1, .min_speedup = 5}, &d, &f));
    assert_non_null(strstr(d.unmet[0], "--min-speedup 5"));
    pq_decision_free(&d);
    /* no constraint at all */
    pq_sens_table t;
    hand_table(&t);
    assert_int_equal(pq_decide(&t, &(pq_constraints){.max_drop = -1}, 4096, fake_measure, &f, &d), PQ_ERR_CONFIG);
    pq_decision_free(&d);
    pq_sens_table_free(&t);
}

static void test_table_json(void **state)
{
    (void)state;
    pq_sens_table t, u;
    hand_table(&t);
    json_t *a = pq_sens_table_to_json(&t);
    assert_non_null(a);
    assert_int_equal(pq_sens_table_from_json(a, "t.json", &u), PQ_OK);
    assert_int_equal(u.n_linears, 3);
    assert_int_equal(u.n_cands, 3);
    assert_memory_equal(u.cands, t.cands, sizeof t.cands[0] * 3);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            assert_int_equal(pq_sens_at(&u, i, j)->bytes, pq_sens_at(&t, i, j)->bytes);
            assert_float_equal(pq_sens_at(&u, i, j)->kl, pq_sens_at(&t, i, j)->kl, 0);
        }
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "linear")), "q");
    pq_sens_table_free(&u);
    /* bad entries: each named */
    json_t *c = json_object_get(json_array_get(json_object_get(json_array_get(a, 1), "candidates"), 0), "recipe");
    json_object_set_new(c, "precision", json_string("int3"));
    pq_err_clear();
    assert_int_equal(pq_sens_table_from_json(a, "t.json", &u), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "sensitivity[1].candidates[0]: precision 'int3'"));
    json_object_set_new(c, "precision", json_string("int8"));
    pq_err_clear();
    assert_int_equal(pq_sens_table_from_json(a, "t.json", &u), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "another recipe than sensitivity[0]'s"));
    json_object_set_new(c, "precision", json_string("int4"));
    json_object_set_new(json_array_get(json_object_get(json_array_get(a, 2), "candidates"), 1), "kl",
                        json_real(-1));
    pq_err_clear();
    assert_int_equal(pq_sens_table_from_json(a, "t.json", &u), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "sensitivity[2].candidates[1]"));
    json_t *empty = json_array();
    assert_int_equal(pq_sens_table_from_json(empty, "t.json", &u), PQ_ERR_CONFIG);
    json_decref(empty);
    json_decref(a);
    pq_sens_table_free(&t);
}

static void test_recipe_json(void **state)
{
    (void)state;
    pq_sens_table t;
    hand_table(&t);
    int ch[3] = {0, 2, 1};
    json_t *r = pq_recipe_json(&t, ch), *rules = json_object_get(r, "rules");
    assert_int_equal(json_array_size(rules), 3);
    json_t *r0 = json_array_get(rules, 0), *r1 = json_array_get(rules, 1);
    assert_string_equal(json_string_value(json_object_get(r0, "precision")), "int4");
    assert_true(json_is_true(json_object_get(r0, "per_channel")));
    assert_string_equal(json_string_value(json_object_get(r0, "tensors")),
                        "esm.encoder.layer.0.attention.self.query.weight");
    /* float rules carry the precision alone (recipe.h refuses the rest) */
    assert_string_equal(json_string_value(json_object_get(r1, "precision")), "fp32");
    assert_int_equal(json_object_size(r1), 2);
    json_decref(r);
    pq_sens_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cand_bytes),       cmocka_unit_test(test_spearman),
        cmocka_unit_test(test_knapsack_budgets), cmocka_unit_test(test_knapsack_front),
        cmocka_unit_test(test_decide_max_size),  cmocka_unit_test(test_decide_max_drop),
        cmocka_unit_test(test_decide_min_speedup), cmocka_unit_test(test_decide_combined),
        cmocka_unit_test(test_decide_objective),
        cmocka_unit_test(test_decide_impossible), cmocka_unit_test(test_table_json),
        cmocka_unit_test(test_recipe_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
