/* SPDX-License-Identifier: Apache-2.0 */
/* calib_dump.c - test driver: run calibration on the first N sequences and
 * dump, for chosen sites, the raw activations the observer saw (OUT/<site>.f32)
 * and our derived histograms and method results (OUT/results.json), so peers
 * can be fed exactly the same numbers.
 * usage: calib_dump MODEL FASTA N OUTDIR SITE... */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/calib_methods.h"
#include "calib/calib_run.h"
#include "calib/calib_stats.h"
#include "model/esm2_model.h"

typedef struct dump_ctx {
    pq_calib *c;
    int n_sel;
    int sel[16];
    FILE *f[16];
} dump_ctx;

static void observe(void *user, const pq_ops *ops, int layer, pq_esm2_role role, const float *x,
                    int64_t n_tokens, int64_t dim)
{
    dump_ctx *d = user;
    pq_calib_observe(d->c, ops, layer, role, x, n_tokens, dim);
    if (role == PQ_ESM2_K || role == PQ_ESM2_V) return;
    int i = pq_calib_site_index(d->c, layer, role);
    for (int k = 0; k < d->n_sel; k++)
        if (d->sel[k] == i) fwrite(x, sizeof(float), (size_t)(n_tokens * dim), d->f[k]);
}

static json_t *u64_array(const uint64_t *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((json_int_t)v[i]));
    return a;
}

static json_t *f32_array(const float *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

int main(int argc, char **argv)
{
    if (argc < 6) { fprintf(stderr, "usage: calib_dump MODEL FASTA N OUTDIR SITE...\n"); return 2; }
    pq_esm2_model *m = NULL;
    pq_esm2_model_opts mo;
    memset(&mo, 0, sizeof mo);
    pq_fasta_record *recs = NULL;
    int64_t n = 0, skipped = 0;
    pq_calib_data_opts o = {.max_seqs = atoll(argv[3]), .max_length = 0};
    dump_ctx d = {0};
    if (pq_esm2_model_open(argv[1], &mo, &m) || pq_calib_read_data(argv[2], &o, &recs, &n, &skipped)) {
        fprintf(stderr, "calib_dump: %s\n", pq_err_detail());
        return 1;
    }
    const pq_esm2_config *cfg = pq_esm2_model_config(m);
    pq_calib_create(cfg->num_layers, cfg->embed_dim, cfg->ffn_dim, &d.c);
    for (int a = 5; a < argc && d.n_sel < 16; a++) {
        const pq_calib_site *s = pq_calib_find(d.c, argv[a]);
        if (!s) { fprintf(stderr, "calib_dump: no site %s\n", argv[a]); return 1; }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.f32", argv[4], argv[a]);
        d.sel[d.n_sel] = (int)(s - d.c->sites);
        if (!(d.f[d.n_sel++] = fopen(path, "wb"))) { perror(path); return 1; }
    }
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    pq_esm2_model_set_observer(m, observe, &d);
    for (int64_t i = 0; i < n; i++) {
        int64_t off[2] = {0, recs[i].n_ids};
        pq_esm2_batch b = {.n_seqs = 1, .offsets = off, .ids = recs[i].ids};
        if (pq_esm2_forward(m, &b, NULL, &out)) { fprintf(stderr, "%s\n", pq_err_detail()); return 1; }
        pq_esm2_outputs_clear(&out);
    }
    for (int k = 0; k < d.n_sel; k++) fclose(d.f[k]);
    if (pq_calib_flush(d.c)) { fprintf(stderr, "%s\n", pq_err_detail()); return 1; }
    json_t *root = json_object();
    uint64_t hist[PQ_CALIB_BINS];
    float edges[PQ_CALIB_BINS + 1];
    for (int k = 0; k < d.n_sel; k++) {
        const pq_calib_site *s = &d.c->sites[d.sel[k]];
        json_t *o2 = json_object();
        json_object_set_new(o2, "min", json_real(s->min));
        json_object_set_new(o2, "max", json_real(s->max));
        json_object_set_new(o2, "count", json_integer((json_int_t)s->count));
        json_object_set_new(o2, "chan_absmax", f32_array(s->chan_absmax, (int)s->dim));
        pq_calib_abs_hist(s, hist, edges);
        json_object_set_new(o2, "abs_hist", u64_array(hist, PQ_CALIB_BINS));
        json_object_set_new(o2, "abs_edges", f32_array(edges, PQ_CALIB_BINS + 1));
        pq_calib_signed_hist(s, hist, edges);
        json_object_set_new(o2, "signed_hist", u64_array(hist, PQ_CALIB_BINS));
        json_object_set_new(o2, "signed_edges", f32_array(edges, PQ_CALIB_BINS + 1));
        for (int mth = 0; mth < PQ_CALIB_N_METHODS; mth++)
            for (int sym = 0; sym < 2; sym++) {
                pq_calib_range r;
                char key[64];
                if (pq_calib_compute(s, mth, sym, 99.99, &r)) { fprintf(stderr, "%s\n", pq_err_detail()); return 1; }
                snprintf(key, sizeof key, "%s_%s", pq_calib_method_name(mth), sym ? "sym" : "asym");
                json_t *v = json_object();
                json_object_set_new(v, "lo", json_real(r.lo));
                json_object_set_new(v, "hi", json_real(r.hi));
                json_object_set_new(v, "amax", json_real(r.amax));
                json_object_set_new(v, "kl", isfinite(r.kl) ? json_real(r.kl) : json_null());
                json_object_set_new(o2, key, v);
            }
        json_object_set_new(root, s->name, o2);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/results.json", argv[4]);
    json_dump_file(root, path, JSON_REAL_PRECISION(17));
    json_decref(root);
    pq_calib_free(d.c);
    pq_calib_records_free(recs, n);
    pq_esm2_model_free(m);
    return 0;
}
