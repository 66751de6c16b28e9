/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_export.c - `proteus export`: a quantized model in the formats other
 * tools load (engine/export/export.h, the same code as pq_export). */
#include <stddef.h>
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "export/export.h"

typedef struct export_opts {
    const char *in, *format, *out;
    int dtype;
    bool quiet;
} export_opts;

static const char *const k_dtypes[] = {"fp32", "fp16", NULL};

static const pq_cli_opt k_opts[] = {
    {.name = "format", .letter = 'f', .kind = PQ_CLI_STR, .offset = offsetof(export_opts, format),
     .flags = PQ_CLI_REQUIRED, .meta = "F",
     .help = "safetensors: a Hugging Face model folder, weights dequantized;\n"
             "compressed-tensors: the folder with the quantized Linears as integer codes;\n"
             "hdf5: a fresh, validated copy of the Proteus file"},
    {.name = "out", .letter = 'o', .kind = PQ_CLI_STR, .offset = offsetof(export_opts, out),
     .flags = PQ_CLI_REQUIRED, .meta = "PATH", .help = "the folder to create (absent or empty), or the .h5 file"},
    {.name = "dtype", .kind = PQ_CLI_CHOICE, .offset = offsetof(export_opts, dtype), .choices = k_dtypes,
     .meta = "fp32|fp16", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "storage of the float tensors of a folder (the dequantized weights too)"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(export_opts, quiet),
     .help = "no closing line"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "export",
    .usage = "usage: proteus export Q.h5 --format safetensors|compressed-tensors|hdf5 --out PATH "
             "[--dtype fp32|fp16]",
    .about = "Write a Proteus HDF5 model in a format other tools load (docs/FORMAT.md, \"Exports\").\n"
             "safetensors: config.json, model.safetensors and the tokenizer files, which\n"
             "transformers' EsmForMaskedLM.from_pretrained(PATH) loads; its logits are those of\n"
             "`proteus score --mode dequant`.\n"
             "compressed-tensors: int8 weights int-quantized, int4 pack-quantized (eight codes per\n"
             "int32), with their scales and zero points and config.json's quantization_config,\n"
             "as the compressed-tensors package (llm-compressor, vLLM) reads them.\n"
             "PATH appears only when the export is complete (it is written as PATH.partial).",
    .opts = k_opts,
    .epilog = "Exit status: 2 for a format that cannot express the model (which tensor and why),\n"
              "3 for a path that cannot be read or written, 4 for an input that is not a\n"
              "Proteus model.",
    .operand = "Q.h5",
    .operand_offset = offsetof(export_opts, in),
    .operand_error = "expected exactly one input model Q.h5",
};

int pq_cmd_export(int argc, char **argv)
{
    export_opts o = {0};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    pq_export_opts x = {.fp16 = o.dtype == 1};
    pq_status st = pq_export_format_parse(o.format, &x.format);
    if (!st) st = pq_export_run(o.in, o.out, &x);
    if (st) return pq_cli_fail(st);
    if (!o.quiet) printf("exported %s to %s (%s)\n", o.in, o.out, o.format);
    return 0;
}
