/* SPDX-License-Identifier: Apache-2.0 */
/* infer.c - the inference commands' shared options. */
#include "cli/infer.h"

#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pq_config.h"
#include "worker/mpi_start.h"
#include "worker/sync.h"

static const char *const k_modes[] = {"auto", "dequant", "weight-only", "dynamic", NULL};

static const char *const k_long[] = {"crop", "skip", "error", NULL};

const pq_cli_opt pq_cli_input_opts[] = {
    {.name = "model", .kind = PQ_CLI_STR, .offset = offsetof(pq_cli_input, model), .flags = PQ_CLI_REQUIRED,
     .meta = "M", .help = ".safetensors or PyTorch .pt/.bin (file/dir/index) or Proteus .h5"},
    {.name = "fasta", .kind = PQ_CLI_STR, .offset = offsetof(pq_cli_input, fasta), .flags = PQ_CLI_REQUIRED,
     .meta = "F", .help = "FASTA, plain or .gz"},
    {.name = "long", .kind = PQ_CLI_CHOICE, .offset = offsetof(pq_cli_input, on_long), .choices = k_long,
     .meta = "crop|skip|error", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "sequences longer than --max-length are cropped to it,\nskipped, or refused (an error naming the record)"},
    {0},
};

const pq_cli_opt pq_cli_infer_opts[] = {
    {.name = "config", .kind = PQ_CLI_STR, .offset = offsetof(pq_cli_infer, cfg.file), .meta = "FILE.json",
     .help = "configuration keys (as for quantize): enable_fusion, threading and\nthreads set the defaults "
             "of the options below"},
    {.name = "threads", .kind = PQ_CLI_I64, .offset = offsetof(pq_cli_infer, threads), .lo = 1, .hi = 4096,
     .meta = "N",
     .help = "threads (default: the config's threads, all cores;\nembed, score, evaluate: the node's cores shared by "
             "its ranks)"},
    {.name = "batch-tokens", .kind = PQ_CLI_I64, .offset = offsetof(pq_cli_infer, batch_tokens), .lo = 3,
     .meta = "N", .help = "tokens per forward batch", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "max-length", .kind = PQ_CLI_I64, .offset = offsetof(pq_cli_infer, max_length), .lo = 1,
     .meta = "L", .help = "residues per sequence (longer ones: --long)", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "mode", .kind = PQ_CLI_CHOICE, .offset = offsetof(pq_cli_infer, mode), .choices = k_modes,
     .meta = "M", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "how quantized Linears run: auto (as the file's scheme says:\nW8A8/W4A8 dynamic or static, or "
             "weight-only), dequant (fp32\non dequantized weights), weight-only (fp32 activations),\ndynamic (int8 "
             "activations per token, W8A8/W4A8)"},
    {.name = "no-fusion", .kind = PQ_CLI_CONFIG, .offset = offsetof(pq_cli_infer, cfg), .key = "enable_fusion",
     .value = "false", .help = "bias+GELU and residual adds after the GEMMs, not fused\n(config enable_fusion)"},
    {.name = "no-threading", .kind = PQ_CLI_CONFIG, .offset = offsetof(pq_cli_infer, cfg), .key = "threading",
     .value = "false", .help = "one thread (config threading)"},
    {.name = "hardware-target", .kind = PQ_CLI_CONFIG, .offset = offsetof(pq_cli_infer, cfg),
     .key = "hardware_target", .meta = "T",
     .help = "kernels: cpu (default, the best this CPU runs) | ref | avx2 |\navx512 (config hardware_target)"},
    {.name = "no-verify-checksums", .kind = PQ_CLI_FLAG, .offset = offsetof(pq_cli_infer, no_verify),
     .help = "Proteus .h5 model: skip the Fletcher-32 check of the weights\n(a damaged file then goes unnoticed); "
             "saves the check's\n~4-5 s per GB of weights on a 2-core VM (docs/PERFORMANCE.md)"},
    {0},
};

