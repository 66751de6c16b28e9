/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_embed.c - `proteus embed`: per-sequence (and optionally per-token)
 * ESM-2 representations of a FASTA file, written to HDF5 (the loop is
 * eval/embed.h, the file eval/embed_h5.h); this file holds its options and
 * its printing. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "eval/embed_h5.h"

typedef struct embed_opts {
    pq_cli_input in;
    const char *out, *layers;
    bool per_token;
    pq_cli_infer fwd;
} embed_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "input", .kind = PQ_CLI_GROUP, .offset = offsetof(embed_opts, in), .group = pq_cli_input_opts},
    {.name = "out", .kind = PQ_CLI_STR, .offset = offsetof(embed_opts, out), .flags = PQ_CLI_REQUIRED,
     .meta = "PATH", .help = "output HDF5"},
    {.name = "layers", .kind = PQ_CLI_STR, .offset = offsetof(embed_opts, layers), .meta = "LIST",
     .help = "comma-separated layer indices", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "per-token", .kind = PQ_CLI_FLAG, .offset = offsetof(embed_opts, per_token),
     .help = "also write per-residue arrays"},
    {.name = "inference", .kind = PQ_CLI_GROUP, .offset = offsetof(embed_opts, fwd), .group = pq_cli_infer_opts},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "embed",
    .usage = "usage: proteus embed --model M --fasta F --out EMB.h5 [--layers 0,6,-1]\n"
             "                     [--per-token] [options]",
    .about = "Run the ESM-2 forward on every FASTA record and write its representations\n"
             "to HDF5 (written to EMB.h5.partial, renamed when complete):\n"
             "  /ids                  [n_seq] record ids (fixed-length UTF-8 strings)\n"
             "  /lengths              [n_seq] residues embedded (after cropping)\n"
             "  /layer_<i>/mean       [n_seq, D] mean over the residues (cls/eos excluded)\n"
             "  /layer_<i>/tokens     [sum(lengths), D] per-residue rows (--per-token)\n"
             "  /offsets              [n_seq + 1] row offsets into tokens (--per-token)\n"
             "Layer i is the representation after layer i (0 = embeddings; L = after the\n"
             "final LayerNorm, as fair-esm's representations[L]); negative i counts from L+1.\n"
             "Every dataset carries HDF5's Fletcher-32 checksum, as a Proteus model does\n"
             "(docs/FORMAT.md).",
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

int pq_cmd_embed(int argc, char **argv)
{
    embed_opts o = {.layers = "-1", .fwd = {.batch_tokens = 4096, .max_length = 1022}};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    int req[PQ_EVAL_MAX_LAYERS], layers[PQ_EVAL_MAX_LAYERS], n_req = parse_layers(o.layers, req);
    if (n_req < 0)
        return pq_cli_usage_error("embed", "--layers '%s' is not a comma-separated list of integers", o.layers);
    if (n_req == 0) return pq_cli_usage_error("embed", "--layers is empty");
    pq_fasta_opts fo = pq_cli_infer_fasta_opts(&o.fwd, &o.in);
    pq_esm2_model_opts mo;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    pq_embed_h5 *w = NULL;
    const char *inputs[] = {o.in.model, o.in.fasta};
    pq_status st = pq_cli_infer_model_opts(&o.fwd, &mo);
    if (st == PQ_OK) st = pq_out_check("--out", o.out, inputs, 2);
    if (st == PQ_OK) st = pq_esm2_model_open(o.in.model, &mo, &m);
    if (st != PQ_OK) goto done;
    const pq_esm2_config *cfg = pq_esm2_model_config(m);
    pq_eval_embed_opts eo = {.layers = layers, .n_layers = n_req, .batch_tokens = o.fwd.batch_tokens};
    if ((st = pq_eval_embed_layers(req, n_req, cfg->num_layers, layers)) != PQ_OK) goto done;
    if ((st = pq_fasta_read_all(o.in.fasta, &fo, 0, &recs, &n_recs)) != PQ_OK) goto done;
    if ((st = pq_embed_h5_create(o.out, recs, n_recs, layers, n_req, cfg, o.per_token, &w)) != PQ_OK) goto done;
    if ((st = pq_eval_embed(m, recs, n_recs, &eo, pq_embed_h5_sink, w)) != PQ_OK) goto done;
    if ((st = pq_embed_h5_finish(w)) != PQ_OK) goto done;
    int64_t residues = 0;
    for (int64_t i = 0; i < n_recs; i++) residues += recs[i].n_ids - 2;
    printf("embedded %lld sequences (%lld residues), %d layer(s), D=%d -> %s\n", (long long)n_recs,
           (long long)residues, n_req, cfg->embed_dim, o.out);
done:
    pq_embed_h5_destroy(w);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
