/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_score.c - `proteus score`: masked-LM accuracy and pseudo-perplexity of
 * a model on a FASTA file under a deterministic 15 % masking. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pq_clock.h"
#include "model/batch.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "model/esm2_model.h"
#include "eval/eval_metrics.h"
#include "model/fasta.h"
#include "model/tokenizer.h"

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus score --model M --fasta F [--seed S] [--json FILE] [--max-seqs N]\n"
"                     [--max-length N] [--long crop|skip] [--mask-frac P]\n"
"                     [--batch-tokens N] [--threads N]\n\n"
"Masked-language-model quality of an ESM-2 model (safetensors or Proteus HDF5).\n"
"In every sequence each residue i is masked when u(seed, sequence index, i) < P,\n"
"u a counter-based uniform draw (splitmix64), so the masking is the same on any\n"
"machine and thread count; a sequence with no draw below P gets its smallest\n"
"draw masked. All chosen residues are replaced by <mask> at once and the\n"
"sequence is run once (token dropout rescales as in training).\n"
"  accuracy   = fraction of masked positions whose argmax over all 33 logits is\n"
"               the true token;\n"
"  perplexity = exp(mean negative log-likelihood of the true token at masked\n"
"               positions), log-softmax over all 33 logits, pooled over the file.\n\n"
"  --model M         .safetensors (file/dir/index) or Proteus .h5\n"
"  --fasta F         FASTA, plain or .gz\n"
"  --seed S          masking seed (default 0)\n"
"  --json FILE       per-sequence values and totals as JSON\n"
"  --max-seqs N      score only the first N sequences (default all)\n"
"  --max-length N    residues per sequence (default 1022)\n"
"  --long crop|skip  longer sequences are cropped (default) or skipped\n"
"  --mask-frac P     masking probability (default 0.15)\n"
"  --batch-tokens N  tokens per forward batch (default 4096)\n"
"  --threads N       threads (default: all cores)\n");
}

static int parse_i64(const char *cmd, const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return pq_cli_usage_error(cmd, "%s '%s' is not an integer >= %lld", opt, v, (long long)lo);
    *out = x;
    return 0;
}

