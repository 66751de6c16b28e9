/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_evaluate.c - `proteus evaluate`: what quantization costs and gains, a
 * quantized Proteus HDF5 model against its fp32 reference on one FASTA file
 * (the comparison is eval/compare.h); this file holds its options and its
 * printing. */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/pq_cpu.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "coordinator/eval_mpi.h"
#include "eval/compare.h"
#include "worker/sync.h"

typedef struct eval_opts {
    const char *model, *reference, *fasta, *json;
    int64_t max_seqs, chunk_residues;
    uint64_t seed;
    double max_drop; /* NaN: no gate */
    pq_cli_infer fwd;
} eval_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "model", .kind = PQ_CLI_STR, .offset = offsetof(eval_opts, model), .flags = PQ_CLI_REQUIRED,
     .meta = "Q.h5", .help = "quantized model (Proteus HDF5; a safetensors or .pt file also works)"},
    {.name = "reference", .kind = PQ_CLI_STR, .offset = offsetof(eval_opts, reference), .flags = PQ_CLI_REQUIRED,
     .meta = "FP", .help = "fp32 reference (safetensors, PyTorch .pt/.bin or HDF5)"},
    {.name = "fasta", .kind = PQ_CLI_STR, .offset = offsetof(eval_opts, fasta), .flags = PQ_CLI_REQUIRED,
     .meta = "F", .help = "FASTA, plain or .gz"},
    {.name = "json", .kind = PQ_CLI_STR, .offset = offsetof(eval_opts, json), .meta = "FILE",
     .help = "all numbers as JSON"},
    {.name = "max-seqs", .kind = PQ_CLI_I64, .offset = offsetof(eval_opts, max_seqs), .lo = 1, .meta = "N",
     .help = "first N sequences", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "seed", .kind = PQ_CLI_U64, .offset = offsetof(eval_opts, seed), .meta = "S",
     .help = "masking seed", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "max-drop", .kind = PQ_CLI_F64, .offset = offsetof(eval_opts, max_drop), .lo = 0, .hi = 100,
     .meta = "PTS", .help = "an accuracy gate: after the report, fail with exit status 13\n(accuracy error) when "
     "the quantized model's masked-LM accuracy\nis more than PTS percentage points below the reference's"},
    {.name = "chunk-residues", .kind = PQ_CLI_I64, .offset = offsetof(eval_opts, chunk_residues), .lo = 1,
     .meta = "N", .help = "residues per chunk of sequences shared out over the MPI ranks;\nno number "
     "depends on it", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "inference", .kind = PQ_CLI_GROUP, .offset = offsetof(eval_opts, fwd), .group = pq_cli_infer_opts},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "evaluate",
    .usage = "usage: proteus evaluate --model Q.h5 --reference FP.safetensors --fasta F [options]\n"
             "       mpirun -n N proteus evaluate ...   (the same numbers for any N and --threads)",
    .about = "Accuracy, size and speed of a quantized model against its fp32 reference, both run\n"
             "on the same packed batches and thread count:\n"
             "  masked-LM accuracy, top-1 error (1 - accuracy) and perplexity of both (the masking\n"
             "  of `proteus score`, 15 %);\n"
             "  confidence: the mean probability of the top prediction at masked positions, and its\n"
             "  expected calibration error (ECE): 15 equal-width bins (b/15, (b+1)/15] of that\n"
             "  probability, ECE = sum over bins of (bin size / n) |bin accuracy - bin mean confidence|;\n"
             "  logits KL(reference || quantized) and cosine per residue position of the unmasked\n"
             "  sequences, averaged; top-1 disagreement: the fraction of those positions where the\n"
             "  two models' top predictions (argmax over all logits) differ; cosine of mean-pooled\n"
             "  final embeddings, averaged per sequence;\n"
             "  per-Linear output SQNR: each Linear of the quantized model applied to the very\n"
             "  input the reference Linear sees, against the reference output;\n"
             "  file sizes, weight bytes in memory, peak RSS, tokens/s of both (masked pass);\n"
             "  utilization of the quantized model's masked pass: operations of the Linears on its\n"
             "  main kernel (2 per multiply-add) per second, against that kernel's peak measured\n"
             "  here on a 256 x 1024 x 1024 GEMM with the same threads; threads busy = CPU time /\n"
             "  (wall time x threads); memory = Linear weight bytes x forwards / wall time (each\n"
             "  forward reads every weight at least once: a lower bound).\n"
             "Under mpirun the sequences are shared out by residues as `score` shares them; each\n"
             "rank runs both models on its share and rank 0 adds the per-sequence sums in input\n"
             "order. Timings (seconds, tokens/s, speedup, RSS, utilization) are the largest rank's\n"
             "wall time and the sums of CPU time and peaks. Both models must have the same\n"
             "architecture.",
    .opts = k_opts,
};

