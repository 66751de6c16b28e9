/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_embed.c - `proteus embed`: per-sequence (and optionally per-token)
 * ESM-2 representations of a FASTA file, written to HDF5, on one process or
 * N MPI ranks (coordinator/infer_mpi.h runs the chunks, eval/embed_chunk.h
 * computes them and writes the file); this file holds its options and its
 * printing. */
#include <errno.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "coordinator/infer_mpi.h"
#include "coordinator/monitor.h"
#include "eval/embed_chunk.h"
#include "pipeline/outpath.h"
#include "worker/sync.h"

typedef struct embed_opts {
    pq_cli_input in;
    const char *out, *layers, *include;
    bool per_token, contacts;
    pq_cli_infer fwd;
} embed_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "input", .kind = PQ_CLI_GROUP, .offset = offsetof(embed_opts, in), .group = pq_cli_input_opts},
    {.name = "out", .kind = PQ_CLI_STR, .offset = offsetof(embed_opts, out), .flags = PQ_CLI_REQUIRED,
     .meta = "PATH", .help = "output HDF5"},
    {.name = "layers", .kind = PQ_CLI_STR, .offset = offsetof(embed_opts, layers), .meta = "LIST",
     .help = "comma-separated layer indices", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "repr-layers", .kind = PQ_CLI_STR, .offset = offsetof(embed_opts, layers), .meta = "LIST",
     .help = "the same as --layers (fair-esm's name)"},
    {.name = "include", .kind = PQ_CLI_STR, .offset = offsetof(embed_opts, include), .meta = "LIST",
     .help = "what to write per layer, comma-separated: mean, per_tok,\nbos (mean is always written)",
     .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "per-token", .kind = PQ_CLI_FLAG, .offset = offsetof(embed_opts, per_token),
     .help = "the same as --include per_tok"},
    {.name = "contacts", .kind = PQ_CLI_FLAG, .offset = offsetof(embed_opts, contacts),
     .help = "also write the contact head's residue-residue contact\nprobabilities (the model must hold "
             "contact-head weights)"},
    {.name = "inference", .kind = PQ_CLI_GROUP, .offset = offsetof(embed_opts, fwd), .group = pq_cli_infer_opts},
    {.name = "run", .kind = PQ_CLI_GROUP, .offset = offsetof(embed_opts, fwd), .group = pq_cli_run_opts},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "embed",
    .usage = "usage: proteus embed --model M --fasta F --out EMB.h5 [--layers 0,6,-1]\n"
             "                     [--include mean,per_tok,bos] [--contacts] [options]\n"
             "       mpirun -n N proteus embed ...   (the same bytes for any N and --threads)",
    .about = "Run the ESM-2 forward on every FASTA record and write its representations\n"
             "to HDF5 (written to EMB.h5.partial, renamed when complete):\n"
             "  /ids                  [n_seq] record ids in input order (fixed-length UTF-8)\n"
             "  /lengths              [n_seq] residues embedded (after cropping)\n"
             "  /layer_<i>/mean       [n_seq, D] mean over the residues (cls/eos excluded)\n"
             "  /layer_<i>/bos        [n_seq, D] the <cls> row (--include bos)\n"
             "  /layer_<i>/tokens     [sum(lengths), D] per-residue rows (--include per_tok)\n"
             "  /offsets              [n_seq + 1] row offsets into tokens (per_tok)\n"
             "  /contacts             [sum(lengths^2)] each sequence's contact map,\n"
             "                        row-major at /contact_offsets[s] (--contacts)\n"
             "Layer i is the representation after layer i (0 = embeddings; L = after the\n"
             "final LayerNorm, as fair-esm's representations[L]); negative i counts from L+1.\n"
             "The FASTA is streamed in chunks of about --chunk-residues residues, shared out\n"
             "over the MPI ranks (rank 0 included); finished chunks go to EMB.h5.journal,\n"
             "so a stopped run continues with --resume (on any number of ranks), and the\n"
             "file is assembled from it at the end (the journal is then removed). SIGUSR1\n"
             "or SIGTERM stops the run between chunks (exit status 14). Every dataset carries HDF5's\n"
             "Fletcher-32 checksum, as a Proteus model does (docs/FORMAT.md).",
    .opts = k_opts,
};

/* "0,6,-1" into req[]; the count, or -1 when it is not such a list. */
static int parse_layers(const char *p, int *req)
{
    int n = 0;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || n == PQ_EVAL_MAX_LAYERS) return -1;
        req[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

/* "mean,per_tok,bos" into w; false naming nothing known. */
static bool parse_include(const char *s, pq_embed_want *w)
{
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 4 && !strncmp(s, "mean", 4)) {
        } else if (n == 7 && !strncmp(s, "per_tok", 7)) {
            w->per_tok = true;
        } else if (n == 3 && !strncmp(s, "bos", 3)) {
            w->bos = true;
        } else {
            return false;
        }
        s += n + (s[n] == ',');
    }
    return true;
}

typedef struct embed_ctx {
    pq_esm2_model *m;
    pq_embed_want want;
} embed_ctx;

static pq_status run_chunk(void *user, const pq_chunk *ch, pq_buf *out)
{
    embed_ctx *c = user;
    return pq_embed_chunk_run(c->m, ch->recs, ch->n, &c->want, out);
}

