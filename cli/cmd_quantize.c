/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_quantize.c - `proteus quantize`: checkpoint in, one consolidated HDF5
 * out, on one process or N MPI ranks: its options, the run
 * (coordinator/quantize_run.h), its printing. */
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "coordinator/monitor.h"
#include "coordinator/quantize_run.h"
#include "pipeline/config.h"
#include "pipeline/fallback.h"
#include "worker/mpi_start.h"

#define UNIT_BYTES (64ll << 20)

typedef struct qopts {
    const char *model, *out, *monitor;
    bool allow_remote, quiet, verbose, resume, keep_best;
    const char *eval_data;                /* the fallback's held-out sequences */
    int64_t eval_max_seqs;
    int max_attempts;
    double monitor_wait;
    int64_t unit_bytes;
    const char *calib_data, *calib_store; /* static scheme */
    pq_cli_config cfg;                    /* --config and the keys given as options */
} qopts;

#define QKEY(opt, k, m, h) {.name = opt, .kind = PQ_CLI_CONFIG, .offset = offsetof(qopts, cfg), .key = k, .meta = m, .help = h}
#define QSET(opt, k, v, h) {.name = opt, .kind = PQ_CLI_CONFIG, .offset = offsetof(qopts, cfg), .key = k, .value = v, .help = h}

