/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_score.c - `proteus score`: masked-LM accuracy and pseudo-perplexity of
 * a model on a FASTA file under a deterministic 15 % masking (the loop is
 * eval/score.h); this file holds its options and its printing. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/pq_clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/infer.h"
#include "eval/score.h"

typedef struct score_opts {
    pq_cli_input in;
    const char *json;
    int64_t max_seqs;
    pq_eval_score_opts s;
    pq_cli_infer fwd;
} score_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "input", .kind = PQ_CLI_GROUP, .offset = offsetof(score_opts, in), .group = pq_cli_input_opts},
    {.name = "seed", .kind = PQ_CLI_U64, .offset = offsetof(score_opts, s.seed), .meta = "S",
     .help = "masking seed", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "json", .kind = PQ_CLI_STR, .offset = offsetof(score_opts, json), .meta = "FILE",
     .help = "per-sequence values and totals as JSON"},
    {.name = "max-seqs", .kind = PQ_CLI_I64, .offset = offsetof(score_opts, max_seqs), .lo = 1, .meta = "N",
     .help = "score only the first N sequences (default all)"},
    {.name = "mask-frac", .kind = PQ_CLI_F64, .offset = offsetof(score_opts, s.mask_frac), .lo = 0, .hi = 1,
     .flags = PQ_CLI_LO_OPEN | PQ_CLI_HI_OPEN | PQ_CLI_SHOW_DEFAULT, .meta = "P", .help = "masking probability"},
    {.name = "inference", .kind = PQ_CLI_GROUP, .offset = offsetof(score_opts, fwd), .group = pq_cli_infer_opts},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "score",
    .usage = "usage: proteus score --model M --fasta F [--seed S] [--json FILE] [options]",
    .about = "Masked-language-model quality of an ESM-2 model (safetensors, .pt/.bin or HDF5).\n"
             "In every sequence each residue i is masked when u(seed, sequence index, i) < P,\n"
             "u a counter-based uniform draw (splitmix64), so the masking is the same on any\n"
             "machine and thread count; a sequence with no draw below P gets its smallest\n"
             "draw masked. All chosen residues are replaced by <mask> at once and the\n"
             "sequence is run once (token dropout rescales as in training).\n"
             "  accuracy   = fraction of masked positions whose argmax over all 33 logits is\n"
             "               the true token;\n"
             "  perplexity = exp(mean negative log-likelihood of the true token at masked\n"
             "               positions), log-softmax over all 33 logits, pooled over the file.",
    .opts = k_opts,
};

static json_t *score_json(const score_opts *o, const pq_fasta_record *recs, int64_t n_recs,
                          const pq_eval_mlm *sc, const pq_eval_mlm *tot, bool fusion)
{
    json_t *root = json_pack("{s:s, s:s, s:I, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:b}", "model", o->in.model,
                             "fasta", o->in.fasta, "seed", (json_int_t)o->s.seed, "mask_frac", o->s.mask_frac,
                             "max_length", (json_int_t)o->fwd.max_length, "n_sequences", (json_int_t)n_recs,
                             "n_masked", (json_int_t)tot->n_masked, "accuracy", pq_eval_mlm_accuracy(tot),
                             "perplexity", pq_eval_mlm_perplexity(tot), "mean_nll",
                             tot->nll / (double)tot->n_masked, "fusion", fusion);
    json_t *arr = json_array();
    for (int64_t i = 0; i < n_recs; i++) {
        const pq_eval_mlm *q = &sc[i];
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:f, s:f}", "id", recs[i].id, "length",
                                             (json_int_t)(recs[i].n_ids - 2), "n_masked", (json_int_t)q->n_masked,
                                             "n_correct", (json_int_t)q->n_correct, "mean_nll",
                                             q->nll / (double)q->n_masked, "perplexity",
                                             pq_eval_mlm_perplexity(q)));
    }
    json_object_set_new(root, "sequences", arr);
    return root;
}

int pq_cmd_score(int argc, char **argv)
{
    score_opts o = {.s = {.mask_frac = 0.15}, .fwd = {.batch_tokens = 4096, .max_length = 1022}};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    o.s.batch_tokens = o.fwd.batch_tokens;
    pq_fasta_opts fo = pq_cli_infer_fasta_opts(&o.fwd, &o.in);
    pq_esm2_model_opts mo;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0, n_tokens = 0;
    pq_eval_mlm *sc = NULL, tot = {0};
    json_t *root = NULL;
    pq_status st = pq_cli_infer_model_opts(&o.fwd, &mo);
    if (st == PQ_OK) st = pq_fasta_read_all(o.in.fasta, &fo, o.max_seqs, &recs, &n_recs);
    if (st == PQ_OK) st = pq_esm2_model_open(o.in.model, &mo, &m);
    if (st == PQ_OK && !(sc = calloc((size_t)n_recs, sizeof *sc))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    double t0 = pq_now_s();
    if (st == PQ_OK) st = pq_eval_score(m, recs, n_recs, &o.s, sc, &n_tokens);
    if (st != PQ_OK) goto done;
    double secs = pq_now_s() - t0;
    for (int64_t i = 0; i < n_recs; i++) {
        tot.n_masked += sc[i].n_masked;
        tot.n_correct += sc[i].n_correct;
        tot.nll += sc[i].nll;
    }
    double acc = pq_eval_mlm_accuracy(&tot);
    printf("sequences %lld, masked tokens %lld, accuracy %.4f (%.2f %%), perplexity %.4f  "
           "[%lld tokens in %.2f s, %.0f tokens/s]\n",
           (long long)n_recs, (long long)tot.n_masked, acc, 100.0 * acc, pq_eval_mlm_perplexity(&tot),
           (long long)n_tokens, secs, (double)n_tokens / secs);
    if (o.json) {
        root = score_json(&o, recs, n_recs, sc, &tot, !mo.no_fusion);
        if (!root || json_dump_file(root, o.json, JSON_INDENT(1)) != 0)
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", o.json);
    }
done:
    json_decref(root);
    free(sc);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
