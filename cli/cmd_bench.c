/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_bench.c - `proteus bench`: forward-pass throughput of the engine on
 * uniform synthetic batches or real-length batches from a FASTA file (the
 * timing loop is eval/bench.h); this file holds its options and printing. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "base/pq_clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "eval/bench.h"

typedef struct bench_opts {
    const char *model, *fasta, *json;
    int64_t batch, length, max_seqs, reps, warmup;
    bool logits, profile;
    pq_cli_infer fwd;
} bench_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "model", .kind = PQ_CLI_STR, .offset = offsetof(bench_opts, model), .flags = PQ_CLI_REQUIRED,
     .meta = "M", .help = ".safetensors or PyTorch .pt/.bin (file/dir/index) or Proteus .h5"},
    {.name = "batch", .kind = PQ_CLI_I64, .offset = offsetof(bench_opts, batch), .lo = 1, .meta = "B",
     .help = "uniform shape: sequences per batch", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "length", .kind = PQ_CLI_I64, .offset = offsetof(bench_opts, length), .lo = 3, .meta = "T",
     .help = "uniform shape: tokens per sequence", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "fasta", .kind = PQ_CLI_STR, .offset = offsetof(bench_opts, fasta), .meta = "F",
     .help = "time the file's sequences instead of the uniform shape"},
    {.name = "max-seqs", .kind = PQ_CLI_I64, .offset = offsetof(bench_opts, max_seqs), .lo = 1, .meta = "N",
     .help = "--fasta: first N sequences", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "reps", .kind = PQ_CLI_I64, .offset = offsetof(bench_opts, reps), .lo = 1, .meta = "R",
     .help = "timed repetitions (the median is reported)", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "warmup", .kind = PQ_CLI_I64, .offset = offsetof(bench_opts, warmup), .lo = 0, .meta = "W",
     .help = "untimed runs first", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "logits", .kind = PQ_CLI_FLAG, .offset = offsetof(bench_opts, logits),
     .help = "also run the LM head"},
    {.name = "json", .kind = PQ_CLI_STR, .offset = offsetof(bench_opts, json), .meta = "FILE",
     .help = "the numbers as JSON"},
    {.name = "profile", .kind = PQ_CLI_FLAG, .offset = offsetof(bench_opts, profile),
     .help = "also print where the time goes: each part of the forward\n(GEMMs with their activation quantization "
             "and fused\nepilogues, attention split into its steps, layernorm, GELU)\nper forward and as a share"},
    {.name = "inference", .kind = PQ_CLI_GROUP, .offset = offsetof(bench_opts, fwd), .group = pq_cli_infer_opts},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "bench",
    .usage = "usage: proteus bench --model M [--batch B --length T | --fasta F [--max-seqs N]] [options]",
    .about = "Times the ESM-2 forward (final representation; --logits adds the LM head) of a\n"
             "model (safetensors fp32 or Proteus HDF5, quantized Linears run as --mode says).\n"
             "Uniform shape: B sequences of T tokens each (<cls>, T-2 residues, <eos>; residues\n"
             "cycle through the 20 standard amino acids). FASTA: the file's sequences packed\n"
             "into batches of at most --batch-tokens tokens. Reports the median over R\n"
             "repetitions of the whole set of batches (after W warm-up runs), tokens/s,\n"
             "weight bytes in memory and peak RSS.",
    .opts = k_opts,
};

/* The profile of the timed reps: wall seconds per forward and share of the
 * profiled total; attention's steps split its wall time in proportion to
 * their thread-seconds. */
