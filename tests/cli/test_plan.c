/* SPDX-License-Identifier: Apache-2.0 */
/* test_plan.c - the assignment of digest chunks and units to ranks
 * (plan.h): hand-worked cases, each unit's chunk recomputed from the
 * checkpoint's byte offsets, and the balance bound on a real plan; a
 * recipe file's rules resolved per tensor (pipeline/recipe.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pipeline/plan.h"
#include "t6_fixture.h"

static char g_dir[256], g_model[300];

static int setup(void **state)
{
    (void)state;
    return pq_t6_fixture_make("plan", 5, g_dir, g_model);
}

static int teardown(void **state)
{
    (void)state;
    return pq_t6_fixture_remove(g_dir);
}

/* A plan of bare units and chunks: the assignment reads only their costs
 * and the units' chunks. */
static pq_plan bare(pq_unit *u, int nu, pq_hash_unit *h, int nh)
{
    return (pq_plan){.n_units = nu, .units = u, .n_hash = nh, .hash = h};
}

/* Worked by hand. Chunks c0, c1 cost 10 each; units u0 (in c1, 8), u1 (in
 * c0, 7), u2 (in c1, 3), u3 (in c0, 2); mean load (40) / 2 = 20.
 * Chunks: c0 -> r0, c1 -> r1 (10, 10). Units, largest first: u0 -> r1 (its
 * chunk's rank, 18), u1 -> r0 (17), u2: r1 would reach 21 > 20, so the
 * least-loaded r0 (20); u3: r0 would reach 22, so r1 (20). One joint
 * largest-first pass would instead put u0 on r0, away from its chunk. */
static void test_units_follow_their_chunk(void **state)
{
    (void)state;
    pq_hash_unit h[2] = {{.chunk = 0, .cost = 10}, {.chunk = 1, .cost = 10}};
    pq_unit u[4] = {{.id = 0, .chunk = 1, .cost = 8}, {.id = 1, .chunk = 0, .cost = 7},
                    {.id = 2, .chunk = 1, .cost = 3}, {.id = 3, .chunk = 0, .cost = 2}};
    pq_plan p = bare(u, 4, h, 2);
    pq_plan_assign(&p, 2);
    assert_int_equal(h[0].rank, 0);
    assert_int_equal(h[1].rank, 1);
    assert_int_equal(u[0].rank, 1);
    assert_int_equal(u[1].rank, 0);
    assert_int_equal(u[2].rank, 0);
    assert_int_equal(u[3].rank, 1);
    /* u0 and u1 (15 of 20) run where their chunk was hashed */
    assert_float_equal(pq_plan_colocated(&p), 15.0 / 20.0, 1e-12);
}

/* Rank 0 preloaded with 15; chunk c0 (10), units u0 (6), u1 (5), both in
 * c0; mean (15 + 21) / 2 = 18. c0 -> r1 (the least loaded, 10); u0 -> r1
 * (16); u1: r1 would reach 21 > 18, so r0 (15 < 16: 20). */
static void test_preload_moves_the_overflow(void **state)
{
    (void)state;
    pq_hash_unit h[1] = {{.chunk = 0, .cost = 10}};
    pq_unit u[2] = {{.id = 0, .chunk = 0, .cost = 6}, {.id = 1, .chunk = 0, .cost = 5}};
    pq_plan p = bare(u, 2, h, 1);
    const double pre[2] = {15, 0};
    pq_plan_assign_loaded(&p, 2, pre);
    assert_int_equal(h[0].rank, 1);
    assert_int_equal(u[0].rank, 1);
    assert_int_equal(u[1].rank, 0);
}

/* Units without a chunk (a plan with no digest) are balanced by cost alone:
 * 5, 4, 3, 3 on 2 ranks -> r0 5, r1 4, r1 7, r0 8. */
static void test_units_without_chunks(void **state)
{
    (void)state;
    pq_unit u[4] = {{.id = 0, .chunk = -1, .cost = 5}, {.id = 1, .chunk = -1, .cost = 4},
                    {.id = 2, .chunk = -1, .cost = 3}, {.id = 3, .chunk = -1, .cost = 3}};
    pq_plan p = bare(u, 4, NULL, 0);
    pq_plan_assign(&p, 2);
    assert_int_equal(u[0].rank, 0);
    assert_int_equal(u[1].rank, 1);
    assert_int_equal(u[2].rank, 1);
    assert_int_equal(u[3].rank, 0);
    assert_float_equal(pq_plan_colocated(&p), 1.0, 0);
}

