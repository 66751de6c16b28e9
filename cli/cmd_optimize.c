/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_optimize.c - `proteus optimize`: per-Linear sensitivity over the
 * ranks (coordinator/sens_mpi.h), the constrained choice of a per-Linear
 * recipe with every candidate checked end to end (decide/decide.h,
 * coordinator/optimize_verify.h), and its printing and files. */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bundled.h"
#include "base/pq_clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "coordinator/optimize_verify.h"
#include "coordinator/sens_mpi.h"
#include "decide/decide.h"
#include "decide/recipe_out.h"
#include "pipeline/config.h"
#include "pipeline/outpath.h"
#include "worker/sync.h"

/* Bytes a checked file leaves under --max-size: `quantize --recipe` records
 * its own command line and recipe path, which the check's file lacks. */
#define SIZE_SLACK 4096

typedef struct optimize_opts {
    const char *model, *calib, *eval, *out, *json, *sens_in, *hardware, *tmp_dir;
    int64_t max_size, calib_seqs, eval_seqs, max_length, batch_tokens;
    double max_drop, min_speedup;
    uint64_t seed;
    int threads, resolution, objective;
    bool quiet;
} optimize_opts;

static const char *const k_objectives[] = {"accuracy", "kl", NULL};

static const pq_cli_opt k_opts[] = {
    {.name = "model", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, model), .flags = PQ_CLI_REQUIRED,
     .meta = "M", .help = "the float checkpoint (safetensors file, index or folder; PyTorch .pt/.bin)"},
    {.name = "out", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, out), .flags = PQ_CLI_REQUIRED,
     .meta = "RECIPE.json", .help = "the chosen recipe, for `proteus quantize --recipe` (written only when\n"
     "every constraint is met)"},
    {.name = "max-size", .kind = PQ_CLI_BYTES, .offset = offsetof(optimize_opts, max_size), .lo = 1, .meta = "BYTES",
     .help = "the quantized file must take at most BYTES (k, M, G: powers of 1024,\nfractions allowed: 3.5M); checks "
     "keep 4 KiB free for what quantize\nrecords beside the weights (its command line)"},
    {.name = "max-drop", .kind = PQ_CLI_F64, .offset = offsetof(optimize_opts, max_drop), .lo = 0, .hi = 100,
     .meta = "POINTS", .help = "masked-LM accuracy on --eval-data at most POINTS percentage points\nbelow fp32's "
     "(then the smallest file that keeps it is chosen)"},
    {.name = "min-speedup", .kind = PQ_CLI_F64, .offset = offsetof(optimize_opts, min_speedup), .lo = 0, .hi = 1000,
     .flags = PQ_CLI_LO_OPEN, .meta = "X", .help = "tokens/s of the quantized model at least X times fp32's, both "
     "run by\nthe engine on --eval-data in the same process"},
    {.name = "objective", .kind = PQ_CLI_CHOICE, .offset = offsetof(optimize_opts, objective), .meta = "O",
     .choices = k_objectives, .flags = PQ_CLI_SHOW_DEFAULT, .help = "without --max-drop, what picks among the "
     "candidates that meet every\nconstraint: accuracy (the highest masked-LM accuracy on --eval-data) or kl\n"
     "(the lowest logits KL against fp32: steadier on few sequences)"},
    {.name = "calibration-data", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, calib), .meta = "F",
     .help = "FASTA the sensitivity is measured on (default: the bundled\nproteins/calib_sample.fasta)"},
    {.name = "eval-data", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, eval), .meta = "F",
     .help = "held-out FASTA every candidate is checked on (default: the bundled\nproteins/eval_sample.fasta)"},
    {.name = "calibration-seqs", .kind = PQ_CLI_I64, .offset = offsetof(optimize_opts, calib_seqs), .lo = 1,
     .meta = "N", .help = "first N sequences of --calibration-data", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "eval-seqs", .kind = PQ_CLI_I64, .offset = offsetof(optimize_opts, eval_seqs), .lo = 1, .meta = "N",
     .help = "first N sequences of --eval-data", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "max-length", .kind = PQ_CLI_I64, .offset = offsetof(optimize_opts, max_length), .lo = 1, .hi = 1022,
     .meta = "N", .help = "residues per sequence, longer ones cropped", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "batch-tokens", .kind = PQ_CLI_I64, .offset = offsetof(optimize_opts, batch_tokens), .lo = 3,
     .meta = "N", .help = "tokens per forward batch", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "seed", .kind = PQ_CLI_U64, .offset = offsetof(optimize_opts, seed), .meta = "S",
     .help = "masking seed (15 % of residues, as `proteus score`)", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "json", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, json), .meta = "O.json",
     .help = "sensitivity, front and choice as JSON (for `proteus report`;\nalso written when a constraint is "
     "not met)"},
    {.name = "sensitivity-in", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, sens_in), .meta = "S.json",
     .help = "take the sensitivity table from an earlier --json (its \"sensitivity\")\ninstead of measuring it"},
    {.name = "threads", .kind = PQ_CLI_INT, .offset = offsetof(optimize_opts, threads), .lo = 0, .meta = "N",
     .help = "threads per rank (0: the cores shared out over the ranks of a node)"},
    {.name = "hardware-target", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, hardware), .meta = "T",
     .help = "kernels of every forward and quantization: cpu | ref | avx2 | avx512", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "resolution", .kind = PQ_CLI_INT, .offset = offsetof(optimize_opts, resolution), .lo = 16,
     .hi = 65536, .meta = "N", .help = "byte steps of the knapsack", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "tmp-dir", .kind = PQ_CLI_STR, .offset = offsetof(optimize_opts, tmp_dir), .meta = "DIR",
     .help = "where each candidate's file is written and removed (default $TMPDIR,\nelse /tmp)"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(optimize_opts, quiet),
     .help = "no progress lines on stderr"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "optimize",
    .usage = "usage: proteus optimize --model M (--max-size BYTES | --max-drop POINTS | --min-speedup X)...\n"
             "                        --out RECIPE.json [--calibration-data F] [--eval-data F] [--json O.json]\n"
             "       mpirun -n N proteus optimize ...   (the same sensitivity and recipe for any N and --threads)",
    .about = "Choose a recipe per Linear weight (quantize --recipe) under constraints.\n"
             "1. Sensitivity: for every Linear of the layers (q, k, v, o, fc1, fc2) and every candidate\n"
             "   (int4 per-channel, int4 groups of 128, 64 or 32 (the largest that divides every\n"
             "   Linear's columns), int8 per-channel, fp16; fp32 costs nothing), only that Linear is\n"
             "   quantized in memory (round to nearest) and the masked calibration sequences are run:\n"
             "   the increase of the masked-LM loss and the logits KL against fp32 are recorded, with\n"
             "   the estimate sum_j diag(H)_j sum_i (w_ij - q_ij)^2 (H = 2/n X^T X of the Linear's\n"
             "   input) and its Spearman rank correlation with the KL. The (Linear, candidate) units\n"
             "   are shared out over the MPI ranks; the numbers do not depend on how.\n"
             "2. A knapsack over bytes and the summed KL gives the predicted front; candidates on it\n"
             "   (and the uniform recipes) are quantized for real into a temporary file and run on\n"
             "   --eval-data (masked as `proteus score` masks; accuracy, KL against fp32 over the\n"
             "   residue positions, tokens/s against fp32's), searched until the constraints hold.\n"
             "   Of the measured\n"
             "   candidates that meet every constraint the smallest is chosen with --max-drop, else\n"
             "   the most accurate (--objective kl: the lowest KL). The measured Pareto front\n"
             "   (bytes, accuracy, KL, tokens/s) is printed ('*' on the front, '>' the choice).\n"
             "Tensors that are not Linears of the layers follow quantize's defaults (kept fp32).\n"
             "When no candidate meets every constraint, what could not be met is named, no recipe is\n"
             "written, and the exit status is 13 (accuracy).",
    .opts = k_opts,
};

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *result_json(const optimize_opts *o, const pq_sens_table *t, const pq_decision *d, double rho)
{
    json_t *front = json_array(), *unmet = json_array(), *chosen = json_null();
    for (int i = 0; i < d->n_m; i++) {
        const pq_measured *m = &d->m[i];
        json_array_append_new(front, json_pack("{s:s, s:I, s:f, s:f, s:f, s:b, s:b}", "label", m->label, "bytes",
                                               (json_int_t)m->bytes, "accuracy", m->accuracy, "kl", m->kl,
                                               "tokens_per_s", m->tokens_per_s, "chosen", i == d->chosen,
                                               "pareto", pq_decision_on_front(d, i)));
    }
    for (int i = 0; i < d->n_unmet; i++) json_array_append_new(unmet, json_string(d->unmet[i]));
    if (d->best >= 0) {
        const pq_measured *m = &d->m[d->best];
        json_decref(chosen);
        chosen = json_pack("{s:o, s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:b}", "recipe_file",
                           d->chosen >= 0 ? json_string(o->out) : json_null(), "label", m->label, "bytes",
                           (json_int_t)m->bytes, "accuracy", m->accuracy, "reference_accuracy", m->ref_accuracy,
                           "drop_points", pq_measured_drop_points(m), "kl", m->kl, "speedup",
                           pq_measured_speedup(m), "met", d->chosen >= 0);
    }
    json_t *cons = json_pack("{s:o, s:o, s:o}", "max_size_bytes",
                             o->max_size > 0 ? json_integer(o->max_size) : json_null(), "max_drop_points",
                             o->max_drop >= 0 ? json_real(o->max_drop) : json_null(), "min_speedup",
                             o->min_speedup > 0 ? json_real(o->min_speedup) : json_null());
    return json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "model", o->model, "constraints", cons,
                     "objective", k_objectives[o->objective], "sensitivity",
                     pq_sens_table_to_json(t), "estimate_rank_correlation", num_or_null(rho), "front", front,
                     "chosen", chosen, "unmet", unmet);
}

