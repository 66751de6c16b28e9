/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_quantize.c - `proteus quantize`: checkpoint in, one consolidated HDF5
 * out, on one process or N MPI ranks: its options, the run
 * (coordinator/quantize_run.h), its printing. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "coordinator/monitor.h"
#include "coordinator/quantize_run.h"
#include "pipeline/config.h"
#include "worker/mpi_start.h"

#define UNIT_BYTES (64ll << 20)

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus quantize --model IN --out OUT.h5 [options]\n"
"       mpirun -n N proteus quantize ...   |   srun --mpi=pmix -n N proteus quantize ...\n\n"
"Quantize the weights of an ESM-2 checkpoint (Hugging Face safetensors: one file,\n"
"a sharded model.safetensors.index.json, or a directory) into one HDF5 file.\n"
"OUT.h5 appears only when the run is complete (it is written as OUT.h5.partial).\n"
"Under MPI every rank reads its own share of the units straight from the checkpoint\n"
"(which must be visible to all ranks at the same path); rank 0 writes the file,\n"
"and the ranks on its machine put their own codes into it.\n"
"The output datasets are identical for any number of ranks and threads.\n\n"
"  --model PATH            input checkpoint (required)\n"
"  --out PATH              output HDF5 file (required)\n"
"  --config FILE.json      config file; command-line options override it\n"
"  --scheme dynamic        weight round-to-nearest, activations quantized at run time\n"
"  --scheme static         also int8 activation scales per Linear input, from\n"
"                          --calibration-data F.fasta or --calibration calib.h5 (default:\n"
"                          the bundled data/proteins/calib_sample.fasta, 128 sequences)\n"
"  --calibration-method M  minmax | entropy | percentile | mse (static scheme)\n"
"  --precision int8|int4   weight bits (default int8)\n"
"  --per-tensor            one scale per tensor (default)\n"
"  --per-channel           one scale per output row\n"
"  --group-size N          one scale per row and N input columns (even, 32..256)\n"
"  --symmetric             zero point 0, int8 range [-127,127] (default)\n"
"  --asymmetric            integer zero point, int8 range [-128,127]\n"
"  --include PATTERN       quantize the 2-D tensors matching PATTERN instead of the\n"
"                          default six Linear weights per layer (repeatable, fnmatch)\n"
"  --exclude PATTERN       keep matching tensors in float (repeatable)\n"
"  --nan-policy P          error (default) | zero | keep (NaN/Inf tensor stays float)\n"
"  --float-dtype fp32|fp16 storage of the tensors kept in float (default fp32)\n"
"  --hardware-target T     cpu (default, best kernels) | ref | avx2 | avx512 | cuda\n"
"  --threads N             threads per rank (0 = the node's cores shared among\n"
"                          the ranks on it, at most the cores the launcher bound\n"
"                          the rank to; the default)\n"
"  --no-threading          one thread per rank\n"
"  --unit-bytes N          split quantized tensors into work units of at most N\n"
"                          bytes of fp32 input (default 64 MiB; suffixes k, M, G);\n"
"                          smaller units balance ranks better, per-tensor scales\n"
"                          are never split\n"
"  --monitor ENDPOINT      publish progress events (protobuf ProgressEvent) on a\n"
"                          ZeroMQ PUB socket, e.g. tcp://127.0.0.1:5555; watch with\n"
"                          'proteus monitor ENDPOINT'. Loopback only unless\n"
"  --monitor-allow-remote  is given. A failing monitor never fails the run.\n"
"  --monitor-wait S        wait up to S seconds (default 1) for a first monitor to\n"
"                          connect before starting, so it sees the whole run\n"
"  -q, --quiet             no progress and no per-tensor table\n"
"  -v, --verbose           log details\n"
"  -h, --help              this text\n\n"
"Progress: a live bar on a terminal, one line per 5%% otherwise (Slurm logs).\n"
"The summary ends with the peak memory (RSS) of every rank.\n\n"
"Config keys: scheme, precision, per_channel, group_size, symmetric,\n"
"calibration_method, hardware_target, optimize_memory, enable_fusion, threading,\n"
"threads, nan_policy, float_dtype, include, exclude.\n");
}

static int parse_bytes(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    if (end == s) return -1;
    if (*end == 'k' || *end == 'K') { mul = 1024; end++; }
    else if (*end == 'M') { mul = 1024.0 * 1024; end++; }
    else if (*end == 'G') { mul = 1024.0 * 1024 * 1024; end++; }
    if (*end == 'B' || *end == 'i') end++;
    if (*end || v * mul < 1 || v * mul > 1e15) return -1;
    *out = (int64_t)(v * mul);
    return 0;
}

typedef struct qopts {
    const char *model, *out, *cfg_file, *monitor;
    bool allow_remote;
    double monitor_wait;
    int64_t unit_bytes;
    int quiet;
    const char *calib_data, *calib_store; /* static scheme */
} qopts;

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
        strncat(cmdline, i ? " " : "proteus ", sizeof cmdline - strlen(cmdline) - 1);
        strncat(cmdline, argv[i], sizeof cmdline - strlen(cmdline) - 1);
    }
    qprint pr = {.o = o};
    pq_cli_progress_init(&pr.bar, stderr, o->quiet);
    const pq_quantize_request q = {
        .model = o->model, .out = o->out, .config_file = o->cfg_file, .calib_data = o->calib_data,
        .calib_store = o->calib_store, .monitor = o->monitor, .monitor_wait = o->monitor_wait,
        .unit_bytes = o->unit_bytes, .command_line = cmdline, .progress = print_progress,
        .report = print_report, .fail = pq_cli_fail, .user = &pr,
    };
    return pq_quantize_run(cfg, &q);
}