/* A real plan: t6 cut into 256 KiB units and 1 MiB digest chunks. */
static void test_real_plan(void **state)
{
    (void)state;
    const int64_t chunk = 1 << 20;
    pq_st_model *m = NULL;
    pq_plan *p = NULL;
    pq_config c;
    pq_config_defaults(&c);
    c.per_channel = true;
    assert_int_equal(pq_st_open(g_model, &m), PQ_OK);
    assert_int_equal(pq_plan_build(m, &c, 256 << 10, &p), PQ_OK);
    assert_int_equal(pq_plan_set_hash_chunks(p, m, chunk), PQ_OK);
    size_t file_bytes;
    pq_st_file_map(m, 0, &file_bytes);
    assert_int_equal(p->n_hash, (int)((file_bytes + chunk - 1) / chunk));
    assert_true(p->n_units > 2 * p->n_hash);

    /* each unit's chunk, from the file offset of the middle of its rows */
    for (int i = 0; i < p->n_units; i++) {
        const pq_unit *u = &p->units[i];
        const pq_st_tensor *t = p->tensors[u->tensor].st;
        const uint64_t row = t->n_bytes / (uint64_t)t->shape[0];
        const uint64_t mid = t->offset + row * (uint64_t)u->row0 + row * (uint64_t)u->n_rows / 2;
        assert_int_equal(u->chunk, (int)(mid / chunk));
    }

    for (int n = 1; n <= 6; n++) {
        pq_plan_assign(p, n);
        double load[6] = {0}, total = 0, largest = 0;
        for (int i = 0; i < p->n_units; i++) {
            assert_in_range(p->units[i].rank, 0, n - 1);
            load[p->units[i].rank] += p->units[i].cost;
            largest = p->units[i].cost > largest ? p->units[i].cost : largest;
        }
        for (int i = 0; i < p->n_hash; i++) {
            assert_in_range(p->hash[i].rank, 0, n - 1);
            load[p->hash[i].rank] += p->hash[i].cost;
            largest = p->hash[i].cost > largest ? p->hash[i].cost : largest;
        }
        for (int r = 0; r < n; r++) total += load[r];
        for (int r = 0; r < n; r++) assert_true(load[r] <= total / n + largest);
        if (n == 1) assert_float_equal(pq_plan_colocated(p), 1.0, 0);
    }
    pq_plan_destroy(p);
    pq_st_close(m);
    pq_config_free(&c);
}

/* The tensor of plan p named `name`. */
static const pq_plan_tensor *tensor_of(const pq_plan *p, const char *name)
{
    for (int i = 0; i < p->n_tensors; i++)
        if (!strcmp(p->tensors[i].st->name, name)) return &p->tensors[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

/* A recipe over --per-channel int8 defaults: the first matching rule wins
 * (layer 0's fc1 is int8 by rule 1, the other fc1 int4 groups by rule 2),
 * fp16 tensors become float, and per-tensor scales keep a tensor in one
 * unit where channel scales cut the same shape into 256 KiB units. */
static void test_recipe_first_match_wins(void **state)
{
    (void)state;
    char recipe[320];
    snprintf(recipe, sizeof recipe, "%s/recipe.json", g_dir);
    FILE *f = fopen(recipe, "w");
    assert_non_null(f);
    fputs("{\"rules\": [{\"layers\": 0, \"linears\": \"fc1\", \"precision\": \"int8\", \"symmetric\": false},\n"
          " {\"linears\": \"fc1\", \"precision\": \"int4\", \"group_size\": 64},\n"
          " {\"layers\": \"1-2\", \"linears\": [\"q\", \"k\"], \"precision\": \"fp16\"},\n"
          " {\"tensors\": \"esm.encoder.layer.3.attention.output.dense.weight\", \"per_channel\": false}]}\n", f);
    fclose(f);
    pq_st_model *m = NULL;
    pq_plan *p = NULL;
    pq_config c;
    pq_config_defaults(&c);
    c.per_channel = true;
    assert_int_equal(pq_config_set(&c, "recipe", recipe), PQ_OK);
    assert_int_equal(pq_st_open(g_model, &m), PQ_OK);
    assert_int_equal(pq_plan_build(m, &c, 256 << 10, &p), PQ_OK);
    const pq_plan_tensor *t = tensor_of(p, "esm.encoder.layer.0.intermediate.dense.weight");
    assert_int_equal(t->action, PQ_ACT_QUANT);
    assert_int_equal(t->spec.bits, 8);
    assert_int_equal(t->spec.gran, PQ_GRAN_CHANNEL);
    assert_false(t->spec.symmetric);
    t = tensor_of(p, "esm.encoder.layer.4.intermediate.dense.weight");
    assert_int_equal(t->spec.bits, 4);
    assert_int_equal(t->spec.gran, PQ_GRAN_GROUP);
    assert_int_equal(t->spec.group_size, 64);
    assert_true(t->spec.symmetric);
    t = tensor_of(p, "esm.encoder.layer.2.attention.self.key.weight");
    assert_int_equal(t->action, PQ_ACT_FLOAT);
    assert_true(t->float16);
    assert_int_equal(t->n_units, 0);
    t = tensor_of(p, "esm.encoder.layer.2.attention.self.value.weight");
    assert_int_equal(t->spec.bits, 8);
    assert_int_equal(t->spec.gran, PQ_GRAN_CHANNEL);
    assert_int_equal(t->n_units, 2); /* 320 x 320 fp32 = 400 KiB in 256 KiB units */
    t = tensor_of(p, "esm.encoder.layer.3.attention.output.dense.weight");
    assert_int_equal(t->spec.gran, PQ_GRAN_TENSOR);
    assert_int_equal(t->n_units, 1);
    assert_false(tensor_of(p, "esm.encoder.layer.3.attention.LayerNorm.weight")->float16);
    pq_plan_destroy(p);
    pq_st_close(m);
    pq_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_follow_their_chunk),
        cmocka_unit_test(test_preload_moves_the_overflow),
        cmocka_unit_test(test_units_without_chunks),
        cmocka_unit_test(test_real_plan),
        cmocka_unit_test(test_recipe_first_match_wins),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