static void print_table(const pq_sens_table *t, double rho)
{
    char cl[32];
    printf("sensitivity: logits KL against fp32 with only that Linear quantized (d_loss: change of masked-LM "
           "loss, nats)\n%-12s", "linear");
    for (int j = 0; j < t->n_cands; j++)
        if (t->cands[j].precision < 32) {
            pq_cand_label(&t->cands[j], cl, sizeof cl);
            printf(" %20s", cl);
        }
    printf("\n");
    for (int i = 0; i < t->n_linears; i++) {
        char name[32];
        snprintf(name, sizeof name, "L%d.%s", t->lin[i].layer, pq_sens_linear_name(t->lin[i].linear));
        printf("%-12s", name);
        for (int j = 0; j < t->n_cands; j++)
            if (t->cands[j].precision < 32)
                printf("  %9.2e/%+9.2e", pq_sens_at(t, i, j)->kl, pq_sens_at(t, i, j)->d_loss);
        printf("\n");
    }
    printf("estimate sum diag(H) (w-q)^2 against the measured KL: Spearman rank correlation %.4f\n", rho);
}

static void print_front(const pq_decision *d)
{
    printf("candidates measured end to end ('*' Pareto front of bytes and accuracy, '>' chosen):\n"
           "  %-20s %12s %9s %9s %11s %12s\n", "candidate", "bytes", "accuracy", "drop pts", "kl", "tokens/s");
    for (int i = 0; i < d->n_m; i++) {
        const pq_measured *m = &d->m[i];
        printf("%c%c%-20s %12lld %9.4f %9.3f %11.3e %12.0f\n", i == d->chosen ? '>' : ' ',
               pq_decision_on_front(d, i) ? '*' : ' ', m->label, (long long)m->bytes, m->accuracy,
               pq_measured_drop_points(m), m->kl, m->tokens_per_s);
    }
}