static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_string(v > 0 ? "inf" : v < 0 ? "-inf" : "nan");
}

static void print_row(const char *what, double r, double q, const char *fmt)
{
    char line[160];
    snprintf(line, sizeof line, fmt, what, r, q, r / q);
    printf("%s", line);
}

static void print_report(const eval_opts *o, const pq_eval_report *r, int64_t threads)
{
    double acc_r = pq_eval_mlm_accuracy(&r->ref.mlm), acc_q = pq_eval_mlm_accuracy(&r->q.mlm);
    double ppl_r = pq_eval_mlm_perplexity(&r->ref.mlm), ppl_q = pq_eval_mlm_perplexity(&r->q.mlm);
    double tps_r = (double)r->n_tokens / r->ref.seconds, tps_q = (double)r->n_tokens / r->q.seconds;
    double rss_q = r->q.rss_load_mib > 0 ? r->q.rss_load_mib : 1;
    int L = r->num_layers;
    printf("proteus evaluate: %s vs reference %s\n", o->model, o->reference);
    printf("  %lld sequences, %lld tokens, %lld masked positions, threads %lld, rank%s %d\n\n",
           (long long)r->n_sequences, (long long)r->n_tokens, (long long)r->ref.mlm.n_masked, (long long)threads,
           r->n_ranks == 1 ? "" : "s", r->n_ranks);
    printf("  %-28s %14s %14s %10s\n", "", "reference", "quantized", "ratio/diff");
    printf("  %-28s %13.2f%% %13.2f%% %+9.2f pt\n", "masked-LM accuracy", 100 * acc_r, 100 * acc_q,
           100 * (acc_q - acc_r));
    printf("  %-28s %13.2f%% %13.2f%% %+9.2f pt\n", "top-1 error (masked)", 100 * pq_eval_top1_error(&r->ref),
           100 * pq_eval_top1_error(&r->q), 100 * (pq_eval_top1_error(&r->q) - pq_eval_top1_error(&r->ref)));
    double cf_r = pq_eval_calib_confidence(&r->ref.cal), cf_q = pq_eval_calib_confidence(&r->q.cal);
    double ece_r = pq_eval_calib_ece(&r->ref.cal), ece_q = pq_eval_calib_ece(&r->q.cal);
    printf("  %-28s %14.4f %14.4f %+10.4f\n", "confidence (masked)", cf_r, cf_q, cf_q - cf_r);
    printf("  %-28s %14.4f %14.4f %+10.4f\n", "calibration error (ECE)", ece_r, ece_q, ece_q - ece_r);
    printf("  %-28s %14.4f %14.4f %9.4fx\n", "pseudo-perplexity", ppl_r, ppl_q, ppl_q / ppl_r);
    print_row("file bytes", (double)r->ref.file_bytes, (double)r->q.file_bytes, "  %-28s %14.0f %14.0f %9.2fx\n");
    print_row("weight bytes in memory", (double)r->ref.weight_bytes, (double)r->q.weight_bytes,
              "  %-28s %14.0f %14.0f %9.2fx\n");
    print_row("  of which Linear weights", (double)r->ref.linear_weight_bytes, (double)r->q.linear_weight_bytes,
              "  %-28s %14.0f %14.0f %9.2fx\n");
    printf("  %-28s %14.1f %14.1f %9.2fx\n", "RSS growth at load (MiB)", r->ref.rss_load_mib, r->q.rss_load_mib,
           r->ref.rss_load_mib / rss_q);
    printf("  %-28s %14.0f %14.0f %9.2fx\n", "tokens/s (masked pass)", tps_r, tps_q, tps_q / tps_r);
    printf("\n  logits KL(ref||q) mean %.3g (max %.3g), logits cosine %.6f, embedding cosine %.6f\n", r->kl_mean,
           r->kl_max, r->logits_cosine_mean, r->embedding_cosine_mean);
    printf("  top-1 disagreement %.4f %% of %lld residue positions (%lld)\n", 100 * pq_eval_disagreement(r),
           (long long)r->n_positions, (long long)r->n_disagree);
    const pq_eval_util *u = &r->util;
    printf("  utilization (quantized, masked pass): %s, %.1f GOPS of a measured peak %.1f GOPS (%.1f %%),\n"
           "    threads busy %.0f %% of %d, Linear weights streamed %.3g GB/s\n", u->kernel, u->achieved_gops,
           u->peak_gops, 100 * u->fraction, 100 * u->threads_busy, u->threads, u->memory_gbps);
    printf("  peak RSS %.1f MiB (both models)\n\n  per-Linear output SQNR (dB)\n  %-6s", r->peak_rss_mib, "layer");
    for (int i = 0; i < PQ_EVAL_N_SITES - 1; i++) printf(" %8s", pq_eval_site_name(i));
    printf("\n");
    for (int l = 0; l < L; l++) {
        printf("  %-6d", l);
        for (int i = 0; i < PQ_EVAL_N_SITES - 1; i++) printf(" %8.2f", pq_eval_report_sqnr_db(r, l, i));
        printf("\n");
    }
    printf("  lm_dense %.2f\n", pq_eval_report_sqnr_db(r, L, PQ_EVAL_N_SITES - 1));
}

