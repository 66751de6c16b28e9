/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_evaluate.c - `proteus evaluate`: what quantization costs and gains, a
 * quantized Proteus HDF5 model against its fp32 reference on one FASTA file:
 * masked-LM quality of both, logits KL/cosine, embedding cosine, per-Linear
 * output SQNR on the same inputs, sizes, memory and speed. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "base/pq_clock.h"
#include "model/batch.h"
#include "model/blas.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "model/esm2_model.h"
#include "eval/eval_metrics.h"
#include "model/fasta.h"
#include "base/pq_cpu.h"
#include "model/tokenizer.h"

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus evaluate --model Q.h5 --reference FP.safetensors --fasta F\n"
"                        [--json FILE] [--max-seqs N] [--max-length L] [--threads N]\n"
"                        [--seed S] [--batch-tokens N] [--mode auto|dequant|weight-only]\n"
"                        [--no-fusion] [--max-drop PTS]\n\n"
"Accuracy, size and speed of a quantized model against its fp32 reference, both run\n"
"on the same packed batches and thread count:\n"
"  masked-LM accuracy and perplexity of both (the masking of `proteus score`, 15 %%);\n"
"  logits KL(reference || quantized) and cosine per residue position of the unmasked\n"
"  sequences, averaged; cosine of mean-pooled final embeddings, averaged per sequence;\n"
"  per-Linear output SQNR: each Linear of the quantized model applied to the very\n"
"  input the reference Linear sees, against the reference output;\n"
"  file sizes, weight bytes in memory, peak RSS, tokens/s of both (masked pass).\n"
"Both models must have the same architecture.\n\n"
"  --model Q.h5         quantized model (Proteus HDF5; a safetensors file also works)\n"
"  --reference FP       fp32 reference (safetensors or HDF5)\n"
"  --fasta F            FASTA, plain or .gz\n"
"  --json FILE          all numbers as JSON\n"
"  --max-seqs N         first N sequences (default 400)\n"
"  --max-length L       residues per sequence, longer ones cropped (default 500)\n"
"  --threads N          threads (default: all cores)\n"
"  --seed S             masking seed (default 0)\n"
"  --batch-tokens N     tokens per forward batch (default 4096)\n"
"  --mode M             how quantized Linears run (default auto; dequant = fp32 on\n"
"                       dequantized weights)\n"
"  --no-fusion          bias+GELU and residual adds after the GEMMs, not fused\n"
"  --max-drop PTS       an accuracy gate: after the report, fail with exit status 13\n"
"                       (accuracy error) when the quantized model's masked-LM accuracy\n"
"                       is more than PTS percentage points below the reference's\n");
}

static int parse_i64(const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return pq_cli_usage_error("evaluate", "%s '%s' is not an integer >= %lld", opt, v, (long long)lo);
    *out = x;
    return 0;
}

#define N_SITES 7
static const pq_esm2_role k_sites[N_SITES] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT,
                                              PQ_ESM2_FC1, PQ_ESM2_FC2, PQ_ESM2_LM_DENSE_W};
static const char *const k_site_names[N_SITES] = {"q", "k", "v", "out", "fc1", "fc2", "lm_dense"};

static pq_esm2_role bias_role(pq_esm2_role r)
{
    switch (r) {
    case PQ_ESM2_Q: return PQ_ESM2_Q_BIAS;
    case PQ_ESM2_K: return PQ_ESM2_K_BIAS;
    case PQ_ESM2_V: return PQ_ESM2_V_BIAS;
    case PQ_ESM2_OUT: return PQ_ESM2_OUT_BIAS;
    case PQ_ESM2_FC1: return PQ_ESM2_FC1_BIAS;
    case PQ_ESM2_FC2: return PQ_ESM2_FC2_BIAS;
    default: return PQ_ESM2_LM_DENSE_B;
    }
}

typedef struct sqnr_ctx {
    pq_esm2_model *ref, *q;
    int L, n_threads;
    pq_eval_sqnr *acc;      /* [(L + 1) * N_SITES], row L = the LM head */
    float *y1, *y2;
    int64_t cap;
    pq_status st;
} sqnr_ctx;

