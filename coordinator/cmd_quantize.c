/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_quantize.c - `proteus quantize`: checkpoint in, one consolidated HDF5 out. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "job.h"
#include "log.h"

#define UNIT_BYTES (64ll << 20)

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus quantize --model IN --out OUT.h5 [options]\n\n"
"Quantize the weights of an ESM-2 checkpoint (Hugging Face safetensors: one file,\n"
"a sharded model.safetensors.index.json, or a directory) into one HDF5 file.\n"
"OUT.h5 appears only when the run is complete (it is written as OUT.h5.partial).\n\n"
"  --model PATH            input checkpoint (required)\n"
"  --out PATH              output HDF5 file (required)\n"
"  --config FILE.json      config file; command-line options override it\n"
"  --scheme dynamic        weight round-to-nearest, activations quantized at run time\n"
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
"  --threads N             threads per process (0 = all cores, default)\n"
"  --no-threading          one thread\n"
"  -q, --quiet             no progress and no per-tensor table\n"
"  -v, --verbose           log details\n"
"  -h, --help              this text\n\n"
"Config keys: scheme, precision, per_channel, group_size, symmetric,\n"
"calibration_method, hardware_target, optimize_memory, enable_fusion, threading,\n"
"threads, nan_policy, float_dtype, include, exclude.\n");
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
        {"no-threading", no_argument, 0, 14}, {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *model = NULL, *out = NULL, *cfg_file = NULL;
    int quiet = 0, rc = 0;
    /* Options are applied after the config file; remember them in order. */
    const char *keys[64], *vals[64];
    int n_set = 0;
    pq_config cfg;
    pq_job *job = NULL;
    pq_status st;

    pq_config_defaults(&cfg);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:c:qvh", opts, NULL)) != -1) {
        const char *k = NULL, *v = optarg;
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'c': cfg_file = optarg; break;
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
        case 'q': quiet = 1; break;
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
    if (!model) { rc = pq_cli_usage_error("quantize", "--model is required"); goto done; }
    if (!out) { rc = pq_cli_usage_error("quantize", "--out is required"); goto done; }
    if (cfg_file && (st = pq_config_load_json(&cfg, cfg_file))) { rc = pq_cli_fail(st); goto done; }
    for (int i = 0; i < n_set; i++)
        if ((st = pq_config_set(&cfg, keys[i], vals[i]))) { rc = pq_cli_fail(st); goto done; }
    /* --group-size implies group granularity even if the config file said per_channel */
    for (int i = 0; i < n_set; i++)
        if (!strcmp(keys[i], "group_size") && cfg.group_size) cfg.per_channel = false;

    if ((st = pq_job_open(&cfg, model, UNIT_BYTES, &job))) { rc = pq_cli_fail(st); goto done; }
    pq_cli_progress prog;
    pq_cli_progress_init(&prog, stderr, quiet);
    job->progress = pq_cli_progress_cb;
    job->progress_user = &prog;
    char cmdline[4096] = "";
    for (int i = 0; i < argc; i++) {
        strncat(cmdline, i ? " " : "proteus ", sizeof cmdline - strlen(cmdline) - 1);
        strncat(cmdline, argv[i], sizeof cmdline - strlen(cmdline) - 1);
    }
    if ((st = pq_job_begin_output(job, out, 1, cmdline)) || (st = pq_job_run_all(job)) ||
        (st = pq_job_finish_output(job))) {
        rc = pq_cli_fail(st);
        goto done;
    }
    pq_cli_print_summary(stdout, &job->stats, !quiet);
    printf("wrote %s\n", out);
done:
    pq_job_destroy(job);
    pq_config_free(&cfg);
    return rc;
}