typedef struct json_field {
    const char *key;
    double v;
    bool integer;
} json_field;

static json_t *report_json(const eval_opts *o, const pq_eval_report *r, int64_t threads, bool fusion)
{
    const pq_eval_side *R = &r->ref, *Q = &r->q;
    double tps_r = (double)r->n_tokens / R->seconds, tps_q = (double)r->n_tokens / Q->seconds;
    const json_field f[] = {
        {"n_sequences", (double)r->n_sequences, true}, {"n_tokens", (double)r->n_tokens, true},
        {"n_masked", (double)R->mlm.n_masked, true}, {"n_positions", (double)r->n_positions, true},
        {"threads", (double)threads, true},
        {"accuracy_reference", pq_eval_mlm_accuracy(&R->mlm), false},
        {"accuracy_quantized", pq_eval_mlm_accuracy(&Q->mlm), false},
        {"perplexity_reference", pq_eval_mlm_perplexity(&R->mlm), false},
        {"perplexity_quantized", pq_eval_mlm_perplexity(&Q->mlm), false},
        {"logits_kl_mean", r->kl_mean, false}, {"logits_kl_max", r->kl_max, false},
        {"logits_cosine_mean", r->logits_cosine_mean, false},
        {"embedding_cosine_mean", r->embedding_cosine_mean, false},
        {"file_bytes_reference", (double)R->file_bytes, true}, {"file_bytes_quantized", (double)Q->file_bytes, true},
        {"weight_bytes_reference", (double)R->weight_bytes, true},
        {"weight_bytes_quantized", (double)Q->weight_bytes, true},
        {"linear_weight_bytes_reference", (double)R->linear_weight_bytes, true},
        {"linear_weight_bytes_quantized", (double)Q->linear_weight_bytes, true},
        {"weight_bytes_reduction", (double)R->weight_bytes / (double)Q->weight_bytes, false},
        {"rss_load_mib_reference", R->rss_load_mib, false}, {"rss_load_mib_quantized", Q->rss_load_mib, false},
        {"peak_rss_mib", r->peak_rss_mib, false}, {"tokens_per_s_reference", tps_r, false},
        {"tokens_per_s_quantized", tps_q, false}, {"speedup", tps_q / tps_r, false},
        {"ranks", (double)r->n_ranks, true},
        {"confidence_reference", pq_eval_calib_confidence(&R->cal), false},
        {"confidence_quantized", pq_eval_calib_confidence(&Q->cal), false},
        {"ece_reference", pq_eval_calib_ece(&R->cal), false}, {"ece_quantized", pq_eval_calib_ece(&Q->cal), false},
        {"top1_error_reference", pq_eval_top1_error(R), false},
        {"top1_error_quantized", pq_eval_top1_error(Q), false},
        {"top1_disagreement", pq_eval_disagreement(r), false},
        {"n_disagree", (double)r->n_disagree, true},
    };
    json_t *root = json_pack("{s:s, s:s, s:s, s:b, s:I}", "model", o->model, "reference", o->reference, "fasta",
                             o->fasta, "fusion", fusion, "seed", (json_int_t)o->seed);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        json_object_set_new(root, f[i].key, f[i].integer ? json_integer((json_int_t)f[i].v) : json_num(f[i].v));
    const pq_eval_util *u = &r->util;
    json_object_set_new(root, "utilization",
                        json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:I, s:o}", "kernel", u->kernel, "achieved_gops",
                                  json_num(u->achieved_gops), "peak_gops", json_num(u->peak_gops), "fraction",
                                  json_num(u->fraction), "threads_busy", json_num(u->threads_busy), "memory_gbps",
                                  json_num(u->memory_gbps), "threads", (json_int_t)u->threads, "ops",
                                  json_num(u->ops)));
    json_t *layers = json_array();
    for (int l = 0; l <= r->num_layers; l++) {
        json_t *row = json_object();
        json_object_set_new(row, "layer", l == r->num_layers ? json_string("head") : json_integer(l));
        for (int i = 0; i < PQ_EVAL_N_SITES; i++)
            if ((l == r->num_layers) == (i == PQ_EVAL_N_SITES - 1))
                json_object_set_new(row, pq_eval_site_name(i), json_num(pq_eval_report_sqnr_db(r, l, i)));
        json_array_append_new(layers, row);
    }
    json_object_set_new(root, "linear_sqnr_db", layers);
    return root;
}