static pq_status load_table(const char *path, pq_sens_table *t)
{
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root) return pq_err(PQ_ERR_CONFIG, "%s: line %d: %s", path, e.line, e.text);
    json_t *a = json_is_object(root) ? json_object_get(root, "sensitivity") : root;
    pq_status st = pq_sens_table_from_json(a, path, t);
    json_decref(root);
    return st;
}

/* Every rank: the table, read or measured over the ranks. */
static pq_status sensitivity(const optimize_opts *o, int rank, pq_sens_table *t)
{
    if (o->sens_in) return load_table(o->sens_in, t);
    pq_sens *s = NULL;
    pq_sens_opts so = {.model = o->model, .fasta = o->calib, .max_seqs = o->calib_seqs,
                       .max_length = o->max_length, .batch_tokens = o->batch_tokens, .seed = o->seed,
                       .mask_frac = 0.15, .cache_layers = true};
    so.model_opts.n_threads = o->threads > 0 ? o->threads : pq_sync_threads_per_rank(MPI_COMM_WORLD, rank);
    pq_status st = pq_hardware_select(o->hardware, &so.model_opts.ops);
    if (!st) st = pq_sens_open(&so, &s);
    pq_cand cands[5];
    int n = 0;
    if (!st) {
        int64_t D = 0, F = 0;
        pq_sens_table probe;
        memset(&probe, 0, sizeof probe);
        pq_cand fp32 = {.precision = 32};
        if (!(st = pq_sens_layout(s, &fp32, 1, &probe))) {
            D = probe.lin[0].cols;
            F = probe.lin[5].cols;
        }
        pq_sens_table_free(&probe);
        int64_t g = D, h = F;
        while (h) { int64_t r = g % h; g = h; h = r; }
        n = pq_cand_defaults(g, cands);
    }
    if (!st) st = pq_sens_layout(s, cands, n, t);
    st = pq_sync_agree(MPI_COMM_WORLD, st);
    if (!st) st = pq_sens_mpi_run(MPI_COMM_WORLD, s, t, !o->quiet);
    pq_sens_close(s);
    return st;
}