static const pq_cli_opt k_opts[] = {
    {.name = "model", .letter = 'm', .kind = PQ_CLI_STR, .offset = offsetof(qopts, model), .flags = PQ_CLI_REQUIRED,
     .meta = "PATH", .help = "input checkpoint"},
    {.name = "out", .letter = 'o', .kind = PQ_CLI_STR, .offset = offsetof(qopts, out), .flags = PQ_CLI_REQUIRED,
     .meta = "PATH", .help = "output HDF5 file"},
    {.name = "config", .letter = 'c', .kind = PQ_CLI_STR, .offset = offsetof(qopts, cfg.file), .meta = "FILE.json",
     .help = "config file; command-line options override it"},
    QKEY("scheme", "scheme", "S", "dynamic: weight round-to-nearest, activations quantized at run time;\n"
         "static: also int8 activation scales per Linear input, from\n--calibration-data F.fasta or --calibration "
         "calib.h5 (default:\nthe bundled data/proteins/calib_sample.fasta, 128 sequences);\n"
         "weight-only: activations stay fp32 (W8A16/W4A16). int8 and\nint4 weights (W8A8/W4A8) alike; the file "
         "records the scheme"),
    {.name = "calibration-data", .kind = PQ_CLI_STR, .offset = offsetof(qopts, calib_data), .meta = "F.fasta",
     .help = "calibration sequences (static scheme)"},
    {.name = "calibration", .kind = PQ_CLI_STR, .offset = offsetof(qopts, calib_store), .meta = "calib.h5",
     .help = "a calibration store (proteus calibrate; static scheme)"},
    QKEY("calibration-method", "calibration_method", "M", "minmax | entropy | percentile | mse (static scheme)"),
    QKEY("method", "method", "rtn|gptq", "weight rounding: rtn (default, round to nearest) or gptq\n(layer by layer "
         "from the Hessians of the Linears' inputs on\n--calibration-data or the bundled sample; needs\n--per-channel or "
         "--group-size)"),
    QSET("act-order", "act_order", "true", "GPTQ: columns by descending Hessian diagonal (static\ngroups)"),
    QKEY("gptq-damp", "gptq_damp", "F", "GPTQ damping, fraction of the mean Hessian diagonal\n(default 0.01)"),
    QKEY("gptq-block-size", "gptq_block_size", "N", "GPTQ lazy-update block in columns (default 128)"),
    QKEY("smoothquant", "smoothquant_alpha", "ALPHA", "SmoothQuant before W8A8 (int8, static or dynamic):\n"
         "fold s = max|X|^ALPHA / max|W|^(1-ALPHA) into the LayerNorms\nbefore q/k/v and fc1, ALPHA in (0, 1] (paper: 0.5); "
         "max|X|\nfrom the calibration data as the static scheme's"),
    QKEY("precision", "precision", "int8|int4", "weight bits (default int8)"),
    QSET("per-tensor", "per_channel", "false", "one scale per tensor (default)"),
    QSET("per-channel", "per_channel", "true", "one scale per output row"),
    QKEY("group-size", "group_size", "N", "one scale per row and N input columns (even, 32..256)"),
    QSET("symmetric", "symmetric", "true", "zero point 0, int8 range [-127,127] (default)"),
    QSET("asymmetric", "symmetric", "false", "integer zero point, int8 range [-128,127]"),
    QKEY("recipe", "recipe", "FILE.json", "per-tensor precisions: rules that pick tensors by name\n(globs), "
         "layers (\"0-2\") and Linears (q k v o fc1 fc2)\nand give them int8 | int4 | fp16 | fp32, per_channel,\n"
         "group_size, symmetric; the first matching rule wins, the\nrest keep these options (docs/FORMAT.md, "
         "Recipe files)"),
    QKEY("include", "include", "PATTERN", "quantize the 2-D tensors matching PATTERN instead of the\n"
         "default six Linear weights per layer (repeatable, fnmatch)"),
    QKEY("exclude", "exclude", "PATTERN", "keep matching tensors in float (repeatable)"),
    QKEY("nan-policy", "nan_policy", "P", "error (default) | zero | keep (NaN/Inf tensor stays float)"),
    QKEY("float-dtype", "float_dtype", "fp32|fp16", "storage of the tensors kept in float (default fp32)"),
    QKEY("digest", "digest", "xxh3|sha256", "the hash of the source digest the file records\n(source_digest_tree): xxh3 "
         "(XXH3-128, not cryptographic; the\ndefault where built with libxxhash) or sha256"),
    QKEY("hardware-target", "hardware_target", "T", "cpu (default, best kernels) | ref | avx2 | avx512 | cuda"),
    QKEY("threads", "threads", "N", "threads per rank (0 = the node's cores shared among\nthe ranks on it, at most "
         "the cores the launcher bound\nthe rank to; the default)"),
    QSET("no-threading", "threading", "false", "one thread per rank"),
    {.name = "unit-bytes", .kind = PQ_CLI_BYTES, .offset = offsetof(qopts, unit_bytes), .lo = 1, .meta = "N",
     .help = "split quantized tensors into work units of at most N\nbytes of fp32 input (default 64 MiB; suffixes "
             "k, M, G);\nsmaller units balance ranks better, per-tensor scales\nare never split"},
    QKEY("allow-accuracy-drop", "allow_accuracy_drop", "F", "the masked-LM accuracy the file may lose against the\n"
         "checkpoint, as a FRACTION of accuracy in [0, 1]: 0.01 allows one\npercentage point, 0.001 a tenth. Every "
         "attempt is evaluated\non --eval-data; when it loses more, the next attempt is tried:\n"
         "--fallback-scheme, then int8 for the tensors that were int4,\nthen the quantized Linear with the lowest "
         "output SQNR in the\nlast evaluation (that Linear on the reference's own input)\nkept in float, one more "
         "per attempt, until within the budget\nor every Linear is float. Each attempt is printed and the\n"
         "trail recorded in /provenance fallback_trail; none within\nit: exit status 13, no file (see --keep-best)"),
    QKEY("fallback-scheme", "fallback_scheme", "S", "the scheme tried next when the requested one loses more\n"
         "than --allow-accuracy-drop or its calibration fails (no usable\nsequence, a site that never fired, a "
         "store of another model):\ndynamic | static | weight-only (with weight-only, SmoothQuant\nis off; "
         "besides static, calibration_method is minmax)"),
    {.name = "eval-data", .kind = PQ_CLI_STR, .offset = offsetof(qopts, eval_data), .meta = "F.fasta",
     .help = "the fallback's held-out sequences (default: the bundled\ndata/proteins/eval_sample.fasta, 200 "
             "sequences); evaluated as\n`proteus evaluate` does (15 % masked, seed 0, at most 500\nresidues each)"},
    {.name = "eval-max-seqs", .kind = PQ_CLI_I64, .offset = offsetof(qopts, eval_max_seqs), .lo = 1, .meta = "N",
     .help = "evaluate on the first N sequences only (default: all)"},
    {.name = "fallback-max-attempts", .kind = PQ_CLI_INT, .offset = offsetof(qopts, max_attempts), .lo = 1,
     .meta = "N", .help = "stop the fallback after N attempts (default: no limit)"},
    {.name = "keep-best", .kind = PQ_CLI_FLAG, .offset = offsetof(qopts, keep_best),
     .help = "when no attempt is within --allow-accuracy-drop, write the\none that lost the least (then the "
             "smaller KL) still; the exit\nstatus stays 13"},
    {.name = "resume", .kind = PQ_CLI_FLAG, .offset = offsetof(qopts, resume),
     .help = "go on from OUT.journal, the record of an earlier run of the\nsame command that stopped (kill, crash, "
             "Slurm time limit):\nits units are checked and kept, the missing ones run; the\nfile is the same, byte "
             "for byte, as an uninterrupted run's\n(any rank count). Without a journal: a normal run. A journal\n"
             "of another model, configuration or version is refused.\nWithout --resume an existing journal is refused"},
    {.name = "monitor", .kind = PQ_CLI_STR, .offset = offsetof(qopts, monitor), .meta = "ENDPOINT",
     .help = "publish progress events (protobuf ProgressEvent) on a\nZeroMQ PUB socket, e.g. tcp://127.0.0.1:5555; "
             "watch with\n'proteus monitor ENDPOINT'. Loopback only unless\n--monitor-allow-remote is given. "
             "A failing monitor never\nfails the run."},
    {.name = "monitor-allow-remote", .kind = PQ_CLI_FLAG, .offset = offsetof(qopts, allow_remote),
     .help = "let --monitor listen beyond the loopback"},
    {.name = "monitor-wait", .kind = PQ_CLI_F64, .offset = offsetof(qopts, monitor_wait), .lo = 0, .hi = 3600,
     .meta = "S", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "wait up to S seconds for a first monitor to\nconnect before starting, so it sees the whole run"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(qopts, quiet),
     .help = "no progress and no per-tensor table"},
    {.name = "verbose", .letter = 'v', .kind = PQ_CLI_FLAG, .offset = offsetof(qopts, verbose), .help = "log details"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "quantize",
    .usage = "usage: proteus quantize --model IN --out OUT.h5 [options]\n"
             "       mpirun -n N proteus quantize ...   |   srun --mpi=pmix -n N proteus quantize ...",
    .about = "Quantize the weights of an ESM-2 checkpoint (Hugging Face safetensors: one file,\n"
             "a sharded model.safetensors.index.json, or a directory; or PyTorch: fair-esm's\n"
             ".pt, pytorch_model.bin, a sharded pytorch_model.bin.index.json, read without\n"
             "running anything in the pickle) into one HDF5 file.\n"
             "OUT.h5 appears only when the run is complete (it is written as OUT.h5.partial).\n"
             "Under MPI every rank reads its own share of the units straight from the checkpoint\n"
             "(which must be visible to all ranks at the same path); rank 0 writes the file,\n"
             "and the ranks on its machine put their own codes into it.\n"
             "The output datasets are identical for any number of ranks and threads.",
    .opts = k_opts,
    .epilog = "Progress: a live bar on a terminal, one line per 5% otherwise (Slurm logs).\n"
              "Rank 0 records every finished unit in OUT.journal (fsync'd at least once a\n"
              "second), which --resume goes on from; it is removed once OUT is in place. Its\n"
              "lock refuses a second run with the same --out. SIGUSR1 (Slurm's warning before\n"
              "the time limit) and SIGTERM stop the ranks after their current units, keep\n"
              "the journal, and exit with status 14 (interrupted).\n"
              "The summary ends with the peak memory (RSS) of every rank.\n\n"
              "Config keys: scheme, precision, per_channel, group_size, symmetric,\n"
              "calibration_method, hardware_target, optimize_memory, enable_fusion, threading,\n"
              "threads, nan_policy, float_dtype, include, exclude, smoothquant_alpha, method,\n"
              "gptq_damp, gptq_block_size, act_order, fallback_scheme, allow_accuracy_drop.\n\n"
              "Fallback: the attempts are written as OUT.attemptN.h5 beside OUT, evaluated\n"
              "against the checkpoint on rank 0 and removed; the one accepted becomes OUT.\n"
              "They cannot be resumed (--resume is refused with a fallback).",
};

/* What rank 0 prints: progress while it runs, the summary at the end. */
typedef struct qprint {
    const qopts *o;
    pq_cli_progress bar;
} qprint;

static void print_progress(void *user, const pq_progress *ev)
{
    qprint *p = user;
    pq_cli_progress_cb(&p->bar, ev);
}

static void print_attempt(void *user, const pq_fb_attempt *a, double budget)
{
    (void)user;
    const pq_qspec *g = &a->global;
    char gs[16] = "";
    if (g->gran == PQ_GRAN_GROUP) snprintf(gs, sizeof gs, " %d", g->group_size);
    printf("fallback attempt %d (%s; %s int%d %s%s %s, %d Linear%s kept float)", a->number, a->what, a->scheme,
           g->bits, g->gran == PQ_GRAN_GROUP ? "group" : g->gran == PQ_GRAN_CHANNEL ? "per-channel" : "per-tensor",
           gs, g->symmetric ? "symmetric" : "asymmetric", a->n_kept, a->n_kept == 1 ? "" : "s");
    if (a->status) {
        printf(": %s\n", a->error);
    } else {
        char verdict[96] = "";
        if (!isnan(budget))
            snprintf(verdict, sizeof verdict, ", %s %.2f pt allowed", a->met ? "within the" : "over the",
                     100 * budget);
        printf(": masked-LM accuracy %.2f %% (reference %.2f %%), drop %.2f pt%s, KL %.3g, %.2f MB%s\n",
               100 * a->accuracy, 100 * a->reference_accuracy, 100 * a->drop, verdict, a->kl,
               (double)a->bytes / 1e6, a->met ? ": accepted" : "");
    }
    fflush(stdout);
}

static void print_report(void *user, const pq_job_stats *s, const double *rss_mib, int n_ranks)
{
    qprint *p = user;
    pq_cli_print_summary(stdout, s, !p->o->quiet);
    pq_cli_print_ranks(stdout, rss_mib, n_ranks, s->seconds_quantize);
    printf("wrote %s\n", p->o->out);
}

/* Everything after the options are known to be valid, on every rank. */
static int run(pq_config *cfg, const qopts *o, int argc, char **argv)
{
    char cmdline[4096] = "";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) continue; /* the resumed file is the uninterrupted one */
        strncat(cmdline, i ? " " : "proteus ", sizeof cmdline - strlen(cmdline) - 1);
        strncat(cmdline, argv[i], sizeof cmdline - strlen(cmdline) - 1);
    }
    qprint pr = {.o = o};
    pq_cli_progress_init(&pr.bar, stderr, o->quiet);
    const pq_quantize_request q = {
        .model = o->model, .out = o->out, .config_file = o->cfg.file, .calib_data = o->calib_data,
        .calib_store = o->calib_store, .monitor = o->monitor, .monitor_wait = o->monitor_wait,
        .unit_bytes = o->unit_bytes, .resume = o->resume, .command_line = cmdline, .eval_data = o->eval_data,
        .eval_max_seqs = o->eval_max_seqs, .keep_best = o->keep_best, .max_attempts = o->max_attempts,
        .progress = print_progress, .attempt = print_attempt, .report = print_report, .fail = pq_cli_fail,
        .user = &pr,
    };
    return pq_quantize_run(cfg, &q);
}

