/* SPDX-License-Identifier: Apache-2.0 */
/* test_eval.c - engine/eval: the comparison loop (a model against itself
 * gives KL 0, cosines 1, the same masked-LM tallies and SQNR +inf; against
 * another model a positive KL), the masked-LM loop (counts by the masking
 * rule, independent of the batch size), the embedding loop (means of the
 * rows it hands out, layer indices), the masked-LM numbers, confidence and
 * calibration error on hand-computed cases, the comparison's independence
 * of chunks and batches, and the utilization probe's operation count, on a
 * synthetic t6 and a three-record FASTA. */
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
                                  .model_opts = {.n_threads = 1}, .reference_opts = {.n_threads = 1},
                                  .no_peak = true};
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
    /* the same model: no top-1 disagreement, the same confidence and ECE */
    assert_int_equal(r.n_disagree, 0);
    assert_true(pq_eval_disagreement(&r) == 0.0);
    assert_int_equal(r.ref.cal.n, masked);
    assert_true(pq_eval_calib_confidence(&r.ref.cal) == pq_eval_calib_confidence(&r.q.cal));
    assert_true(pq_eval_calib_ece(&r.ref.cal) == pq_eval_calib_ece(&r.q.cal));
    assert_true(pq_eval_top1_error(&r.ref) == pq_eval_top1_error(&r.q));
    double cf = pq_eval_calib_confidence(&r.ref.cal);
    assert_true(cf > 1.0 / 33 && cf <= 1.0);
    /* a float model runs its Linears on sgemm: 2 x (4 D^2 + 2 D F) per layer
     * and 2 D^2 for the LM dense, per token (D 320, F 1280, 6 layers) */
    assert_string_equal(r.util.kernel, "sgemm fp32");
    double per_tok = 2.0 * (6 * (4.0 * 320 * 320 + 2.0 * 320 * 1280) + 320.0 * 320);
    assert_true(r.util.ops == per_tok * (double)r.n_tokens);
    assert_true(isnan(r.util.peak_gops) && r.util.achieved_gops > 0);
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
    assert_true(r.n_disagree > 0 && r.n_disagree <= r.n_positions);
    /* every number but the timings is the same with one record per chunk
     * and other batches: the report adds per-sequence sums in input order */
    o.chunk_residues = 1;
    o.batch_tokens = 100;
    pq_eval_report r2;
    assert_int_equal(pq_eval_compare(&o, &r2), PQ_OK);
    assert_int_equal(r2.n_sequences, N_SEQS);
    assert_true(r2.kl_mean == r.kl_mean && r2.kl_max == r.kl_max && r2.logits_cosine_mean == r.logits_cosine_mean);
    assert_true(r2.embedding_cosine_mean == r.embedding_cosine_mean && r2.n_disagree == r.n_disagree);
    assert_true(memcmp(&r2.ref.mlm, &r.ref.mlm, sizeof r.ref.mlm) == 0);
    assert_true(memcmp(&r2.q.cal, &r.q.cal, sizeof r.q.cal) == 0);
    assert_true(memcmp(r2.sqnr, r.sqnr, 7 * PQ_EVAL_N_SITES * sizeof *r.sqnr) == 0);
    pq_eval_report_free(&r2);
    pq_eval_report_free(&r);
}

/* Every number of the report compared (timings and sizes aside). */
static void assert_same_report(const pq_eval_report *a, const pq_eval_report *b, bool sqnr)
{
    assert_int_equal(a->n_sequences, b->n_sequences);
    assert_int_equal(a->n_positions, b->n_positions);
    assert_true(a->kl_sum == b->kl_sum && a->kl_max == b->kl_max && a->lcos_sum == b->lcos_sum);
    assert_true(a->ecos_sum == b->ecos_sum && a->n_disagree == b->n_disagree);
    assert_true(memcmp(&a->ref.mlm, &b->ref.mlm, sizeof a->ref.mlm) == 0);
    assert_true(memcmp(&a->q.mlm, &b->q.mlm, sizeof a->q.mlm) == 0);
    assert_true(memcmp(&a->ref.cal, &b->ref.cal, sizeof a->ref.cal) == 0);
    assert_true(memcmp(&a->q.cal, &b->q.cal, sizeof a->q.cal) == 0);
    if (sqnr) assert_true(memcmp(a->sqnr, b->sqnr, 7 * PQ_EVAL_N_SITES * sizeof *a->sqnr) == 0);
}

/* The reference's results kept across runs (quantize's fallback): the
 * same numbers as a run of both models, and once the cache is filled the
 * reference is neither loaded again nor run (no reference time; its path
 * may be gone) unless SQNRs are asked for, alone with sqnr_only. */
