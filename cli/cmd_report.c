/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_report.c - `proteus report`: one self-contained HTML page about a
 * quantized model (engine/report/report.h); this file holds its options. */
#include <stddef.h>
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "report/report.h"

typedef struct report_opts {
    const char *model, *evaluate, *optimize, *out;
    bool no_verify, quiet;
} report_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "out", .letter = 'o', .kind = PQ_CLI_STR, .offset = offsetof(report_opts, out),
     .flags = PQ_CLI_REQUIRED, .meta = "HTML", .help = "the page to write (replaced only once complete)"},
    {.name = "evaluate", .kind = PQ_CLI_STR, .offset = offsetof(report_opts, evaluate), .meta = "E.json",
     .help = "`proteus evaluate --json` of this model: output SQNR per Linear,\n"
             "accuracy, KL, confidence, error rates, speed and utilization"},
    {.name = "optimize", .kind = PQ_CLI_STR, .offset = offsetof(report_opts, optimize), .meta = "O.json",
     .help = "`proteus optimize --json`: sensitivity per Linear and candidate\nrecipe, the Pareto front of "
             "size against accuracy, the\nchosen recipe and the constraints it met or not"},
    {.name = "no-verify-checksums", .kind = PQ_CLI_FLAG, .offset = offsetof(report_opts, no_verify),
     .help = "do not read the tensors' data to verify their Fletcher-32\nchecksums (the metadata is still "
             "checked)"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(report_opts, quiet),
     .help = "no closing line"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "report",
    .usage = "usage: proteus report Q.h5 [--evaluate E.json] [--optimize O.json] --out report.html",
    .about = "Write one self-contained HTML page about a quantized Proteus model: inline SVG and\n"
             "CSS, no script, nothing fetched, so it opens offline in any browser. It holds\n"
             "heatmaps per layer and Linear (q k v o fc1 fc2) of the weight SQNR (10 log10 of\n"
             "sum w^2 / sum (w - w_hat)^2, from the file's /metrics), of the output SQNR\n"
             "(--evaluate) and of the sensitivity of each candidate recipe (--optimize); the\n"
             "recipe of every tensor (/recipe) and the bytes per precision against fp32;\n"
             "accuracy, KL and the other metrics against the reference (--evaluate); the Pareto\n"
             "front of size against accuracy with the chosen point (--optimize); the fallback\n"
             "trail and the provenance the file records. The model is read and checked whole\n"
             "first, as `inspect` does. A section whose input is not given says how to get it.",
    .opts = k_opts,
    .epilog = "Exit status: 2 for an --out that is a folder or one of the inputs, 3 for a file\n"
              "that cannot be read or written, 4 for a model that is not a valid Proteus file or\n"
              "a JSON input that does not parse or has a key of the wrong type (the file and the\n"
              "key are named). The page appears only when complete (written as OUT.partial).",
    .operand = "Q.h5",
    .operand_offset = offsetof(report_opts, model),
    .operand_error = "expected exactly one model Q.h5",
};

int pq_cmd_report(int argc, char **argv)
{
    report_opts o = {0};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    pq_report_opts r = {.model = o.model, .evaluate = o.evaluate, .optimize = o.optimize, .out = o.out,
                        .no_verify = o.no_verify};
    pq_status st = pq_report_run(&r);
    if (st) return pq_cli_fail(st);
    if (!o.quiet) printf("wrote %s\n", o.out);
    return 0;
}