/* Rank 0: the table, the gate and the JSON. */
static pq_status finish(const eval_opts *o, const pq_eval_report *r, int64_t threads, bool fusion)
{
    print_report(o, r, threads);
    /* percentage points of masked-LM accuracy the quantization lost */
    double acc_r = pq_eval_mlm_accuracy(&r->ref.mlm), acc_q = pq_eval_mlm_accuracy(&r->q.mlm);
    double drop = 100 * (acc_r - acc_q);
    bool gated = !isnan(o->max_drop), gate_failed = gated && drop > o->max_drop;
    pq_status st = PQ_OK;
    if (gated)
        printf("\n  accuracy gate: %.2f points lost, at most %g allowed: %s\n", drop, o->max_drop,
               gate_failed ? "FAIL" : "pass");
    if (o->json) {
        json_t *root = report_json(o, r, threads, fusion);
        json_object_set_new(root, "accuracy_drop_points", json_real(drop));
        if (gated) {
            json_object_set_new(root, "max_drop_points", json_real(o->max_drop));
            json_object_set_new(root, "accuracy_gate", json_string(gate_failed ? "fail" : "pass"));
        }
        if (json_dump_file(root, o->json, JSON_INDENT(1)) != 0)
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", o->json);
        json_decref(root);
    }
    if (st == PQ_OK && gate_failed)
        st = pq_err(PQ_ERR_ACCURACY, "%s: masked-LM accuracy %.2f %% against %.2f %% for the reference %s: "
                    "%.2f points lost, more than --max-drop %g", o->model, 100 * acc_q, 100 * acc_r, o->reference,
                    drop, o->max_drop);
    return st;
}

int pq_cmd_evaluate(int argc, char **argv)
{
    eval_opts o = {.max_seqs = 400, .max_drop = NAN, .chunk_residues = PQ_EVAL_CHUNK_RESIDUES,
                   .fwd = {.batch_tokens = 4096, .max_length = 500}};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    int rank = 0, N = 1;
    if ((rc = pq_cli_infer_mpi_start(&rank, &N))) return rc;
    pq_eval_compare_opts co = {.model = o.model, .reference = o.reference, .fasta = o.fasta,
                               .max_seqs = o.max_seqs, .max_length = o.fwd.max_length,
                               .batch_tokens = o.fwd.batch_tokens, .seed = o.seed, .mask_frac = 0.15,
                               .chunk_residues = o.chunk_residues};
    pq_eval_report r = {0};
    const char *inputs[] = {o.model, o.reference, o.fasta};
    char journal[4200], fp[4200];
    pq_status st = pq_cli_infer_rank_model_opts(&o.fwd, rank, &co.model_opts);
    if (st == PQ_OK && rank == 0) st = pq_out_check("--json", o.json, inputs, 3); /* before the work */
    if ((st = pq_sync_agree(MPI_COMM_WORLD, st)) != PQ_OK) goto done;
    co.reference_opts = (pq_esm2_model_opts){.n_threads = co.model_opts.n_threads,
                                             .no_threading = co.model_opts.no_threading,
                                             .ops = co.model_opts.ops};
    /* rank 0's scratch for the chunks' per-sequence sums, removed at the end */
    snprintf(journal, sizeof journal, "%s/proteus-evaluate-%ld",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    if (rank == 0) { /* of a killed process that had this pid */
        char stale[4220];
        snprintf(stale, sizeof stale, "%s.journal", journal);
        unlink(stale);
    }
    snprintf(fp, sizeof fp, "command evaluate\nmodel %s\nreference %s\nfasta %s\nseed %llu\n", o.model,
             o.reference, o.fasta, (unsigned long long)o.seed);
    st = pq_eval_mpi_compare(MPI_COMM_WORLD, &co, journal, fp, &r);
    /* the count the models ran with: 0 asks for the cores this process may use */
    int64_t threads = co.model_opts.n_threads > 0 ? co.model_opts.n_threads : pq_cpu_count();
    if (st == PQ_OK && rank == 0) st = finish(&o, &r, threads, !co.model_opts.no_fusion);
done:
    pq_eval_report_free(&r);
    rc = st == PQ_OK ? 0 : rank == 0 ? pq_cli_fail(st) : pq_status_exit_code(st);
    MPI_Finalize();
    return rc;
}
