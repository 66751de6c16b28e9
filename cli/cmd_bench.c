/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_bench.c - `proteus bench`: forward-pass throughput of the engine on
 * uniform synthetic batches or real-length batches from a FASTA file. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/pq_clock.h"
#include "model/batch.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "model/esm2_model.h"
#include "model/fasta.h"
#include "model/tokenizer.h"

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus bench --model M [--batch B --length T | --fasta F [--max-seqs N]\n"
"                     [--max-length L] [--batch-tokens N]] [--threads N] [--reps R]\n"
"                     [--warmup W] [--mode auto|dequant|weight-only] [--no-fusion]\n"
"                     [--no-threading] [--logits] [--json FILE]\n\n"
"Times the ESM-2 forward (final representation; --logits adds the LM head) of a\n"
"model (safetensors fp32 or Proteus HDF5, quantized Linears run as --mode says).\n"
"Uniform shape: B sequences of T tokens each (<cls>, T-2 residues, <eos>; residues\n"
"cycle through the 20 standard amino acids). FASTA: the file's sequences packed\n"
"into batches of at most --batch-tokens tokens. Reports the median over R\n"
"repetitions of the whole set of batches (after W warm-up runs), tokens/s,\n"
"weight bytes in memory and peak RSS.\n");
}

static int parse_i64(const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return pq_cli_usage_error("bench", "%s '%s' is not an integer >= %lld", opt, v, (long long)lo);
    *out = x;
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int pq_cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"batch", required_argument, 0, 'B'},
        {"length", required_argument, 0, 'T'}, {"fasta", required_argument, 0, 'f'},
        {"max-seqs", required_argument, 0, 'n'}, {"max-length", required_argument, 0, 'l'},
        {"batch-tokens", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"reps", required_argument, 0, 'r'}, {"warmup", required_argument, 0, 'w'},
        {"mode", required_argument, 0, 'M'}, {"no-fusion", no_argument, 0, 'F'},
        {"no-threading", no_argument, 0, 'S'}, {"logits", no_argument, 0, 'g'},
        {"json", required_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *model_path = NULL, *fasta_path = NULL, *json_path = NULL;
    int64_t B = 4, T = 256, max_seqs = 64, max_len = 1022, batch_tokens = 1024, threads = 0, reps = 3, warm = 1;
    bool logits = false;
    pq_esm2_model_opts mo = {0};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:B:T:f:n:l:b:t:r:w:M:FSgj:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': fasta_path = optarg; break;
        case 'j': json_path = optarg; break;
        case 'B': if (parse_i64("--batch", optarg, 1, &B)) return 2; break;
        case 'T': if (parse_i64("--length", optarg, 3, &T)) return 2; break;
        case 'n': if (parse_i64("--max-seqs", optarg, 1, &max_seqs)) return 2; break;
        case 'l': if (parse_i64("--max-length", optarg, 1, &max_len)) return 2; break;
        case 'b': if (parse_i64("--batch-tokens", optarg, 3, &batch_tokens)) return 2; break;
        case 't': if (parse_i64("--threads", optarg, 1, &threads)) return 2; break;
        case 'r': if (parse_i64("--reps", optarg, 1, &reps)) return 2; break;
        case 'w': if (parse_i64("--warmup", optarg, 0, &warm)) return 2; break;
        case 'M':
            if (!strcmp(optarg, "auto")) mo.quantized_mode = PQ_ESM2_QMODE_AUTO;
            else if (!strcmp(optarg, "dequant")) mo.quantized_mode = PQ_ESM2_QMODE_DEQUANT;
            else if (!strcmp(optarg, "weight-only")) mo.quantized_mode = PQ_ESM2_QMODE_WEIGHT_ONLY;
            else return pq_cli_usage_error("bench", "--mode '%s' is not auto, dequant or weight-only", optarg);
            break;
        case 'F': mo.no_fusion = true; break;
        case 'S': mo.no_threading = true; break;
        case 'g': logits = true; break;
        case 'h': help(stdout); return 0;
        case ':': return pq_cli_usage_error("bench", "option '%s' needs a value", argv[optind - 1]);
        default: return pq_cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return pq_cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (!model_path) return pq_cli_usage_error("bench", "--model is required");
    mo.n_threads = (int)threads;

    pq_status st = PQ_OK;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0, n_batches = 0, n_tokens = 0;
    pq_packed *pk = NULL;
    double *times = NULL;
    json_t *root = NULL;
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    double t_load = pq_now_s();
    if ((st = pq_esm2_model_open(model_path, &mo, &m)) != PQ_OK) goto done;
    t_load = pq_now_s() - t_load;
    if (fasta_path) {
        pq_fasta_opts fo = pq_fasta_defaults();
        fo.max_residues = max_len;
        if ((st = pq_fasta_read_all(fasta_path, &fo, max_seqs, &recs, &n_recs)) != PQ_OK) goto done;
        pk = calloc((size_t)n_recs, sizeof *pk);
        if (!pk) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
        for (int64_t start = 0; start < n_recs; n_batches++) {
            int64_t np;
            if ((st = pq_pack_records(recs, n_recs, start, batch_tokens, &pk[n_batches], &np)) != PQ_OK) goto done;
            n_tokens += pk[n_batches].offsets[np];
            start += np;
        }
    } else {
        pk = calloc(1, sizeof *pk);
        if (!pk) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
        pk->offsets = malloc((size_t)(B + 1) * sizeof *pk->offsets);
        pk->ids = malloc((size_t)(B * T) * sizeof *pk->ids);
        if (!pk->offsets || !pk->ids) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
        for (int64_t s = 0; s <= B; s++) pk->offsets[s] = s * T;
        for (int64_t s = 0; s < B; s++)
            for (int64_t t = 0; t < T; t++)
                pk->ids[s * T + t] = t == 0 ? PQ_TOK_CLS : t == T - 1 ? PQ_TOK_EOS : 4 + (int32_t)((t + s) % 20);
        pk->batch = (pq_esm2_batch){.n_seqs = B, .offsets = pk->offsets, .ids = pk->ids};
        n_batches = 1;
        n_tokens = B * T;
    }
    times = malloc((size_t)reps * sizeof *times);
    if (!times) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    for (int64_t r = -warm; r < reps; r++) {
        double t0 = pq_now_s();
        for (int64_t i = 0; i < n_batches; i++) {
            pq_esm2_outputs_clear(&out);
            out.want_logits = logits;
            out.n_repr = 1;
            out.repr_layers[0] = -1;
            if ((st = pq_esm2_forward(m, &pk[i].batch, NULL, &out)) != PQ_OK) goto done;
        }
        if (r >= 0) times[r] = pq_now_s() - t0;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_d);
    double med = times[reps / 2];
    int64_t wb, wl;
    pq_esm2_model_weight_bytes(m, &wb, &wl);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bench %s: %lld batches, %lld tokens, threads %lld, median %.3f s (min %.3f), %.1f tokens/s, "
           "weights %lld bytes (Linear %lld), peak RSS %.1f MiB, load %.2f s\n",
           model_path, (long long)n_batches, (long long)n_tokens, (long long)threads, med, times[0],
           (double)n_tokens / med, (long long)wb, (long long)wl, (double)ru.ru_maxrss / 1024.0, t_load);
    if (json_path) {
        root = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:f, s:f}", "model", model_path,
                         "n_batches", (json_int_t)n_batches, "n_tokens", (json_int_t)n_tokens, "threads",
                         (json_int_t)threads, "median_s", med, "min_s", times[0], "tokens_per_s",
                         (double)n_tokens / med, "weight_bytes", (json_int_t)wb, "linear_weight_bytes",
                         (json_int_t)wl, "peak_rss_mib", (double)ru.ru_maxrss / 1024.0, "load_s", t_load);
        if (!root || json_dump_file(root, json_path, JSON_INDENT(1)) != 0) {
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", json_path);
            goto done;
        }
    }
done:
    json_decref(root);
    pq_esm2_outputs_clear(&out);
    if (pk)
        for (int64_t i = 0; i < (n_batches > 0 ? n_batches : 1); i++) pq_packed_free(&pk[i]);
    free(pk);
    free(times);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