/* The fallback's options: each needs the others it works with, and the
 * fallback scheme must be another scheme this configuration can run. */
static int check_fallback(const qopts *o, const pq_config *cfg)
{
    bool budget = !isnan(cfg->allow_accuracy_drop), wanted = budget || cfg->fallback_scheme[0];
    const char *lone = o->keep_best && !budget ? "--keep-best" : o->max_attempts && !wanted ?
                       "--fallback-max-attempts" : o->eval_data && !wanted ? "--eval-data" :
                       o->eval_max_seqs && !wanted ? "--eval-max-seqs" : NULL;
    if (lone)
        return pq_cli_usage_error("quantize", "%s works with the fallback: give --allow-accuracy-drop%s", lone,
                                  strcmp(lone, "--keep-best") ? " or --fallback-scheme" : "");
    if (wanted && o->resume)
        return pq_cli_usage_error("quantize", "--resume: the fallback's attempts are not resumable; run again "
                                  "without --resume");
    if (!cfg->fallback_scheme[0]) return 0;
    if (!strcmp(cfg->fallback_scheme, cfg->scheme))
        return pq_cli_usage_error("quantize", "--fallback-scheme %s is the scheme already asked for; name "
                                  "another one", cfg->fallback_scheme);
    pq_config c = *cfg; /* the scheme step's configuration (its pointers borrowed, not freed) */
    pq_fallback_set_scheme(&c, cfg->fallback_scheme);
    pq_status st = pq_config_validate(&c);
    if (st) {
        char why[1024];
        snprintf(why, sizeof why, "%s", pq_err_detail());
        return pq_cli_fail(pq_err_replace(st, "--fallback-scheme %s: %s", cfg->fallback_scheme, why));
    }
    return 0;
}

