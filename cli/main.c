/* SPDX-License-Identifier: Apache-2.0 */
/* main.c - the proteus command line: dispatch to subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "cli/commands.h"
#include "cli/man.h"
#include "pq_config.h"
#include "base/pq_err.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"synth", pq_cmd_synth, "write a deterministic synthetic ESM-2 checkpoint (safetensors)"},
    {"calibrate", pq_cmd_calibrate, "activation statistics on calibration proteins: collect, update, stats, export"},
    {"quantize", pq_cmd_quantize, "quantize a checkpoint into one consolidated HDF5 model"},
    {"qat", pq_cmd_qat, "quantization-aware training (or fp32 fine-tuning) into an HDF5 model"},
    {"inspect", pq_cmd_inspect, "list the tensors of a safetensors or Proteus HDF5 file"},
    {"monitor", pq_cmd_monitor, "watch a running quantize, embed or score job (its --monitor events)"},
    {"embed", pq_cmd_embed, "per-sequence ESM-2 embeddings of a FASTA file to HDF5"},
    {"score", pq_cmd_score, "masked-LM accuracy and pseudo-perplexity on a FASTA file"},
    {"evaluate", pq_cmd_evaluate, "accuracy, size and speed of a quantized model vs its fp32 reference"},
    {"bench", pq_cmd_bench, "forward-pass throughput on uniform or FASTA batches"},
    {"export", pq_cmd_export, "a quantized model as a Hugging Face or compressed-tensors folder"},
    {"optimize", pq_cmd_optimize, "choose a per-Linear recipe under size, accuracy or speed constraints"},
    {"report", pq_cmd_report, "one self-contained HTML page: SQNR, recipes, sizes, accuracy, front, trail"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: proteus <command> [options]\n"
               "       proteus --version | --help\n\n"
               "Quantize ESM-2 protein language models into one HDF5 file.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'proteus <command> --help' describes each command (--help=man: as a manual page).\n"
               "Exit status: 0 ok, 2 config/usage, 3 I/O, 4 format, 5 quantization,\n"
               "6 calibration, 7 hardware, 8 resource, 9 MPI, 10 protocol, 13 accuracy,\n"
               "14 interrupted (SIGUSR1/SIGTERM; quantize --resume goes on).\n");
}

/* proteus(1): the commands, the exit statuses, the environment and files. */
static void man_page(FILE *f)
{
    pq_man_header(f, "proteus", "quantize ESM-2 protein language models into one HDF5 file");
    fputs(".SH SYNOPSIS\n.nf\nproteus \\fIcommand\\fR [\\fIoptions\\fR]\nproteus \\-\\-version | \\-\\-help\n"
          "mpirun \\-n \\fIN\\fR proteus quantize ...\n.fi\n.SH DESCRIPTION\n"
          "Proteus quantizes the weights of ESM\\-2 checkpoints over MPI ranks into one consolidated "
          "HDF5 file, and runs, evaluates and exports such models.\nEach command has its own page, "
          "proteus\\-\\fIcommand\\fR(1), and its own \\-\\-help.\n.SH COMMANDS\n", f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(f, ".TP\n.BR proteus\\-%s (1)\n", commands[i].name);
        pq_man_puts(f, commands[i].summary);
        fputc('\n', f);
    }
    fputs(".SH EXIT STATUS\n.nf\n0 ok, 2 config/usage, 3 I/O, 4 format, 5 quantization,\n"
          "6 calibration, 7 hardware, 8 resource, 9 MPI, 10 protocol, 13 accuracy\n.fi\n"
          ".SH ENVIRONMENT\n.TP\n.B PROTEUS_DATA_DIR\nThe folder of the bundled data "
          "(proteins/calib_sample.fasta, the default calibration sample); when set, the only "
          "place looked at.\n.TP\n.B OPENBLAS_CORETYPE\nThe kernels OpenBLAS runs the fp32 products "
          "with. Unset, on a CPU with AVX\\-512 Proteus sets it to SkylakeX before it loads the library: "
          "a release of OpenBLAS that does not know the CPU's model would run its SSE3 kernels "
          "(\\-v names the kernels in use).\n.SH FILES\n.TP\n.I " PQ_INSTALL_DATADIR "\n"
          "The bundled data: calibration and evaluation samples, a small trained model "
          "(looked for also in ../share/proteus beside the executable and in the source tree "
          "the program was built from).\n", f);
}

int pq_cli_fail(int status)
{
    pq_status st = (pq_status)status;
    const char *d = pq_err_detail();
    fprintf(stderr, "proteus: %s%s%s\n", pq_strerror(st), *d ? ": " : "", d);
    return pq_status_exit_code(st);
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--help=man")) { man_page(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("proteus %s\n", PQ_VERSION); return 0; }
    /* a file size limit (ulimit -f) then fails the write that passes it
     * with EFBIG, reported like any I/O error, instead of killing us */
    signal(SIGXFSZ, SIG_IGN);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (argc == 3 && !strcmp(argv[2], "--help=man")) {
                char page[64];
                snprintf(page, sizeof page, "proteus-%s", commands[i].name);
                pq_man_header(stdout, page, commands[i].summary);
            }
            int rc = commands[i].run(argc - 1, argv + 1);
            /* Every output is closed and renamed and MPI is finalized by
             * now: the libraries' exit handlers would only free memory
             * (HDF5's free lists: ~4 ms at the end of every rank's run). */
            fflush(NULL);
#ifdef __SANITIZE_ADDRESS__
            /* the sanitizer build (tests/sanitize/run.sh) checks for leaks
             * here: _exit skips LeakSanitizer's own check at exit */
            __lsan_do_leak_check();
#endif
            _exit(rc);
        }
    fprintf(stderr, "proteus: config error: unknown command '%s' (try 'proteus --help')\n", argv[1]);
    return 2;
}