int pq_cmd_score(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"fasta", required_argument, 0, 'f'},
        {"seed", required_argument, 0, 's'}, {"json", required_argument, 0, 'j'},
        {"max-seqs", required_argument, 0, 'n'}, {"max-length", required_argument, 0, 'l'},
        {"long", required_argument, 0, 'L'}, {"mask-frac", required_argument, 0, 'p'},
        {"batch-tokens", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *model_path = NULL, *fasta_path = NULL, *json_path = NULL;
    int64_t seed = 0, max_seqs = 0, max_len = 1022, batch_tokens = 4096, threads = 0;
    double frac = 0.15;
    pq_fasta_opts fo = pq_fasta_defaults();
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:f:s:j:n:l:L:p:b:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': fasta_path = optarg; break;
        case 'j': json_path = optarg; break;
        case 's': if (parse_i64("score", "--seed", optarg, 0, &seed)) return 2; break;
        case 'n': if (parse_i64("score", "--max-seqs", optarg, 1, &max_seqs)) return 2; break;
        case 'l': if (parse_i64("score", "--max-length", optarg, 1, &max_len)) return 2; break;
        case 'b': if (parse_i64("score", "--batch-tokens", optarg, 3, &batch_tokens)) return 2; break;
        case 't': if (parse_i64("score", "--threads", optarg, 1, &threads)) return 2; break;
        case 'L':
            if (!strcmp(optarg, "crop")) fo.on_long = PQ_FASTA_CROP;
            else if (!strcmp(optarg, "skip")) fo.on_long = PQ_FASTA_SKIP;
            else return pq_cli_usage_error("score", "--long '%s' is not crop or skip", optarg);
            break;
        case 'p': {
            char *end;
            frac = strtod(optarg, &end);
            if (end == optarg || *end || !(frac > 0.0 && frac < 1.0))
                return pq_cli_usage_error("score", "--mask-frac '%s' is not a number in (0, 1)", optarg);
            break;
        }
        case 'h': help(stdout); return 0;
        case ':': return pq_cli_usage_error("score", "option '%s' needs a value", argv[optind - 1]);
        default: return pq_cli_usage_error("score", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return pq_cli_usage_error("score", "unexpected argument '%s'", argv[optind]);
    if (!model_path) return pq_cli_usage_error("score", "--model is required");
    if (!fasta_path) return pq_cli_usage_error("score", "--fasta is required");
    fo.max_residues = max_len;

    pq_status st = PQ_OK;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    pq_eval_mlm *sc = NULL;
    int32_t *orig = NULL;
    pq_packed pk;
    memset(&pk, 0, sizeof pk);
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    json_t *root = NULL;
    pq_esm2_model_opts mo = {.n_threads = (int)threads};
    if ((st = pq_fasta_read_all(fasta_path, &fo, max_seqs, &recs, &n_recs)) != PQ_OK) goto done;
    if ((st = pq_esm2_model_open(model_path, &mo, &m)) != PQ_OK) goto done;
    sc = calloc((size_t)n_recs, sizeof *sc);
    if (!sc) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    int V = pq_esm2_model_config(m)->vocab_size;
    double t0 = pq_now_s();
    int64_t tot_tokens = 0;
    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, batch_tokens, &pk, &np)) != PQ_OK) goto done;
        int64_t N = pk.offsets[np];
        int32_t *o2 = realloc(orig, (size_t)N * sizeof *o2);
        if (!o2) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
        orig = o2;
        for (int64_t s = 0; s < np; s++)
            pq_mask_sequence(pk.ids + pk.offsets[s], pk.offsets[s + 1] - pk.offsets[s], (uint64_t)seed,
                             (uint64_t)(start + s), frac, orig + pk.offsets[s]);
        pq_esm2_outputs_clear(&out);
        out.want_logits = true;
        if ((st = pq_esm2_forward(m, &pk.batch, NULL, &out)) != PQ_OK) goto done;
        for (int64_t s = 0; s < np; s++)
            pq_eval_mlm_add(&sc[start + s], out.logits + pk.offsets[s] * V, orig + pk.offsets[s],
                            pk.offsets[s + 1] - pk.offsets[s], V);
        tot_tokens += N;
        start += np;
    }
    double secs = pq_now_s() - t0;
    int64_t M = 0, C = 0;
    double NLL = 0.0;
    for (int64_t i = 0; i < n_recs; i++) { M += sc[i].n_masked; C += sc[i].n_correct; NLL += sc[i].nll; }
    double acc = (double)C / (double)M, ppl = exp(NLL / (double)M);
    printf("sequences %lld, masked tokens %lld, accuracy %.4f (%.2f %%), perplexity %.4f  "
           "[%lld tokens in %.2f s, %.0f tokens/s]\n",
           (long long)n_recs, (long long)M, acc, 100.0 * acc, ppl, (long long)tot_tokens, secs,
           (double)tot_tokens / secs);
    if (json_path) {
        root = json_pack("{s:s, s:s, s:I, s:f, s:I, s:I, s:I, s:f, s:f, s:f}", "model", model_path, "fasta",
                         fasta_path, "seed", (json_int_t)seed, "mask_frac", frac, "max_length",
                         (json_int_t)max_len, "n_sequences", (json_int_t)n_recs, "n_masked", (json_int_t)M,
                         "accuracy", acc, "perplexity", ppl, "mean_nll", NLL / (double)M);
        json_t *arr = json_array();
        for (int64_t i = 0; i < n_recs; i++) {
            const pq_eval_mlm *q = &sc[i];
            json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:f, s:f}", "id", recs[i].id, "length",
                                                 (json_int_t)(recs[i].n_ids - 2), "n_masked",
                                                 (json_int_t)q->n_masked, "n_correct", (json_int_t)q->n_correct,
                                                 "mean_nll", q->nll / (double)q->n_masked, "perplexity",
                                                 exp(q->nll / (double)q->n_masked)));
        }
        json_object_set_new(root, "sequences", arr);
        if (json_dump_file(root, json_path, JSON_INDENT(1)) != 0) {
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", json_path);
            goto done;
        }
    }
done:
    json_decref(root);
    pq_esm2_outputs_clear(&out);
    pq_packed_free(&pk);
    free(orig);
    free(sc);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