int pq_cmd_quantize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"out", required_argument, 0, 'o'},
        {"config", required_argument, 0, 'c'}, {"scheme", required_argument, 0, 1},
        {"precision", required_argument, 0, 2}, {"per-tensor", no_argument, 0, 3},
        {"per-channel", no_argument, 0, 4}, {"group-size", required_argument, 0, 5},
        {"symmetric", no_argument, 0, 6}, {"asymmetric", no_argument, 0, 7},
        {"include", required_argument, 0, 8}, {"exclude", required_argument, 0, 9},
        {"nan-policy", required_argument, 0, 10}, {"float-dtype", required_argument, 0, 11},
        {"hardware-target", required_argument, 0, 12}, {"threads", required_argument, 0, 13},
        {"no-threading", no_argument, 0, 14}, {"unit-bytes", required_argument, 0, 15},
        {"monitor", required_argument, 0, 16}, {"monitor-allow-remote", no_argument, 0, 17},
        {"monitor-wait", required_argument, 0, 18}, {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'}, {"calibration-data", required_argument, 0, 19},
        {"calibration", required_argument, 0, 20}, {"calibration-method", required_argument, 0, 21}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    qopts o = {.unit_bytes = UNIT_BYTES, .monitor_wait = 1.0};
    int rc = 0;
    /* Options are applied after the config file; remember them in order. */
    const char *keys[64], *vals[64];
    int n_set = 0;
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
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:c:qvh", opts, NULL)) != -1) {
        const char *k = NULL, *v = optarg;
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'o': o.out = optarg; break;
        case 'c': o.cfg_file = optarg; break;
        case 1: k = "scheme"; break;
        case 2: k = "precision"; break;
        case 3: k = "per_channel"; v = "false"; break;
        case 4: k = "per_channel"; v = "true"; break;
        case 5: k = "group_size"; break;
        case 6: k = "symmetric"; v = "true"; break;
        case 7: k = "symmetric"; v = "false"; break;
        case 8: k = "include"; break;
        case 9: k = "exclude"; break;
        case 10: k = "nan_policy"; break;
        case 11: k = "float_dtype"; break;
        case 12: k = "hardware_target"; break;
        case 13: k = "threads"; break;
        case 14: k = "threading"; v = "false"; break;
        case 15:
            if (parse_bytes(optarg, &o.unit_bytes)) {
                rc = pq_cli_usage_error("quantize", "--unit-bytes '%s': expected a positive size like 65536 or 4M",
                                        optarg);
                goto done;
            }
            break;
        case 16: o.monitor = optarg; break;
        case 17: o.allow_remote = true; break;
        case 18: {
            char *end;
            o.monitor_wait = strtod(optarg, &end);
            if (*end || end == optarg || o.monitor_wait < 0 || o.monitor_wait > 3600) {
                rc = pq_cli_usage_error("quantize", "--monitor-wait '%s': expected seconds (0..3600)", optarg);
                goto done;
            }
            break;
        }
        case 19: o.calib_data = optarg; break;
        case 20: o.calib_store = optarg; break;
        case 21: k = "calibration_method"; break;
        case 'q': o.quiet = 1; break;
        case 'v': pq_log_set_level(PQ_LOG_DEBUG); break;
        case 'h': help(stdout); pq_config_free(&cfg); return 0;
        case ':': rc = pq_cli_usage_error("quantize", "option '%s' needs a value", argv[optind - 1]); goto done;
        default: rc = pq_cli_usage_error("quantize", "unknown option '%s'", argv[optind - 1]); goto done;
        }
        if (k) {
            if (n_set == 64) { rc = pq_cli_usage_error("quantize", "too many options"); goto done; }
            keys[n_set] = k;
            vals[n_set++] = v;
        }
    }
    if (optind < argc) { rc = pq_cli_usage_error("quantize", "unexpected argument '%s'", argv[optind]); goto done; }
    if (!o.model) { rc = pq_cli_usage_error("quantize", "--model is required"); goto done; }
    if (!o.out) { rc = pq_cli_usage_error("quantize", "--out is required"); goto done; }
    if (o.monitor && (st = pq_monitor_check_endpoint(o.monitor, o.allow_remote))) { rc = pq_cli_fail(st); goto done; }
    if (o.cfg_file && (st = pq_config_load_json(&cfg, o.cfg_file))) { rc = pq_cli_fail(st); goto done; }
    for (int i = 0; i < n_set; i++)
        if ((st = pq_config_set(&cfg, keys[i], vals[i]))) { rc = pq_cli_fail(st); goto done; }
    /* --group-size on the command line overrides a config file's per_channel,
     * but asking for both on the command line is a contradiction (validated). */
    int cli_channel = 0, cli_group = 0;
    for (int i = 0; i < n_set; i++) {
        if (!strcmp(keys[i], "per_channel") && !strcmp(vals[i], "true")) cli_channel = 1;
        if (!strcmp(keys[i], "group_size") && cfg.group_size) cli_group = 1;
    }
    if (cli_group && !cli_channel) cfg.per_channel = false;
    if ((o.calib_data || o.calib_store) && (strcmp(cfg.scheme, "static") || (o.calib_data && o.calib_store))) {
        rc = pq_cli_usage_error("quantize", "--calibration-data / --calibration: one of them, with --scheme static");
        goto done;
    }

    if (saved_err >= 0) { fflush(stderr); dup2(saved_err, 2); close(saved_err); saved_err = -1; }
    rc = run(&cfg, &o, argc, argv);
done:
    if (saved_err >= 0) { fflush(stderr); dup2(saved_err, 2); close(saved_err); }
    pq_config_free(&cfg);
    return rc;
}
