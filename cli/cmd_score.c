/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_score.c - `proteus score`: masked-LM accuracy and pseudo-perplexity of
 * a model on a FASTA file under a deterministic 15 % masking (the loop is
 * eval/score.h); this file holds its options and its printing. */
#include <jansson.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "coordinator/infer_mpi.h"
#include "coordinator/monitor.h"
#include "eval/score_chunk.h"
#include "pipeline/outpath.h"
#include "worker/sync.h"

typedef struct score_opts {
    pq_cli_input in;
    const char *json, *out;
    int64_t max_seqs;
    pq_eval_score_opts s;
    pq_cli_infer fwd;
} score_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "input", .kind = PQ_CLI_GROUP, .offset = offsetof(score_opts, in), .group = pq_cli_input_opts},
    {.name = "seed", .kind = PQ_CLI_U64, .offset = offsetof(score_opts, s.seed), .meta = "S",
     .help = "masking seed", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "out", .kind = PQ_CLI_STR, .offset = offsetof(score_opts, out), .meta = "FILE.h5",
     .help = "per-sequence tallies as HDF5: /ids, /lengths, /n_masked,\n/n_correct, /nll"},
    {.name = "json", .kind = PQ_CLI_STR, .offset = offsetof(score_opts, json), .meta = "FILE",
     .help = "per-sequence values and totals as JSON"},
    {.name = "max-seqs", .kind = PQ_CLI_I64, .offset = offsetof(score_opts, max_seqs), .lo = 1, .meta = "N",
     .help = "score only the first N sequences (default all)"},
    {.name = "mask-frac", .kind = PQ_CLI_F64, .offset = offsetof(score_opts, s.mask_frac), .lo = 0, .hi = 1,
     .flags = PQ_CLI_LO_OPEN | PQ_CLI_HI_OPEN | PQ_CLI_SHOW_DEFAULT, .meta = "P", .help = "masking probability"},
    {.name = "inference", .kind = PQ_CLI_GROUP, .offset = offsetof(score_opts, fwd), .group = pq_cli_infer_opts},
    {.name = "run", .kind = PQ_CLI_GROUP, .offset = offsetof(score_opts, fwd), .group = pq_cli_run_opts},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "score",
    .usage = "usage: proteus score --model M --fasta F [--seed S] [--out S.h5] [--json FILE] [options]\n"
             "       mpirun -n N proteus score ...   (the same bytes for any N and --threads)",
    .about = "Masked-language-model quality of an ESM-2 model (safetensors, .pt/.bin or HDF5).\n"
             "In every sequence each residue i is masked when u(seed, sequence index, i) < P,\n"
             "u a counter-based uniform draw (splitmix64), so the masking is the same on any\n"
             "machine and thread count; a sequence with no draw below P gets its smallest\n"
             "draw masked. All chosen residues are replaced by <mask> at once and the\n"
             "sequence is run once (token dropout rescales as in training).\n"
             "  accuracy   = fraction of masked positions whose argmax over all 33 logits is\n"
             "               the true token;\n"
             "  perplexity = exp(mean negative log-likelihood of the true token at masked\n"
             "               positions), log-softmax over all 33 logits, pooled over the file.\n"
             "The FASTA is streamed in chunks of about --chunk-residues residues, shared out\n"
             "over the MPI ranks (rank 0 included); finished chunks go to OUT.journal (OUT:\n"
             "--out, else --json), so a stopped run continues with --resume (on any number\n"
             "of ranks); SIGUSR1 or SIGTERM stops the run between chunks (exit status 14).",
    .opts = k_opts,
};

static json_t *score_json(const score_opts *o, const pq_score_table *t, const pq_eval_mlm *tot, bool fusion)
{
    json_t *root = json_pack("{s:s, s:s, s:I, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:b}", "model", o->in.model,
                             "fasta", o->in.fasta, "seed", (json_int_t)o->s.seed, "mask_frac", o->s.mask_frac,
                             "max_length", (json_int_t)o->fwd.max_length, "n_sequences", (json_int_t)t->n,
                             "n_masked", (json_int_t)tot->n_masked, "accuracy", pq_eval_mlm_accuracy(tot),
                             "perplexity", pq_eval_mlm_perplexity(tot), "mean_nll",
                             tot->nll / (double)tot->n_masked, "fusion", fusion);
    json_t *arr = json_array();
    for (int64_t i = 0; i < t->n; i++) {
        const pq_eval_mlm *q = &t->mlm[i];
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:f, s:f}", "id", t->ids[i], "length",
                                             (json_int_t)t->lengths[i], "n_masked", (json_int_t)q->n_masked,
                                             "n_correct", (json_int_t)q->n_correct, "mean_nll",
                                             q->nll / (double)q->n_masked, "perplexity",
                                             pq_eval_mlm_perplexity(q)));
    }
    json_object_set_new(root, "sequences", arr);
    return root;
}

typedef struct score_ctx {
    pq_esm2_model *m;
    pq_eval_score_opts s;
    int64_t n_tokens;
} score_ctx;

static pq_status run_chunk(void *user, const pq_chunk *ch, pq_buf *out)
{
    score_ctx *c = user;
    int64_t tok = 0;
    pq_status st = pq_score_chunk_run(c->m, ch->recs, ch->n, &c->s, out, &tok);
    c->n_tokens += tok;
    return st;
}