const pq_cli_opt pq_cli_run_opts[] = {
    {.name = "truncation-seq-length", .kind = PQ_CLI_I64, .offset = offsetof(pq_cli_infer, max_length), .lo = 1,
     .meta = "L", .help = "the same as --max-length (fair-esm's name)"},
    {.name = "chunk-residues", .kind = PQ_CLI_I64, .offset = offsetof(pq_cli_infer, chunk_residues), .lo = 1,
     .meta = "N", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "the input is shared out over MPI ranks in chunks of\nconsecutive sequences of about N residues"},
    {.name = "resume", .kind = PQ_CLI_FLAG, .offset = offsetof(pq_cli_infer, resume),
     .help = "continue a stopped run from OUT.journal (the same options):\nits complete chunks are not run again"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(pq_cli_infer, quiet),
     .help = "no progress line"},
    {.name = "monitor", .kind = PQ_CLI_STR, .offset = offsetof(pq_cli_infer, monitor), .meta = "ENDPOINT",
     .help = "publish progress events (one per chunk) on a ZeroMQ\nendpoint; watch with 'proteus monitor ENDPOINT'"},
    {.name = "monitor-allow-remote", .kind = PQ_CLI_FLAG, .offset = offsetof(pq_cli_infer, monitor_allow_remote),
     .help = "let --monitor listen beyond the loopback"},
    {0},
};

pq_status pq_cli_infer_model_opts(const pq_cli_infer *o, pq_esm2_model_opts *mo)
{
    pq_config cfg;
    pq_status st = pq_cli_config_load(&o->cfg, &cfg);
    if (st == PQ_OK) {
        *mo = (pq_esm2_model_opts){
            .n_threads = o->threads > 0 ? (int)o->threads : cfg.threads,
            .quantized_mode = (pq_esm2_qmode)o->mode,
            .no_fusion = !cfg.enable_fusion,
            .no_threading = !cfg.threading,
            .no_verify_checksums = o->no_verify,
        };
        st = pq_config_apply_hardware(&cfg, &mo->ops);
    }
    pq_config_free(&cfg);
    return st;
}

pq_fasta_opts pq_cli_infer_fasta_opts(const pq_cli_infer *o, const pq_cli_input *in)
{
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = o->max_length;
    if (in) fo.on_long = (pq_fasta_long)in->on_long;
    return fo;
}

int pq_cli_infer_mpi_start(int *rank, int *n_ranks)
{
    int provided, rc = pq_mpi_start(&provided);
    if (rc) return rc;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, n_ranks);
    return 0;
}

pq_status pq_cli_infer_rank_model_opts(const pq_cli_infer *o, int rank, pq_esm2_model_opts *mo)
{
    pq_status st = pq_cli_infer_model_opts(o, mo);
    if (st == PQ_OK && o->threads <= 0 && !o->cfg.file) mo->n_threads = pq_sync_threads_per_rank(MPI_COMM_WORLD, rank);
    return st;
}

char *pq_cli_infer_header(const char *cmd, const pq_cli_input *in, const pq_cli_infer *o,
                          const pq_esm2_model_opts *mo, const char *extra)
{
    struct stat sm, sf;
    char *s = NULL;
    if (stat(in->model, &sm)) memset(&sm, 0, sizeof sm);
    if (stat(in->fasta, &sf)) memset(&sf, 0, sizeof sf);
    if (asprintf(&s, "kind %s\nproteus " PQ_VERSION "\nmodel %s, %lld bytes, mtime %lld\n"
                 "fasta %s, %lld bytes, mtime %lld\nmax_length %lld\nlong %s\nchunk_residues %lld\nmode %d\n"
                 "fusion %d\nkernels %s\n%s", cmd, in->model, (long long)sm.st_size, (long long)sm.st_mtime,
                 in->fasta, (long long)sf.st_size, (long long)sf.st_mtime, (long long)o->max_length,
                 in->on_long >= 0 && in->on_long < 3 ? k_long[in->on_long] : "?", (long long)o->chunk_residues,
                 o->mode, !mo->no_fusion, mo->ops.name ? mo->ops.name : "best", extra ? extra : "") < 0)
        return NULL;
    return s;
}