static pq_status decide_and_write(const optimize_opts *o, const pq_sens_table *t, bool *met)
{
    pq_decision d = {.chosen = -1, .best = -1};
    pq_constraints c = {.max_size = o->max_size, .max_drop = o->max_drop, .min_speedup = o->min_speedup,
                        .size_slack = SIZE_SLACK, .by_kl = o->objective == 1};
    pq_optimize_verify v = {.model = o->model, .tmp_dir = o->tmp_dir, .threads = o->threads,
                            .hardware = o->hardware, .progress = !o->quiet, .time_reference = o->min_speedup > 0};
    pq_sens_opts eo = {.model = o->model, .fasta = o->eval, .max_seqs = o->eval_seqs, .max_length = o->max_length,
                       .batch_tokens = o->batch_tokens, .seed = o->seed, .mask_frac = 0.15};
    eo.model_opts.n_threads = v.model_opts.n_threads = o->threads;
    pq_status st = pq_hardware_select(o->hardware, &eo.model_opts.ops);
    v.model_opts.ops = eo.model_opts.ops;
    /* the fp32 pass on the held-out sequences, once; then timed once more */
    if (!st) st = pq_sens_open(&eo, &v.eval);
    if (!st) {
        pq_eval_mlm mlm;
        double kl;
        st = pq_sens_run(v.eval, NULL, &mlm, &kl, &v.ref_seconds);
    }
    double rho = pq_sens_table_rank_correlation(t);
    if (!st) print_table(t, rho);
    if (!st) st = pq_decide(t, &c, o->resolution, pq_optimize_verify_measure, &v, &d);
    if (!st) {
        print_front(&d);
        *met = d.chosen >= 0;
        if (*met) st = pq_recipe_write(t, d.m[d.chosen].choice, o->out);
    }
    if (!st && o->json) {
        json_t *root = result_json(o, t, &d, rho);
        if (!root || json_dump_file(root, o->json, JSON_INDENT(1)) != 0)
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", o->json);
        json_decref(root);
    }
    if (!st && *met) {
        const pq_measured *m = &d.m[d.chosen];
        char b[32];
        printf("chosen %s: %s (%lld bytes), accuracy %.4f against fp32 %.4f (drop %.3f points), kl %.3e, "
               "%.2fx fp32's tokens/s; recipe %s\n", m->label, pq_cli_bytes((double)m->bytes, b, sizeof b),
               (long long)m->bytes, m->accuracy, m->ref_accuracy, pq_measured_drop_points(m), m->kl,
               pq_measured_speedup(m), o->out);
    } else if (!st) {
        char msg[800] = "";
        for (int i = 0; i < d.n_unmet; i++)
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%s%s", i ? "; " : "", d.unmet[i]);
        pq_err_clear();
        st = pq_err(PQ_ERR_ACCURACY, "no candidate meets every constraint; the closest could not meet: %s "
                    "(no recipe written)", msg);
    }
    pq_decision_free(&d);
    pq_sens_close(v.eval);
    return st;
}

