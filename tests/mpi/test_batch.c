/* SPDX-License-Identifier: Apache-2.0 */
/* test_batch.c - how worker/unit_batch.c cuts a rank's work into batches:
 * the batch width a plan gets, and the fill rule (the rank's chunks first,
 * then its units, until the batch's cost is twice what its threads need for
 * its largest item; width 1: chunks on their own, then one unit a batch),
 * on hand-worked plans, and the unit each width-1 batch reads ahead (the
 * pick's own next, not the plan's). No MPI calls: without shared
 * claims a rank's units are its planned ones, in plan order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/unit_batch.h"

/* Chunks c0 (rank 0), c1 (rank 1), c2, c3 (rank 0), cost 10 each; units
 * u0..u13 at cost 5, all rank 0's but u3 and u8 (rank 1's). */
static void fill_case(pq_plan *p, pq_hash_unit *h, pq_unit *u)
{
    const int chunk_rank[4] = {0, 1, 0, 0};
    for (int i = 0; i < 4; i++) h[i] = (pq_hash_unit){.chunk = i, .n_bytes = 4, .cost = 10, .rank = chunk_rank[i]};
    for (int i = 0; i < 14; i++) u[i] = (pq_unit){.id = i, .cost = 5, .rank = 0, .chunk = -1};
    u[3].rank = 1;
    u[8].rank = 1;
    *p = (pq_plan){.n_units = 14, .units = u, .n_hash = 4, .hash = h};
}

static void expect(const pq_unit_batch *b, const int *items, int n)
{
    assert_int_equal(b->n, n);
    for (int i = 0; i < n; i++) assert_int_equal(b->item[i], items[i]);
}

/* Width 2. Batch 1: c0, c2 (c1 is rank 1's), cost 20, largest 10, so units
 * until the cost reaches 2 x 2 x 10 = 40: four units (u0, u1, u2, u4; u3 is
 * rank 1's). Batch 2: c3 and six units (10 + 30 = 40): u5, u6, u7, u9,
 * u10, u11. Batch 3: u12, u13 (20 = 2 x 2 x 5 is reached with the second).
 * Then nothing. */
static void test_fill_rule(void **state)
{
    (void)state;
    pq_plan p;
    pq_hash_unit h[4];
    pq_unit u[14];
    fill_case(&p, h, u);
    pq_unit_batch b = {0};
    int next_chunk = 0, own = 0, taken = 0;

    pq_batch_fill(&b, &p, NULL, NULL, 0, 2, 2, &next_chunk, &own, &taken);
    const int b1[] = {PQ_BATCH_CHUNK(0), PQ_BATCH_CHUNK(2), 0, 1, 2, 4};
    expect(&b, b1, 6);
    b.n = 0;

    pq_batch_fill(&b, &p, NULL, NULL, 0, 2, 2, &next_chunk, &own, &taken);
    const int b2[] = {PQ_BATCH_CHUNK(3), 5, 6, 7, 9, 10, 11};
    expect(&b, b2, 7);
    b.n = 0;

    pq_batch_fill(&b, &p, NULL, NULL, 0, 2, 2, &next_chunk, &own, &taken);
    const int b3[] = {12, 13};
    expect(&b, b3, 2);
    b.n = 0;

    pq_batch_fill(&b, &p, NULL, NULL, 0, 2, 2, &next_chunk, &own, &taken);
    assert_int_equal(b.n, 0);
    assert_int_equal(taken, 0);
}

/* Rank 1 (width 3) gets its chunk c1 and its units u3, u8, then nothing:
 * a batch never holds another rank's planned work without shared claims. */
static void test_fill_other_rank(void **state)
{
    (void)state;
    pq_plan p;
    pq_hash_unit h[4];
    pq_unit u[14];
    fill_case(&p, h, u);
    pq_unit_batch b = {0};
    int next_chunk = 0, own = 0, taken = 0;
    pq_batch_fill(&b, &p, NULL, NULL, 1, 3, 3, &next_chunk, &own, &taken);
    const int b1[] = {PQ_BATCH_CHUNK(1), 3, 8};
    expect(&b, b1, 3);
    b.n = 0;
    pq_batch_fill(&b, &p, NULL, NULL, 1, 3, 3, &next_chunk, &own, &taken);
    assert_int_equal(b.n, 0);
}

