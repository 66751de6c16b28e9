/* SPDX-License-Identifier: Apache-2.0 */
/* test_sens.c - decide/sens.h on a synthetic t6 checkpoint: a unit run
 * from its layer's kept input (cache_layers) gives the same bits as the
 * whole forward, for a unit of every layer and candidates of each kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "decide/sens.h"
#include "t6_fixture.h"

static char g_dir[256], g_model[300], g_fasta[320];
static const char *const k_seqs[] = {"MKTAYIAKQRQISFVKSHFSRQ", "GSHMLLKDE", "ACDEFGHIKLMNPQRSTVWYACDEFGHIKL"};

static int setup(void **state)
{
    (void)state;
    if (pq_t6_fixture_make("sens", 7, g_dir, g_model)) return -1;
    snprintf(g_fasta, sizeof g_fasta, "%s/seqs.fasta", g_dir);
    FILE *f = fopen(g_fasta, "w");
    if (!f) return -1;
    for (int i = 0; i < 3; i++) fprintf(f, ">s%d\n%s\n", i, k_seqs[i]);
    return fclose(f);
}

static int teardown(void **state)
{
    (void)state;
    return pq_t6_fixture_remove(g_dir);
}

static void test_from_layer_same_bits(void **state)
{
    (void)state;
    pq_sens_opts o = {.model = g_model, .fasta = g_fasta, .max_length = 1022, .batch_tokens = 40, .seed = 3,
                      .mask_frac = 0.15, .model_opts = {.n_threads = 1}};
    pq_sens *whole = NULL, *from = NULL;
    assert_int_equal(pq_sens_open(&o, &whole), PQ_OK);
    o.cache_layers = true;
    assert_int_equal(pq_sens_open(&o, &from), PQ_OK);
    pq_cand cands[3] = {{.precision = 4, .group_size = 0}, {.precision = 8, .group_size = 0}, {.precision = 16}};
    pq_sens_table t;
    assert_int_equal(pq_sens_layout(whole, cands, 3, &t), PQ_OK);
    int n = pq_sens_n_units(&t);
    assert_int_equal(n, 36 * 3);
    /* a unit of each layer, each Linear and each candidate somewhere */
    for (int u = 0; u < n; u += 7) {
        pq_sens_cell a, b;
        assert_int_equal(pq_sens_measure(whole, &t, u, &a), PQ_OK);
        assert_int_equal(pq_sens_measure(from, &t, u, &b), PQ_OK);
        assert_true(memcmp(&a, &b, sizeof a) == 0);
        if (u % 3 == 0) assert_true(a.kl > 0); /* int4 changes the logits */
    }
    pq_sens_table_free(&t);
    pq_sens_close(whole);
    pq_sens_close(from);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_from_layer_same_bits)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
