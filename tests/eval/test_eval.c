/* SPDX-License-Identifier: Apache-2.0 */
/* test_eval.c - engine/eval: the comparison loop (a model against itself
 * gives KL 0, cosines 1, the same masked-LM tallies and SQNR +inf; against
 * another model a positive KL), the masked-LM loop (counts by the masking
 * rule, independent of the batch size), the embedding loop (means of the
 * rows it hands out, layer indices) and the masked-LM numbers on a
 * hand-computed case, on a synthetic t6 and a three-record FASTA. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/compare.h"
#include "eval/embed.h"
#include "eval/score.h"
#include "model/batch.h"
#include "t6_fixture.h"

static char g_dir[256], g_model[300], g_other_dir[256], g_other[300], g_fasta[320];
/* residues of the three records */
static const char *const k_seqs[] = {"MKTAYIAKQRQISFVKSHFSRQ", "GSHMLLKDE", "ACDEFGHIKLMNPQRSTVWYACDEFGHIKL"};
#define N_SEQS 3

static int setup(void **state)
{
    (void)state;
    if (pq_t6_fixture_make("eval", 5, g_dir, g_model) || pq_t6_fixture_make("eval2", 6, g_other_dir, g_other))
        return -1;
    snprintf(g_fasta, sizeof g_fasta, "%s/seqs.fasta", g_dir);
    FILE *f = fopen(g_fasta, "w");
    if (!f) return -1;
    for (int i = 0; i < N_SEQS; i++) fprintf(f, ">s%d\n%s\n", i, k_seqs[i]);
    return fclose(f);
}

static int teardown(void **state)
{
    (void)state;
    return pq_t6_fixture_remove(g_dir) | pq_t6_fixture_remove(g_other_dir);
}

static int64_t total_tokens(void)
{
    int64_t n = 0;
    for (int i = 0; i < N_SEQS; i++) n += (int64_t)strlen(k_seqs[i]) + 2;
    return n;
}

/* Masked positions of record i under the documented rule. */
static int64_t masked_by_rule(int i, uint64_t seed, double frac)
{
    int64_t n = (int64_t)strlen(k_seqs[i]), hits = 0;
    for (int64_t p = 0; p < n; p++) hits += pq_mask_uniform(seed, (uint64_t)i, (uint64_t)p) < frac;
    return hits ? hits : 1;
}

static pq_eval_compare_opts compare_opts(const char *model, const char *reference)
{
    return (pq_eval_compare_opts){.model = model, .reference = reference, .fasta = g_fasta, .max_length = 1022,
                                  .batch_tokens = 40, .seed = 3, .mask_frac = 0.15,
                                  .model_opts = {.n_threads = 1}, .reference_opts = {.n_threads = 1}};
}

static void test_compare_self(void **state)
{
    (void)state;
    pq_eval_compare_opts o = compare_opts(g_model, g_model);
    pq_eval_report r;
    assert_int_equal(pq_eval_compare(&o, &r), PQ_OK);
    assert_int_equal(r.n_sequences, N_SEQS);
    assert_int_equal(r.n_tokens, total_tokens());
    assert_int_equal(r.n_positions, total_tokens() - 2 * N_SEQS);
    assert_int_equal(r.num_layers, 6);
    assert_true(r.kl_mean == 0.0 && r.kl_max == 0.0);
    assert_true(fabs(r.logits_cosine_mean - 1.0) < 1e-12);
    assert_true(fabs(r.embedding_cosine_mean - 1.0) < 1e-12);
    int64_t masked = 0;
    for (int i = 0; i < N_SEQS; i++) masked += masked_by_rule(i, 3, 0.15);
    assert_int_equal(r.ref.mlm.n_masked, masked);
    assert_int_equal(r.q.mlm.n_masked, masked);
    assert_int_equal(r.ref.mlm.n_correct, r.q.mlm.n_correct);
    assert_true(r.ref.mlm.nll == r.q.mlm.nll);
    assert_int_equal(r.ref.weight_bytes, r.q.weight_bytes);
    assert_true(r.ref.file_bytes > 0 && r.ref.file_bytes == r.q.file_bytes);
    for (int l = 0; l < 6; l++)
        for (int s = 0; s < PQ_EVAL_N_SITES - 1; s++) assert_true(isinf(pq_eval_report_sqnr_db(&r, l, s)));
    assert_true(isinf(pq_eval_report_sqnr_db(&r, 6, PQ_EVAL_N_SITES - 1)));
    assert_string_equal(pq_eval_site_name(4), "fc1");
    pq_eval_report_free(&r);
}

static void test_compare_other(void **state)
{
    (void)state;
    pq_eval_compare_opts o = compare_opts(g_other, g_model);
    pq_eval_report r;
    assert_int_equal(pq_eval_compare(&o, &r), PQ_OK);
    assert_true(r.kl_mean > 0 && r.kl_max >= r.kl_mean);
    assert_true(r.logits_cosine_mean < 1.0);
    assert_int_equal(r.ref.mlm.n_masked, r.q.mlm.n_masked);
    double db = pq_eval_report_sqnr_db(&r, 0, 0);
    assert_true(isfinite(db));
    pq_eval_report_free(&r);
}

