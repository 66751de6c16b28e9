/* SPDX-License-Identifier: Apache-2.0 */
/* forward_dump.c - test driver: run the fp32 ESM-2 forward on sequences
 * given on the command line (one packed batch) and write raw float32 files
 * for the peer test: logits.f32 [N,33], repr_<i>.f32 [N,D] for i = 0..L,
 * contacts.f32 (when the model has a contact head), offsets.txt.
 *
 * With --bench R it instead times R forward passes (logits only) after one
 * warm-up and prints "tokens_per_s <best>".
 *
 * --kernels NAME runs it on that kernel context (pq_ops_select; exit 3 when
 * this build or CPU lacks it).
 *
 * usage: forward_dump MODEL OUTDIR [--threads N] [--stage K] [--bench R] [--kernels NAME] SEQ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "model/esm2_model.h"
#include "model/tokenizer.h"

static int fail(pq_status st)
{
    fprintf(stderr, "forward_dump: %s: %s\n", pq_strerror(st), pq_err_detail());
    return 1;
}

static int write_f32(const char *dir, const char *name, const float *p, int64_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sizeof(float), (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "forward_dump: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: forward_dump MODEL OUTDIR [--threads N] [--stage K] SEQ...\n");
        return 2;
    }
    const char *model = argv[1], *dir = argv[2];
    int threads = 0, stage = 0, bench = 0, a = 3;
    const char *kernels = NULL;
    for (; a < argc; a++) {
        if (!strcmp(argv[a], "--threads") && a + 1 < argc) threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--stage") && a + 1 < argc) stage = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--bench") && a + 1 < argc) bench = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--kernels") && a + 1 < argc) kernels = argv[++a];
        else break;
    }
    int n_seqs = argc - a;
    int64_t *off = calloc((size_t)n_seqs + 1, sizeof *off);
    int32_t *ids = NULL;
    for (int s = 0; s < n_seqs; s++) {
        int32_t *t;
        int64_t n;
        pq_status st = pq_tok_encode(argv[a + s], strlen(argv[a + s]), argv[a + s], 0, &t, &n);
        if (st != PQ_OK) return fail(st);
        ids = realloc(ids, (size_t)(off[s] + n) * sizeof *ids);
        memcpy(ids + off[s], t, (size_t)n * sizeof *t);
        off[s + 1] = off[s] + n;
        free(t);
    }
    pq_esm2_batch b = {.n_seqs = n_seqs, .offsets = off, .ids = ids};
    pq_esm2_model *m = NULL, *m2 = NULL;
    pq_esm2_model_opts o = {.n_threads = threads};
    if (kernels) {
        pq_kstatus ks = pq_ops_select(kernels, &o.ops);
        if (ks != PQ_KOK) {
            fprintf(stderr, "forward_dump: kernel context %s: %s\n", kernels, pq_kstatus_str(ks));
            return 3;
        }
    }
    pq_status st;
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    if (bench > 0) {
        if ((st = pq_esm2_model_open(model, &o, &m)) != PQ_OK) return fail(st);
        double best = 1e30;
        for (int r = 0; r <= bench; r++) {
            struct timespec t0, t1;
            out.want_logits = true;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if ((st = pq_esm2_forward(m, &b, NULL, &out)) != PQ_OK) return fail(st);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            pq_esm2_outputs_clear(&out);
            double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            if (r > 0 && sec < best) best = sec; /* r = 0 warms up */
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        /* the budget the engine promises: weights + two layers' activations */
        const pq_esm2_config *cfg = pq_esm2_model_config(m);
        double T = (double)off[n_seqs], D = cfg->embed_dim, F = cfg->ffn_dim;
        double weights = 4.0 * ((double)cfg->num_layers * (12.0 * D * D + 13.0 * D) + 33.0 * D + D * D);
        double acts = 2.0 * 4.0 * T * (6.0 * D + F);
        printf("tokens_per_s %.1f\nseconds %.6f\npeak_rss_mb %.1f\nweights_mb %.1f\nbound_mb %.1f\n",
               T / best, best, (double)ru.ru_maxrss / 1024.0, weights / 1048576.0,
               (weights + acts) / 1048576.0);
    } else if (stage > 0) {
        /* two pipeline stages [0, K) and [K, L): activations handed over */
        pq_esm2_model_opts o1 = o, o2 = o;
        if ((st = pq_esm2_model_open(model, &o1, &m)) != PQ_OK) return fail(st);
        int L = pq_esm2_model_config(m)->num_layers;
        pq_esm2_model_free(m);
        o1.layer_begin = 0; o1.layer_end = stage;
        o2.layer_begin = stage; o2.layer_end = L;
        if ((st = pq_esm2_model_open(model, &o1, &m)) != PQ_OK) return fail(st);
        if ((st = pq_esm2_model_open(model, &o2, &m2)) != PQ_OK) return fail(st);
        pq_esm2_outputs o_a;
        memset(&o_a, 0, sizeof o_a);
        if ((st = pq_esm2_forward(m, &b, NULL, &o_a)) != PQ_OK) return fail(st);
        out.want_logits = true;
        if ((st = pq_esm2_forward(m2, &b, o_a.x_out, &out)) != PQ_OK) return fail(st);
        pq_esm2_outputs_clear(&o_a);
        if (write_f32(dir, "logits.f32", out.logits, off[n_seqs] * 33)) return 1;
    } else {
        if ((st = pq_esm2_model_open(model, &o, &m)) != PQ_OK) return fail(st);
        const pq_esm2_config *cfg = pq_esm2_model_config(m);
        int L = cfg->num_layers;
        out.want_logits = true;
        out.want_contacts = cfg->has_contact_head;
        out.n_repr = L + 1;
        for (int i = 0; i <= L; i++) out.repr_layers[i] = i;
        if ((st = pq_esm2_forward(m, &b, NULL, &out)) != PQ_OK) return fail(st);
        if (write_f32(dir, "logits.f32", out.logits, off[n_seqs] * 33)) return 1;
        for (int i = 0; i <= L; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "repr_%d.f32", i);
            if (write_f32(dir, nm, out.repr[i], off[n_seqs] * cfg->embed_dim)) return 1;
        }
        if (out.contacts && write_f32(dir, "contacts.f32", out.contacts, out.contact_off[n_seqs])) return 1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/offsets.txt", dir);
    FILE *f = fopen(path, "w");
    for (int s = 0; s <= n_seqs; s++) fprintf(f, "%lld\n", (long long)off[s]);
    fclose(f);
    pq_esm2_outputs_clear(&out);
    pq_esm2_model_free(m);
    pq_esm2_model_free(m2);
    free(off);
    free(ids);
    return 0;
}