static void print_profile(const pq_esm2_profile *p)
{
    double sum = 0.0, attn = 0.0;
    for (int i = 0; i < PQ_PROF_N_OPS; i++) sum += p->wall_s[i];
    for (int i = 0; i < PQ_PROF_ATTN_N; i++) attn += p->attn_thread_s[i];
    double nf = p->forwards > 0 ? (double)p->forwards : 1.0;
    printf("profile: %lld forwards of the timed reps, %.3f s in the parts below\n", (long long)p->forwards, sum);
    printf("  %-41s %12s %8s\n", "part", "ms/forward", "share");
    for (int i = 0; i < PQ_PROF_N_OPS; i++) {
        printf("  %-41s %12.3f %7.1f%%\n", pq_esm2_prof_op_name((pq_esm2_prof_op)i), 1e3 * p->wall_s[i] / nf,
               sum > 0 ? 100.0 * p->wall_s[i] / sum : 0.0);
        if (i == PQ_PROF_ATTENTION && attn > 0)
            for (int j = 0; j < PQ_PROF_ATTN_N; j++) {
                if (p->attn_thread_s[j] <= 0) continue; /* a step this kernel context does not run */
                double w = p->wall_s[i] * p->attn_thread_s[j] / attn;
                printf("    %-39s %12.3f %7.1f%%\n", pq_esm2_prof_attn_name((pq_esm2_prof_attn)j), 1e3 * w / nf,
                       sum > 0 ? 100.0 * w / sum : 0.0);
            }
    }
}

int pq_cmd_bench(int argc, char **argv)
{
    bench_opts o = {.batch = 4, .length = 256, .max_seqs = 64, .reps = 3, .warmup = 1,
                    .fwd = {.batch_tokens = 1024, .max_length = 1022}};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    pq_eval_bench_opts bo = {.batch_tokens = o.fwd.batch_tokens, .batch = o.batch, .length = o.length,
                             .reps = o.reps, .warmup = o.warmup, .logits = o.logits};
    pq_eval_bench_result r;
    pq_esm2_profile prof;
    if (o.profile) bo.profile = &prof;
    pq_esm2_model_opts mo;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    json_t *root = NULL;
    pq_status st = pq_cli_infer_model_opts(&o.fwd, &mo);
    double t_load = pq_now_s();
    if (st == PQ_OK) st = pq_esm2_model_open(o.model, &mo, &m);
    t_load = pq_now_s() - t_load;
    if (st == PQ_OK && o.fasta) {
        pq_fasta_opts fo = pq_cli_infer_fasta_opts(&o.fwd, NULL);
        st = pq_fasta_read_all(o.fasta, &fo, o.max_seqs, &recs, &n_recs);
        bo.recs = recs;
        bo.n_recs = n_recs;
    }
    if (st == PQ_OK) st = pq_eval_bench(m, &bo, &r);
    if (st != PQ_OK) goto done;
    int64_t wb, wl;
    pq_esm2_model_weight_bytes(m, &wb, &wl);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0, tps = (double)r.n_tokens / r.median_s;
    printf("bench %s: %lld batches, %lld tokens, threads %d, median %.3f s (min %.3f), %.1f tokens/s, "
           "weights %lld bytes (Linear %lld), peak RSS %.1f MiB, load %.2f s\n",
           o.model, (long long)r.n_batches, (long long)r.n_tokens, mo.n_threads, r.median_s, r.min_s, tps,
           (long long)wb, (long long)wl, rss, t_load);
    if (o.profile) print_profile(&prof);
    if (o.json) {
        root = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:f, s:f, s:b}", "model", o.model,
                         "n_batches", (json_int_t)r.n_batches, "n_tokens", (json_int_t)r.n_tokens, "threads",
                         (json_int_t)mo.n_threads, "median_s", r.median_s, "min_s", r.min_s, "tokens_per_s", tps,
                         "weight_bytes", (json_int_t)wb, "linear_weight_bytes", (json_int_t)wl, "peak_rss_mib",
                         rss, "load_s", t_load, "fusion", !mo.no_fusion);
        if (!root || json_dump_file(root, o.json, JSON_INDENT(1)) != 0)
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", o.json);
    }
done:
    json_decref(root);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