/* Observer on the reference: apply both models' Linear to its input. */
static void observe_linear(void *user, int layer, pq_esm2_role site, const float *x, int64_t N, int64_t d)
{
    sqnr_ctx *c = user;
    if (c->st != PQ_OK) return;
    int si = -1;
    for (int i = 0; i < N_SITES; i++)
        if (k_sites[i] == site) si = i;
    if (si < 0) return;
    int row = layer < 0 ? c->L : layer;
    int64_t nr, nb;
    const float *W = pq_esm2_model_tensor(c->ref, site, layer, &nr);
    const float *b = pq_esm2_model_tensor(c->ref, bias_role(site), layer, &nb);
    if (!W || !b) return;
    int64_t n = nr / d;
    if (N * n > c->cap) {
        free(c->y1);
        free(c->y2);
        c->y1 = malloc((size_t)(N * n) * sizeof(float));
        c->y2 = malloc((size_t)(N * n) * sizeof(float));
        c->cap = N * n;
        if (!c->y1 || !c->y2) {
            c->cap = 0;
            c->st = pq_err(PQ_ERR_RESOURCE, "out of memory for Linear outputs");
            return;
        }
    }
    for (int64_t i = 0; i < N; i++) memcpy(c->y1 + i * n, b, (size_t)n * sizeof(float));
    pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n, (int)d, 1.0f, x, (int)d, W, (int)d,
                1.0f, c->y1, (int)n);
    const pq_qlinear *ql = pq_esm2_model_qlinear(c->q, site, layer);
    int64_t qb_n;
    const float *qb = pq_esm2_model_tensor(c->q, bias_role(site), layer, &qb_n);
    if (ql) {
        c->st = pq_qlinear_forward(ql, x, N, qb, PQ_QLINEAR_POST_NONE, NULL, c->y2, c->n_threads);
    } else {
        const float *Wq = pq_esm2_model_tensor(c->q, site, layer, &nr);
        for (int64_t i = 0; i < N; i++) memcpy(c->y2 + i * n, qb, (size_t)n * sizeof(float));
        pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n, (int)d, 1.0f, x, (int)d, Wq,
                    (int)d, 1.0f, c->y2, (int)n);
    }
    if (c->st == PQ_OK) pq_eval_sqnr_add(&c->acc[row * N_SITES + si], c->y1, c->y2, N * n);
}

static int64_t file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static pq_status same_arch(const pq_esm2_config *a, const pq_esm2_config *b, const char *qp, const char *rp)
{
    if (a->num_layers != b->num_layers || a->embed_dim != b->embed_dim ||
        a->attention_heads != b->attention_heads || a->ffn_dim != b->ffn_dim || a->vocab_size != b->vocab_size)
        return pq_err(PQ_ERR_CONFIG,
                      "architecture mismatch: %s has %d layers, dim %d, %d heads, ffn %d, vocab %d; "
                      "%s has %d layers, dim %d, %d heads, ffn %d, vocab %d",
                      qp, a->num_layers, a->embed_dim, a->attention_heads, a->ffn_dim, a->vocab_size, rp,
                      b->num_layers, b->embed_dim, b->attention_heads, b->ffn_dim, b->vocab_size);
    return PQ_OK;
}

typedef struct mlm {
    pq_eval_mlm m;
    double secs;
} mlm;

static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_string(v > 0 ? "inf" : v < 0 ? "-inf" : "nan");
}