/* A contact request on a model without the contact head fails here, before
 * any chunk runs, rather than inside one. */
static pq_status check_contacts(pq_esm2_model *m, const char *path)
{
    int32_t ids[3] = {0, 5, 2};
    int64_t off[2] = {0, 3};
    pq_esm2_batch b = {.n_seqs = 1, .offsets = off, .ids = ids};
    pq_esm2_outputs o;
    memset(&o, 0, sizeof o);
    o.want_contacts = true;
    pq_status st = pq_esm2_forward(m, &b, NULL, &o);
    pq_esm2_outputs_clear(&o);
    if (st == PQ_ERR_CONFIG)
        return pq_err(PQ_ERR_CONFIG, "--contacts: %s holds no contact-head weights "
                      "(esm.contact_head.regression.weight / .bias)", path);
    return st;
}

int pq_cmd_embed(int argc, char **argv)
{
    embed_opts o = {.layers = "-1", .include = "mean",
                    .fwd = {.batch_tokens = 4096, .max_length = 1022, .chunk_residues = 16384}};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    int req[PQ_EVAL_MAX_LAYERS], layers[PQ_EVAL_MAX_LAYERS], n_req = parse_layers(o.layers, req);
    if (n_req < 0)
        return pq_cli_usage_error("embed", "--layers '%s' is not a comma-separated list of integers", o.layers);
    if (n_req == 0) return pq_cli_usage_error("embed", "--layers is empty");
    embed_ctx ctx = {.want = {.layers = layers, .n_layers = n_req, .per_tok = o.per_token, .contacts = o.contacts,
                              .batch_tokens = o.fwd.batch_tokens}};
    if (!parse_include(o.include, &ctx.want))
        return pq_cli_usage_error("embed", "--include '%s': expected a comma-separated list of mean, per_tok, bos",
                                  o.include);
    int rank = 0, N = 1;
    if ((rc = pq_cli_infer_mpi_start(&rank, &N))) return rc;
    char *head = NULL, extra[1024];
    pq_journal *j = NULL;
    int64_t n_seq = 0, n_res = 0, resumed = 0;
    pq_esm2_model_opts mo;
    const char *inputs[] = {o.in.model, o.in.fasta};
    pq_status st = pq_cli_infer_rank_model_opts(&o.fwd, rank, &mo);
    if (st == PQ_OK && rank == 0 && o.fwd.monitor)
        st = pq_monitor_check_endpoint(o.fwd.monitor, o.fwd.monitor_allow_remote);
    if (st == PQ_OK && rank == 0) st = pq_out_check("--out", o.out, inputs, 2);
    if (st == PQ_OK) st = pq_esm2_model_open(o.in.model, &mo, &ctx.m);
    const pq_esm2_config *cfg = st == PQ_OK ? pq_esm2_model_config(ctx.m) : NULL;
    if (st == PQ_OK) st = pq_eval_embed_layers(req, n_req, cfg->num_layers, layers);
    if (st == PQ_OK && o.contacts) st = check_contacts(ctx.m, o.in.model);
    if ((st = pq_sync_agree(MPI_COMM_WORLD, st)) != PQ_OK) goto done;
    int k = snprintf(extra, sizeof extra, "layers");
    for (int i = 0; i < n_req && k > 0 && (size_t)k < sizeof extra; i++)
        k += snprintf(extra + k, sizeof extra - (size_t)k, "%s%d", i ? "," : " ", layers[i]);
    if (k > 0 && (size_t)k < sizeof extra)
        snprintf(extra + k, sizeof extra - (size_t)k, "\ninclude mean%s%s\ncontacts %d\n",
                 ctx.want.per_tok ? ",per_tok" : "", ctx.want.bos ? ",bos" : "", ctx.want.contacts);
    head = pq_cli_infer_header("embed", &o.in, &o.fwd, &mo, extra); /* NULL: the run fails on rank 0 */
    pq_infer_run run = {.fasta = o.in.fasta, .fo = pq_cli_infer_fasta_opts(&o.fwd, &o.in),
                        .chunk_residues = o.fwd.chunk_residues, .out = o.out, .header = head,
                        .resume = o.fwd.resume, .quiet = o.fwd.quiet,
                        .monitor = o.fwd.monitor};
    if ((st = pq_infer_mpi_run(MPI_COMM_WORLD, &run, run_chunk, &ctx, &j, &resumed)) != PQ_OK) goto done;
    if (rank == 0) st = pq_embed_chunk_assemble(j, o.out, cfg, &ctx.want, &n_seq, &n_res);
    if (rank == 0 && st == PQ_OK) {
        printf("embedded %lld sequences (%lld residues), %d layer(s), D=%d, %d rank%s, %lld chunk(s) resumed -> %s\n",
               (long long)n_seq, (long long)n_res, n_req, cfg->embed_dim, N, N == 1 ? "" : "s",
               (long long)resumed, o.out);
    }
    pq_infer_mpi_end(j, st, true);
    st = pq_sync_agree(MPI_COMM_WORLD, st);
done:
    free(head);
    pq_esm2_model_free(ctx.m);
    rc = st == PQ_OK ? 0 : rank == 0 ? pq_cli_fail(st) : pq_status_exit_code(st);
    MPI_Finalize();
    return rc;
}