/* Rank 0: the totals, the printed line and the files, from the journal. */
static pq_status finish(const score_opts *o, pq_journal *j, bool fusion, int64_t n_tokens, double secs, int N)
{
    pq_score_table t;
    pq_eval_mlm tot = {0};
    json_t *root = NULL;
    pq_status st = pq_score_chunk_read(j, &t);
    for (int64_t i = 0; st == PQ_OK && i < t.n; i++) {
        tot.n_masked += t.mlm[i].n_masked;
        tot.n_correct += t.mlm[i].n_correct;
        tot.nll += t.mlm[i].nll;
    }
    if (st == PQ_OK && !t.n) st = pq_err(PQ_ERR_FORMAT, "%s: no usable sequence to score", o->in.fasta);
    if (st == PQ_OK && o->out) st = pq_score_table_write(&t, &o->s, o->out);
    if (st == PQ_OK && o->json) {
        root = score_json(o, &t, &tot, fusion);
        if (!root || json_dump_file(root, o->json, JSON_INDENT(1)) != 0)
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", o->json);
    }
    if (st == PQ_OK) {
        double acc = pq_eval_mlm_accuracy(&tot);
        printf("sequences %lld, masked tokens %lld, accuracy %.4f (%.2f %%), perplexity %.4f  "
               "[%lld tokens on rank 0 in %.2f s, %d rank%s]\n",
               (long long)t.n, (long long)tot.n_masked, acc, 100.0 * acc, pq_eval_mlm_perplexity(&tot),
               (long long)n_tokens, secs, N, N == 1 ? "" : "s");
    }
    json_decref(root);
    pq_score_table_free(&t);
    return st;
}

int pq_cmd_score(int argc, char **argv)
{
    score_opts o = {.s = {.mask_frac = 0.15},
                    .fwd = {.batch_tokens = 4096, .max_length = 1022, .chunk_residues = 16384}};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    o.s.batch_tokens = o.fwd.batch_tokens;
    if (o.fwd.resume && !o.out && !o.json)
        return pq_cli_usage_error("score", "--resume needs --out or --json (the journal lives beside it)");
    int rank = 0, N = 1;
    if ((rc = pq_cli_infer_mpi_start(&rank, &N))) return rc;
    score_ctx ctx = {.s = o.s};
    char tmp_out[4200], extra[256], *head = NULL;
    const char *out = o.out ? o.out : o.json;
    pq_journal *j = NULL;
    int64_t resumed = 0;
    pq_esm2_model_opts mo;
    const char *inputs[] = {o.in.model, o.in.fasta};
    pq_status st = pq_cli_infer_rank_model_opts(&o.fwd, rank, &mo);
    if (st == PQ_OK && rank == 0 && o.fwd.monitor)
        st = pq_monitor_check_endpoint(o.fwd.monitor, o.fwd.monitor_allow_remote);
    if (st == PQ_OK && rank == 0 && o.out) st = pq_out_check("--out", o.out, inputs, 2);
    if (st == PQ_OK && rank == 0 && o.json) st = pq_out_check("--json", o.json, inputs, 2);
    if (!out) { /* a journal no --resume can name: removed whatever happens */
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(tmp_out, sizeof tmp_out, "%s/proteus-score-%ld", tmp, (long)getpid());
        out = tmp_out;
        char stale[4220];
        snprintf(stale, sizeof stale, "%s.journal", out); /* of a killed process that had this pid */
        if (rank == 0) unlink(stale);
    }
    if (st == PQ_OK) st = pq_esm2_model_open(o.in.model, &mo, &ctx.m);
    if ((st = pq_sync_agree(MPI_COMM_WORLD, st)) != PQ_OK) goto done;
    snprintf(extra, sizeof extra, "seed %llu\nmask_frac %a\nmax_seqs %lld\n", (unsigned long long)o.s.seed,
             o.s.mask_frac, (long long)o.max_seqs);
    head = pq_cli_infer_header("score", &o.in, &o.fwd, &mo, extra); /* NULL: the run fails on rank 0 */
    pq_infer_run run = {.fasta = o.in.fasta, .fo = pq_cli_infer_fasta_opts(&o.fwd, &o.in),
                        .chunk_residues = o.fwd.chunk_residues, .max_records = o.max_seqs, .out = out,
                        .header = head, .resume = o.fwd.resume, .discard = !o.out && !o.json,
                        .quiet = o.fwd.quiet,
                        .monitor = o.fwd.monitor};
    double t0 = pq_now_s();
    if ((st = pq_infer_mpi_run(MPI_COMM_WORLD, &run, run_chunk, &ctx, &j, &resumed)) != PQ_OK) goto done;
    if (rank == 0) st = finish(&o, j, !mo.no_fusion, ctx.n_tokens, pq_now_s() - t0, N);
    pq_infer_mpi_end(j, st, o.out || o.json);
    st = pq_sync_agree(MPI_COMM_WORLD, st);
done:
    free(head);
    pq_esm2_model_free(ctx.m);
    rc = st == PQ_OK ? 0 : rank == 0 ? pq_cli_fail(st) : pq_status_exit_code(st);
    MPI_Finalize();
    return rc;
}