static void test_compare_ref_cache(void **state)
{
    (void)state;
    pq_eval_compare_opts o = compare_opts(g_other, g_model);
    pq_eval_report r, c1, c2, c3;
    assert_int_equal(pq_eval_compare(&o, &r), PQ_OK);
    pq_eval_ref *cache = NULL;
    assert_int_equal(pq_eval_ref_new(&cache), PQ_OK);
    o.ref_cache = cache;
    assert_int_equal(pq_eval_compare(&o, &c1), PQ_OK);
    assert_same_report(&r, &c1, true);
    assert_true(c1.ref.seconds > 0);
    o.reference = "/nonexistent/reference.safetensors";
    o.no_sqnr = true;
    assert_int_equal(pq_eval_compare(&o, &c2), PQ_OK);
    assert_same_report(&r, &c2, false);
    assert_true(c2.ref.seconds == 0.0 && c2.q.seconds > 0);
    for (int i = 0; i < 7 * PQ_EVAL_N_SITES; i++) assert_true(c2.sqnr[i].sig == 0 && c2.sqnr[i].err == 0);
    o.no_sqnr = false;
    o.sqnr_only = true;
    assert_int_equal(pq_eval_compare(&o, &c3), PQ_OK);
    assert_true(memcmp(c3.sqnr, r.sqnr, 7 * PQ_EVAL_N_SITES * sizeof *r.sqnr) == 0);
    assert_int_equal(c3.n_sequences, N_SEQS);
    assert_int_equal(c3.q.mlm.n_masked, 0);
    pq_eval_ref_free(cache);
    pq_eval_report_free(&r);
    pq_eval_report_free(&c1);
    pq_eval_report_free(&c2);
    pq_eval_report_free(&c3);
}

/* The kernel peak probe: a positive, finite rate, and the utilization
 * figures derived from it. */
static void test_compare_peak(void **state)
{
    (void)state;
    pq_eval_compare_opts o = compare_opts(g_model, g_model);
    o.no_peak = false;
    pq_eval_report r;
    assert_int_equal(pq_eval_compare(&o, &r), PQ_OK);
    assert_true(isfinite(r.util.peak_gops) && r.util.peak_gops > 0);
    assert_true(fabs(r.util.fraction - r.util.achieved_gops / r.util.peak_gops) < 1e-12);
    assert_int_equal(r.util.threads, 1);
    /* 40-token batches: records 0 and 1 (35 tokens), then record 2 */
    assert_true(r.util.threads_busy > 0 && r.q.cpu_seconds > 0 && r.q.n_forwards == 2);
    assert_true(fabs(r.util.memory_gbps - 2.0 * (double)r.q.linear_weight_bytes / r.q.seconds / 1e9) < 1e-9);
    pq_eval_report_free(&r);
}

/* Four predictions: p 0.95 right, 0.95 wrong (bin 14), 0.5 right (bin 7),
 * 0.3 wrong (bin 4): ECE = (|1 - 1.9| + |1 - 0.5| + |0 - 0.3|) / 4 = 0.425,
 * confidence (0.95 + 0.95 + 0.5 + 0.3) / 4 = 0.675. From logits, V = 3:
 * (0, ln 2, 0) true id 1 gives p 1/2, right; (ln 5, 0, 0) true id 2 gives
 * p 5/7, wrong: ECE (1/2 + 5/7) / 2. */
static void test_ece_by_hand(void **state)
{
    (void)state;
    pq_eval_calib c = {0}, d = {0};
    pq_eval_calib_add_one(&c, 0.95, true);
    pq_eval_calib_add_one(&c, 0.95, false);
    pq_eval_calib_add_one(&d, 0.5, true);
    pq_eval_calib_add_one(&d, 0.3, false);
    pq_eval_calib_merge(&c, &d);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.bin_n[14], 2);
    assert_int_equal(c.bin_n[7], 1);
    assert_int_equal(c.bin_n[4], 1);
    assert_true(fabs(pq_eval_calib_ece(&c) - 0.425) < 1e-12);
    assert_true(fabs(pq_eval_calib_confidence(&c) - 0.675) < 1e-12);
    /* bins are (b/15, (b+1)/15]: the upper edge belongs to the bin */
    assert_int_equal(pq_eval_ece_bin(1.0), 14);
    assert_int_equal(pq_eval_ece_bin(0.5 / 15), 0);
    assert_int_equal(pq_eval_ece_bin(1.0 / 15 + 1e-9), 1);
    assert_int_equal(pq_eval_ece_bin(14.5 / 15), 14);
    assert_int_equal(pq_eval_ece_bin(0.0), 0);
    /* perfectly calibrated: every p 1 and right */
    pq_eval_calib e = {0};
    for (int i = 0; i < 5; i++) pq_eval_calib_add_one(&e, 1.0, true);
    assert_true(pq_eval_calib_ece(&e) == 0.0);
    pq_eval_calib z = {0};
    assert_true(isnan(pq_eval_calib_ece(&z)));
    const float logits[9] = {0, (float)log(2.0), 0, (float)log(5.0), 0, 0, 9, 0, 0};
    const int32_t orig[3] = {1, 2, -1};
    pq_eval_calib l = {0};
    pq_eval_calib_add(&l, logits, orig, 3, 3);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.bin_n[7], 1);
    assert_int_equal(l.bin_n[10], 1);
    assert_int_equal(l.bin_correct[7], 1);
    assert_int_equal(l.bin_correct[10], 0);
    assert_true(fabs(pq_eval_calib_ece(&l) - (0.5 + 5.0 / 7) / 2) < 1e-6);
    assert_true(fabs(pq_eval_calib_confidence(&l) - (0.5 + 5.0 / 7) / 2) < 1e-6);
    /* argmax: the first of equal logits */
    const float tie[4] = {1, 3, 3, 2};
    assert_int_equal(pq_eval_argmax(tie, 4), 1);
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
        cmocka_unit_test(test_ece_by_hand),
        cmocka_unit_test(test_compare_peak),
        cmocka_unit_test(test_compare_self),
        cmocka_unit_test(test_compare_other),
        cmocka_unit_test(test_compare_ref_cache),
        cmocka_unit_test(test_score_batches),
        cmocka_unit_test(test_embed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