int pq_cmd_quantize(int argc, char **argv)
{
    qopts o = {.unit_bytes = UNIT_BYTES, .monitor_wait = 1.0};
    int rc = 0;
    pq_config cfg;
    pq_status st;
    int saved_err = -1;

    /* Only the launcher's rank 0 prints option errors: every rank finds the
     * same ones. stderr comes back before the run starts. */
    if (pq_mpi_launcher_rank() != 0) {
        int dn = open("/dev/null", O_WRONLY);
        fflush(stderr);
        if (dn >= 0 && (saved_err = dup(2)) >= 0) dup2(dn, 2);
        if (dn >= 0) close(dn);
    }
    pq_config_defaults(&cfg);
    if ((rc = pq_cli_parse(&k_cmd, argc, argv, &o)) != PQ_CLI_RUN) goto done;
    rc = 0;
    if (o.verbose) pq_log_set_level(PQ_LOG_DEBUG);
    if (o.monitor && (st = pq_monitor_check_endpoint(o.monitor, o.allow_remote))) { rc = pq_cli_fail(st); goto done; }
    if ((st = pq_cli_config_load(&o.cfg, &cfg))) { rc = pq_cli_fail(st); goto done; }
    /* --group-size on the command line overrides a config file's per_channel,
     * but asking for both on the command line is a contradiction (validated). */
    if (pq_cli_config_has(&o.cfg, "group_size", NULL) && cfg.group_size &&
        !pq_cli_config_has(&o.cfg, "per_channel", "true"))
        cfg.per_channel = false;
    if ((o.calib_data || o.calib_store) &&
        ((strcmp(cfg.scheme, "static") && !(cfg.smoothquant_alpha > 0.0) && strcmp(cfg.method, "gptq")) ||
         (o.calib_data && o.calib_store) || (o.calib_store && !strcmp(cfg.method, "gptq")))) {
        rc = pq_cli_usage_error("quantize", "--calibration-data / --calibration: one of them, with --scheme static "
                                "or --smoothquant; --method gptq takes --calibration-data (its Hessians need the "
                                "sequences)");
        goto done;
    }
    if ((rc = check_fallback(&o, &cfg))) goto done;

    if (saved_err >= 0) { fflush(stderr); dup2(saved_err, 2); close(saved_err); saved_err = -1; }
    rc = run(&cfg, &o, argc, argv);
done:
    if (saved_err >= 0) { fflush(stderr); dup2(saved_err, 2); close(saved_err); }
    pq_config_free(&cfg);
    return rc;
}