static void test_score_batches(void **state)
{
    (void)state;
    pq_esm2_model_opts mo = {.n_threads = 1};
    pq_esm2_model *m = NULL;
    pq_fasta_opts fo = pq_fasta_defaults();
    pq_fasta_record *recs = NULL;
    int64_t n = 0, tok_a, tok_b;
    assert_int_equal(pq_esm2_model_open(g_model, &mo, &m), PQ_OK);
    assert_int_equal(pq_fasta_read_all(g_fasta, &fo, 0, &recs, &n), PQ_OK);
    pq_eval_mlm a[N_SEQS] = {0}, b[N_SEQS] = {0};
    pq_eval_score_opts so = {.seed = 9, .mask_frac = 0.3, .batch_tokens = 3};
    assert_int_equal(pq_eval_score(m, recs, n, &so, a, &tok_a), PQ_OK);
    so.batch_tokens = 4096;
    assert_int_equal(pq_eval_score(m, recs, n, &so, b, &tok_b), PQ_OK);
    assert_int_equal(tok_a, total_tokens());
    assert_int_equal(tok_b, total_tokens());
    for (int i = 0; i < N_SEQS; i++) {
        assert_int_equal(a[i].n_masked, masked_by_rule(i, 9, 0.3));
        assert_int_equal(a[i].n_masked, b[i].n_masked);
        assert_int_equal(a[i].n_correct, b[i].n_correct);
        assert_true(fabs(a[i].nll - b[i].nll) < 1e-6 * fabs(a[i].nll));
    }
    for (int64_t i = 0; i < n; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
}

typedef struct embed_check {
    int calls;
    double worst; /* largest |mean - mean of the rows| */
    int64_t lengths[N_SEQS];
} embed_check;

static pq_status check_sink(void *user, int64_t seq, int li, const float *mean, const float *rows, int64_t n_res,
                            int64_t D)
{
    embed_check *c = user;
    (void)li;
    c->calls++;
    c->lengths[seq] = n_res;
    for (int64_t d = 0; d < D; d++) {
        double s = 0;
        for (int64_t t = 0; t < n_res; t++) s += rows[t * D + d];
        double e = fabs(s / (double)n_res - mean[d]);
        if (e > c->worst) c->worst = e;
    }
    return PQ_OK;
}

static void test_embed(void **state)
{
    (void)state;
    int req[3] = {0, -1, 3}, layers[3];
    assert_int_equal(pq_eval_embed_layers(req, 3, 6, layers), PQ_OK);
    assert_int_equal(layers[0], 0);
    assert_int_equal(layers[1], 6);
    assert_int_equal(layers[2], 3);
    int bad[2] = {7, 0}, twice[2] = {6, -1};
    assert_int_equal(pq_eval_embed_layers(bad, 1, 6, layers), PQ_ERR_CONFIG);
    assert_int_equal(pq_eval_embed_layers(twice, 2, 6, layers), PQ_ERR_CONFIG);

    pq_esm2_model_opts mo = {.n_threads = 1};
    pq_esm2_model *m = NULL;
    pq_fasta_opts fo = pq_fasta_defaults();
    pq_fasta_record *recs = NULL;
    int64_t n = 0;
    assert_int_equal(pq_esm2_model_open(g_model, &mo, &m), PQ_OK);
    assert_int_equal(pq_fasta_read_all(g_fasta, &fo, 0, &recs, &n), PQ_OK);
    int two[2] = {0, 6};
    embed_check c = {0};
    pq_eval_embed_opts eo = {.layers = two, .n_layers = 2, .batch_tokens = 40};
    assert_int_equal(pq_eval_embed(m, recs, n, &eo, check_sink, &c), PQ_OK);
    assert_int_equal(c.calls, 2 * N_SEQS);
    assert_true(c.worst < 1e-5);
    for (int i = 0; i < N_SEQS; i++) assert_int_equal(c.lengths[i], (int64_t)strlen(k_seqs[i]));
    for (int64_t i = 0; i < n; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
}

/* Two positions, V = 3: logits (0, ln 2, 0) true id 1 (argmax, p = 1/2) and
 * (0, 0, 0) true id 2 (argmax 0, p = 1/3): accuracy 1/2, perplexity
 * exp((ln 2 + ln 3) / 2) = sqrt(6); the unmasked third position counts not. */
static void test_mlm_by_hand(void **state)
{
    (void)state;
    const float logits[9] = {0, (float)log(2.0), 0, 0, 0, 0, 5, 0, 0};
    const int32_t orig[3] = {1, 2, -1};
    pq_eval_mlm s = {0};
    pq_eval_mlm_add(&s, logits, orig, 3, 3);
    assert_int_equal(s.n_masked, 2);
    assert_int_equal(s.n_correct, 1);
    assert_true(fabs(pq_eval_mlm_accuracy(&s) - 0.5) < 1e-12);
    assert_true(fabs(pq_eval_mlm_perplexity(&s) - sqrt(6.0)) < 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlm_by_hand),
        cmocka_unit_test(test_compare_self),
        cmocka_unit_test(test_compare_other),
        cmocka_unit_test(test_score_batches),
        cmocka_unit_test(test_embed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