/* Width 1 (units too large for a batch), two threads: the chunks two at a
 * time on their own (c0, c2; then c3), then one unit per batch in plan
 * order (u0, u1, u2, u4, ...; u3 and u8 are rank 1's). */
static void test_fill_width_one(void **state)
{
    (void)state;
    pq_plan p;
    pq_hash_unit h[4];
    pq_unit u[14];
    fill_case(&p, h, u);
    pq_unit_batch b = {0};
    int next_chunk = 0, own = 0, taken = 0;
    pq_batch_fill(&b, &p, NULL, NULL, 0, 1, 2, &next_chunk, &own, &taken);
    const int b1[] = {PQ_BATCH_CHUNK(0), PQ_BATCH_CHUNK(2)};
    expect(&b, b1, 2);
    b.n = 0;
    pq_batch_fill(&b, &p, NULL, NULL, 0, 1, 2, &next_chunk, &own, &taken);
    const int b2[] = {PQ_BATCH_CHUNK(3)};
    expect(&b, b2, 1);
    const int units[] = {0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13};
    for (int i = 0; i < 12; i++) {
        b.n = 0;
        pq_batch_fill(&b, &p, NULL, NULL, 0, 1, 2, &next_chunk, &own, &taken);
        expect(&b, &units[i], 1);
        assert_int_equal(b.next, i < 11 ? units[i + 1] : -1); /* the unit read ahead */
    }
    b.n = 0;
    pq_batch_fill(&b, &p, NULL, NULL, 0, 1, 2, &next_chunk, &own, &taken);
    assert_int_equal(b.n, 0);
}

/* A pick in an order of its own (as GPTQ's rounds: u13, u2, u9, u0, its
 * cursor a position in that list, not in the plan): each width-1 batch's
 * read-ahead hint is the unit that pick gives next, never the plan's. */
static const int k_round[] = {13, 2, 9, 0};

static int round_pick(void *user, const pq_plan *p, int rank, int *own, bool *stolen, int *next)
{
    (void)user;
    (void)p;
    (void)rank;
    *stolen = false;
    *next = *own + 1 < 4 ? k_round[*own + 1] : -1;
    return *own < 4 ? k_round[(*own)++] : -1;
}

static void test_fill_hint_of_pick(void **state)
{
    (void)state;
    pq_plan p;
    pq_hash_unit h[4];
    pq_unit u[14];
    fill_case(&p, h, u);
    p.n_hash = 0;
    pq_unit_batch b = {0};
    int next_chunk = 0, own = 0, taken = 0;
    for (int i = 0; i < 4; i++) {
        b.n = 0;
        pq_batch_fill(&b, &p, round_pick, NULL, 0, 1, 2, &next_chunk, &own, &taken);
        expect(&b, &k_round[i], 1);
        assert_int_equal(b.next, i < 3 ? k_round[i + 1] : -1);
    }
    b.n = 0;
    pq_batch_fill(&b, &p, round_pick, NULL, 0, 1, 2, &next_chunk, &own, &taken);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.next, -1);
}

/* The width: the thread count, at most PQ_BATCH_MAX, and 1 (row split) when
 * that many of the largest units exceed 1 GiB of input: 16 units of 64 MiB
 * are exactly 1 GiB, 17 are more. */
static void test_width(void **state)
{
    (void)state;
    pq_unit u[2] = {{.cost = 1 << 20}, {.cost = 64.0 * (1 << 20)}};
    pq_plan p = {.n_units = 2, .units = u};
    const int threads[] = {0, 1, 2, 16, 17}, want[] = {1, 1, 2, 16, 1};
    for (int i = 0; i < 5; i++) assert_int_equal(pq_batch_width(&p, threads[i]), want[i]);
    u[1].cost = 1 << 20; /* small units: capped, not split */
    assert_int_equal(pq_batch_width(&p, 1000), PQ_BATCH_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_rule),
        cmocka_unit_test(test_fill_other_rank),
        cmocka_unit_test(test_fill_width_one),
        cmocka_unit_test(test_fill_hint_of_pick),
        cmocka_unit_test(test_width),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