static const char *bundled(const char *rel, char *buf, size_t n)
{
    char tried[2048];
    return pq_bundled_find(rel, buf, n, tried, sizeof tried) ? buf : NULL;
}

int pq_cmd_optimize(int argc, char **argv)
{
    optimize_opts o = {.calib_seqs = 16, .eval_seqs = 100, .max_length = 500, .batch_tokens = 4096,
                       .max_drop = -1, .hardware = "cpu", .resolution = 4096};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    if (o.max_size <= 0 && o.max_drop < 0 && o.min_speedup <= 0)
        return pq_cli_usage_error("optimize", "give at least one constraint: --max-size, --max-drop or "
                                  "--min-speedup");
    char cbuf[4096], ebuf[4096];
    if (!o.calib && !o.sens_in && !(o.calib = bundled("proteins/calib_sample.fasta", cbuf, sizeof cbuf)))
        return pq_cli_usage_error("optimize", "the bundled proteins/calib_sample.fasta is not found: give "
                                  "--calibration-data");
    if (!o.eval && !(o.eval = bundled("proteins/eval_sample.fasta", ebuf, sizeof ebuf)))
        return pq_cli_usage_error("optimize", "the bundled proteins/eval_sample.fasta is not found: give --eval-data");
    if (!o.tmp_dir) o.tmp_dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    const char *inputs[] = {o.model, o.calib, o.eval, o.sens_in};
    int n_in = 0;
    const char *in[4];
    for (int i = 0; i < 4; i++)
        if (inputs[i]) in[n_in++] = inputs[i];
    pq_status st = pq_out_check("--out", o.out, in, n_in);
    if (!st && o.json) st = pq_out_check("--json", o.json, in, n_in);
    if (!st && o.json && !strcmp(o.json, o.out)) st = pq_err(PQ_ERR_CONFIG, "--json and --out name the same file");
    if (st) return pq_cli_fail(st);
    int rank = 0, N = 1;
    if ((rc = pq_cli_infer_mpi_start(&rank, &N))) return rc;
    pq_sens_table t;
    memset(&t, 0, sizeof t);
    bool met = false;
    double t0 = pq_now_s();
    st = sensitivity(&o, rank, &t);
    if (!st && rank == 0 && !o.quiet)
        fprintf(stderr, "sensitivity: %d units on %d rank%s in %.1f s\n", pq_sens_n_units(&t), N, N == 1 ? "" : "s",
                pq_now_s() - t0);
    /* the other ranks are done: they finalize rather than wait in a
     * collective (which would spin) while rank 0 checks candidates */
    if (!st && rank == 0) st = decide_and_write(&o, &t, &met);
    pq_sens_table_free(&t);
    rc = st == PQ_OK ? 0 : rank == 0 ? pq_cli_fail(st) : pq_status_exit_code(st);
    MPI_Finalize();
    return rc;
}