int pq_cmd_evaluate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"reference", required_argument, 0, 'r'},
        {"fasta", required_argument, 0, 'f'}, {"json", required_argument, 0, 'j'},
        {"max-seqs", required_argument, 0, 'n'}, {"max-length", required_argument, 0, 'l'},
        {"threads", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
        {"batch-tokens", required_argument, 0, 'b'}, {"mode", required_argument, 0, 'M'},
        {"no-fusion", no_argument, 0, 'F'}, {"max-drop", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *qpath = NULL, *rpath = NULL, *fasta_path = NULL, *json_path = NULL;
    int64_t max_seqs = 400, max_len = 500, threads = 0, seed = 0, batch_tokens = 4096;
    double max_drop = NAN; /* no gate */
    pq_esm2_model_opts qo = {0};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:r:f:j:n:l:t:s:b:M:FD:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': qpath = optarg; break;
        case 'r': rpath = optarg; break;
        case 'f': fasta_path = optarg; break;
        case 'j': json_path = optarg; break;
        case 'n': if (parse_i64("--max-seqs", optarg, 1, &max_seqs)) return 2; break;
        case 'l': if (parse_i64("--max-length", optarg, 1, &max_len)) return 2; break;
        case 't': if (parse_i64("--threads", optarg, 1, &threads)) return 2; break;
        case 's': if (parse_i64("--seed", optarg, 0, &seed)) return 2; break;
        case 'b': if (parse_i64("--batch-tokens", optarg, 3, &batch_tokens)) return 2; break;
        case 'M':
            if (!strcmp(optarg, "auto")) qo.quantized_mode = PQ_ESM2_QMODE_AUTO;
            else if (!strcmp(optarg, "dequant")) qo.quantized_mode = PQ_ESM2_QMODE_DEQUANT;
            else if (!strcmp(optarg, "weight-only")) qo.quantized_mode = PQ_ESM2_QMODE_WEIGHT_ONLY;
            else return pq_cli_usage_error("evaluate", "--mode '%s' is not auto, dequant or weight-only", optarg);
            break;
        case 'F': qo.no_fusion = true; break;
        case 'D': {
            char *end;
            max_drop = strtod(optarg, &end);
            if (end == optarg || *end || !(max_drop >= 0 && max_drop <= 100))
                return pq_cli_usage_error("evaluate", "--max-drop '%s': expected percentage points (0..100)",
                                          optarg);
            break;
        }
        case 'h': help(stdout); return 0;
        case ':': return pq_cli_usage_error("evaluate", "option '%s' needs a value", argv[optind - 1]);
        default: return pq_cli_usage_error("evaluate", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return pq_cli_usage_error("evaluate", "unexpected argument '%s'", argv[optind]);
    if (!qpath) return pq_cli_usage_error("evaluate", "--model is required");
    if (!rpath) return pq_cli_usage_error("evaluate", "--reference is required");
    if (!fasta_path) return pq_cli_usage_error("evaluate", "--fasta is required");
    qo.n_threads = (int)threads;
    pq_esm2_model_opts ro = {.n_threads = (int)threads};

    pq_status st = PQ_OK;
    pq_esm2_model *ref = NULL, *q = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    int32_t *orig = NULL;
    float *pool_r = NULL, *pool_q = NULL;
    pq_packed pk;
    memset(&pk, 0, sizeof pk);
    pq_esm2_outputs o1, o2;
    memset(&o1, 0, sizeof o1);
    memset(&o2, 0, sizeof o2);
    json_t *root = NULL;
    sqnr_ctx sc = {0};
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = max_len;
    const char *inputs[] = {qpath, rpath, fasta_path};
    if ((st = pq_out_check("--json", json_path, inputs, 3)) != PQ_OK) goto done; /* before the work */
    if ((st = pq_fasta_read_all(fasta_path, &fo, max_seqs, &recs, &n_recs)) != PQ_OK) goto done;
    double rss0 = peak_rss_mib();
    if ((st = pq_esm2_model_open(rpath, &ro, &ref)) != PQ_OK) goto done;
    double rss_ref = peak_rss_mib();
    if ((st = pq_esm2_model_open(qpath, &qo, &q)) != PQ_OK) goto done;
    double rss_q = peak_rss_mib();
    const pq_esm2_config *cfg = pq_esm2_model_config(ref);
    if ((st = same_arch(pq_esm2_model_config(q), cfg, qpath, rpath)) != PQ_OK) goto done;
    int V = cfg->vocab_size, L = cfg->num_layers;
    int64_t D = cfg->embed_dim;
    sc.ref = ref;
    sc.q = q;
    sc.L = L;
    sc.n_threads = (int)threads;
    sc.acc = calloc((size_t)(L + 1) * N_SITES, sizeof *sc.acc);
    pool_r = malloc((size_t)D * sizeof(float));
    pool_q = malloc((size_t)D * sizeof(float));
    if (!sc.acc || !pool_r || !pool_q) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }

    mlm mr = {0}, mq = {0};
    double kl_sum = 0.0, lcos_sum = 0.0, ecos_sum = 0.0, kl_max = 0.0;
    int64_t n_pos = 0, n_tokens = 0;
    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, batch_tokens, &pk, &np)) != PQ_OK) goto done;
        int64_t N = pk.offsets[np];
        /* unmasked pass: KL, logits cosine, embeddings, per-Linear SQNR */
        pq_esm2_outputs_clear(&o1);
        pq_esm2_outputs_clear(&o2);
        o1.want_logits = o2.want_logits = true;
        o1.n_repr = o2.n_repr = 1;
        o1.repr_layers[0] = o2.repr_layers[0] = -1;
        pq_esm2_model_set_observer(ref, observe_linear, &sc);
        st = pq_esm2_forward(ref, &pk.batch, NULL, &o1);
        pq_esm2_model_set_observer(ref, NULL, NULL);
        if (st != PQ_OK) goto done;
        if ((st = sc.st) != PQ_OK) goto done;
        if ((st = pq_esm2_forward(q, &pk.batch, NULL, &o2)) != PQ_OK) goto done;
        for (int64_t s = 0; s < np; s++) {
            int64_t t0 = pk.offsets[s], T = pk.offsets[s + 1] - t0;
            for (int64_t t = t0 + 1; t < t0 + T - 1; t++) {
                double kl = pq_eval_kl(o1.logits + t * V, o2.logits + t * V, V);
                kl_sum += kl;
                if (kl > kl_max) kl_max = kl;
                lcos_sum += pq_eval_cosine(o1.logits + t * V, o2.logits + t * V, V);
                n_pos++;
            }
            pq_eval_mean_pool(o1.repr[0] + t0 * D, T, D, pool_r);
            pq_eval_mean_pool(o2.repr[0] + t0 * D, T, D, pool_q);
            ecos_sum += pq_eval_cosine(pool_r, pool_q, D);
        }
        /* masked pass, timed: accuracy and perplexity */
        int32_t *o_new = realloc(orig, (size_t)N * sizeof *o_new);
        if (!o_new) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
        orig = o_new;
        for (int64_t s = 0; s < np; s++)
            pq_mask_sequence(pk.ids + pk.offsets[s], pk.offsets[s + 1] - pk.offsets[s], (uint64_t)seed,
                             (uint64_t)(start + s), 0.15, orig + pk.offsets[s]);
        pq_esm2_outputs_clear(&o1);
        pq_esm2_outputs_clear(&o2);
        o1.n_repr = o2.n_repr = 0;
        double t_a = pq_now_s();
        if ((st = pq_esm2_forward(ref, &pk.batch, NULL, &o1)) != PQ_OK) goto done;
        double t_b = pq_now_s();
        if ((st = pq_esm2_forward(q, &pk.batch, NULL, &o2)) != PQ_OK) goto done;
        double t_c = pq_now_s();
        mr.secs += t_b - t_a;
        mq.secs += t_c - t_b;
        pq_eval_mlm_add(&mr.m, o1.logits, orig, N, V);
        pq_eval_mlm_add(&mq.m, o2.logits, orig, N, V);
        n_tokens += N;
        start += np;
    }
    int64_t wb_r, wl_r, wb_q, wl_q;
    pq_esm2_model_weight_bytes(ref, &wb_r, &wl_r);
    pq_esm2_model_weight_bytes(q, &wb_q, &wl_q);
    int64_t fs_r = file_bytes(rpath), fs_q = file_bytes(qpath);
    double acc_r = (double)mr.m.n_correct / (double)mr.m.n_masked, acc_q = (double)mq.m.n_correct / (double)mq.m.n_masked;
    double ppl_r = exp(mr.m.nll / (double)mr.m.n_masked), ppl_q = exp(mq.m.nll / (double)mq.m.n_masked);
    double tps_r = (double)n_tokens / mr.secs, tps_q = (double)n_tokens / mq.secs;
    double kl = kl_sum / (double)n_pos, lcos = lcos_sum / (double)n_pos, ecos = ecos_sum / (double)n_recs;
    double peak = peak_rss_mib();

    printf("proteus evaluate: %s vs reference %s\n", qpath, rpath);
    /* the count the models ran with: 0 asks for the cores this process may use */
    const int64_t used_threads = threads > 0 ? threads : pq_cpu_count();
    printf("  %lld sequences, %lld tokens, %lld masked positions, threads %lld\n\n", (long long)n_recs,
           (long long)n_tokens, (long long)mr.m.n_masked, (long long)used_threads);
    printf("  %-28s %14s %14s %10s\n", "", "reference", "quantized", "ratio/diff");
    printf("  %-28s %13.2f%% %13.2f%% %+9.2f pt\n", "masked-LM accuracy", 100 * acc_r, 100 * acc_q,
           100 * (acc_q - acc_r));
    printf("  %-28s %14.4f %14.4f %9.4fx\n", "pseudo-perplexity", ppl_r, ppl_q, ppl_q / ppl_r);
    printf("  %-28s %14lld %14lld %9.2fx\n", "file bytes", (long long)fs_r, (long long)fs_q,
           (double)fs_r / (double)fs_q);
    printf("  %-28s %14lld %14lld %9.2fx\n", "weight bytes in memory", (long long)wb_r, (long long)wb_q,
           (double)wb_r / (double)wb_q);
    printf("  %-28s %14lld %14lld %9.2fx\n", "  of which Linear weights", (long long)wl_r, (long long)wl_q,
           (double)wl_r / (double)wl_q);
    printf("  %-28s %14.1f %14.1f %9.2fx\n", "RSS growth at load (MiB)", rss_ref - rss0, rss_q - rss_ref,
           (rss_ref - rss0) / (rss_q - rss_ref > 0 ? rss_q - rss_ref : 1));
    printf("  %-28s %14.0f %14.0f %9.2fx\n", "tokens/s (masked pass)", tps_r, tps_q, tps_q / tps_r);
    printf("\n  logits KL(ref||q) mean %.3g (max %.3g), logits cosine %.6f, embedding cosine %.6f\n", kl,
           kl_max, lcos, ecos);
    printf("  peak RSS %.1f MiB (both models)\n\n  per-Linear output SQNR (dB)\n  %-6s", peak, "layer");
    for (int i = 0; i < N_SITES - 1; i++) printf(" %8s", k_site_names[i]);
    printf("\n");
    for (int l = 0; l < L; l++) {
        printf("  %-6d", l);
        for (int i = 0; i < N_SITES - 1; i++) printf(" %8.2f", pq_eval_sqnr_db(&sc.acc[l * N_SITES + i]));
        printf("\n");
    }
    printf("  lm_dense %.2f\n", pq_eval_sqnr_db(&sc.acc[L * N_SITES + N_SITES - 1]));
    /* percentage points of masked-LM accuracy the quantization lost */
    double drop = 100 * (acc_r - acc_q);
    bool gated = !isnan(max_drop), gate_failed = gated && drop > max_drop;
    if (gated)
        printf("\n  accuracy gate: %.2f points lost, at most %g allowed: %s\n", drop, max_drop,
               gate_failed ? "FAIL" : "pass");

    if (json_path) {
        root = json_object();
        json_object_set_new(root, "model", json_string(qpath));
        json_object_set_new(root, "reference", json_string(rpath));
        json_object_set_new(root, "fasta", json_string(fasta_path));
        json_object_set_new(root, "n_sequences", json_integer(n_recs));
        json_object_set_new(root, "n_tokens", json_integer(n_tokens));
        json_object_set_new(root, "n_masked", json_integer(mr.m.n_masked));
        json_object_set_new(root, "n_positions", json_integer(n_pos));
        json_object_set_new(root, "threads", json_integer(used_threads));
        json_object_set_new(root, "seed", json_integer(seed));
        json_object_set_new(root, "accuracy_reference", json_real(acc_r));
        json_object_set_new(root, "accuracy_quantized", json_real(acc_q));
        json_object_set_new(root, "perplexity_reference", json_real(ppl_r));
        json_object_set_new(root, "perplexity_quantized", json_real(ppl_q));
        json_object_set_new(root, "logits_kl_mean", json_real(kl));
        json_object_set_new(root, "logits_kl_max", json_real(kl_max));
        json_object_set_new(root, "logits_cosine_mean", json_real(lcos));
        json_object_set_new(root, "embedding_cosine_mean", json_real(ecos));
        json_object_set_new(root, "file_bytes_reference", json_integer(fs_r));
        json_object_set_new(root, "file_bytes_quantized", json_integer(fs_q));
        json_object_set_new(root, "weight_bytes_reference", json_integer(wb_r));
        json_object_set_new(root, "weight_bytes_quantized", json_integer(wb_q));
        json_object_set_new(root, "linear_weight_bytes_reference", json_integer(wl_r));
        json_object_set_new(root, "linear_weight_bytes_quantized", json_integer(wl_q));
        json_object_set_new(root, "weight_bytes_reduction", json_real((double)wb_r / (double)wb_q));
        json_object_set_new(root, "rss_load_mib_reference", json_real(rss_ref - rss0));
        json_object_set_new(root, "rss_load_mib_quantized", json_real(rss_q - rss_ref));
        json_object_set_new(root, "peak_rss_mib", json_real(peak));
        json_object_set_new(root, "tokens_per_s_reference", json_real(tps_r));
        json_object_set_new(root, "tokens_per_s_quantized", json_real(tps_q));
        json_object_set_new(root, "speedup", json_real(tps_q / tps_r));
        json_t *layers = json_array();
        for (int l = 0; l <= L; l++) {
            json_t *o = json_object();
            json_object_set_new(o, "layer", l == L ? json_string("head") : json_integer(l));
            for (int i = 0; i < N_SITES; i++) {
                if ((l == L) != (i == N_SITES - 1)) continue;
                json_object_set_new(o, k_site_names[i], json_num(pq_eval_sqnr_db(&sc.acc[l * N_SITES + i])));
            }
            json_array_append_new(layers, o);
        }
        json_object_set_new(root, "linear_sqnr_db", layers);
        json_object_set_new(root, "accuracy_drop_points", json_real(drop));
        if (gated) {
            json_object_set_new(root, "max_drop_points", json_real(max_drop));
            json_object_set_new(root, "accuracy_gate", json_string(gate_failed ? "fail" : "pass"));
        }
        if (json_dump_file(root, json_path, JSON_INDENT(1)) != 0) {
            st = pq_err(PQ_ERR_IO, "%s: cannot write JSON", json_path);
            goto done;
        }
    }
    if (gate_failed)
        st = pq_err(PQ_ERR_ACCURACY, "%s: masked-LM accuracy %.2f %% against %.2f %% for the reference %s: "
                    "%.2f points lost, more than --max-drop %g", qpath, 100 * acc_q, 100 * acc_r, rpath, drop,
                    max_drop);
done:
    json_decref(root);
    pq_esm2_outputs_clear(&o1);
    pq_esm2_outputs_clear(&o2);
    pq_packed_free(&pk);
    free(orig);
    free(pool_r);
    free(pool_q);
    free(sc.acc);
    free(sc.y1);
    free(sc.y2);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(ref);
    pq_esm2_model_free(q);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
