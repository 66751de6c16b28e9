/* SPDX-License-Identifier: Apache-2.0 */
/* calib_run.c - calibration data, sharding and the observed forward pass. */
#include "calib/calib_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pq_cpu.h"
#include "base/pq_hash.h"
#include "base/pq_io.h"
#include "format/safetensors.h"
#include "format/st_hash.h"

/* The basis is the standard one (PQ_FNV1A64_BASIS) short of its last digit,
 * as it always was here: the hash orders calibration records, so it stays. */
#define CALIB_ID_BASIS 1469598103934665603ull

uint64_t pq_calib_id_hash(const char *id)
{
    return pq_fnv1a64_str(CALIB_ID_BASIS, id);
}

typedef struct plan_item {
    int64_t tokens, index;
    uint64_t hash;
} plan_item;

static int plan_cmp(const void *pa, const void *pb)
{
    const plan_item *a = pa, *b = pb;
    if (a->tokens != b->tokens) return a->tokens > b->tokens ? -1 : 1;
    if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

pq_status pq_calib_plan(const pq_fasta_record *recs, int64_t n, int n_ranks, int *owner)
{
    if (n_ranks <= 1) {
        for (int64_t i = 0; i < n; i++) owner[i] = 0;
        return PQ_OK;
    }
    plan_item *it = malloc((size_t)(n ? n : 1) * sizeof *it);
    int64_t *load = calloc((size_t)n_ranks, sizeof *load);
    if (!it || !load) {
        free(it);
        free(load);
        return pq_err(PQ_ERR_RESOURCE, "out of memory planning %lld calibration sequences",
                      (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        it[i] = (plan_item){recs[i].n_ids, i, pq_calib_id_hash(recs[i].id)};
    qsort(it, (size_t)n, sizeof *it, plan_cmp);
    /* longest first onto the least loaded rank: within one sequence of the
     * optimum, and a pure function of the data */
    for (int64_t k = 0; k < n; k++) {
        int best = 0;
        for (int r = 1; r < n_ranks; r++)
            if (load[r] < load[best]) best = r;
        owner[it[k].index] = best;
        load[best] += it[k].tokens;
    }
    free(it);
    free(load);
    return PQ_OK;
}

void pq_calib_records_free(pq_fasta_record *recs, int64_t n)
{
    for (int64_t i = 0; recs && i < n; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
}

pq_status pq_calib_read_data(const char *path, const pq_calib_data_opts *o,
                             pq_fasta_record **recs_out, int64_t *n_out, int64_t *n_skipped)
{
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = o->max_length > 0 ? o->max_length : 1022;
    fo.on_long = PQ_FASTA_SKIP;
    fo.unknown_to_unk = true;
    fo.skip_empty = true;
    pq_fasta *f = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n = 0, cap = 0;
    pq_status st;
    *recs_out = NULL;
    *n_out = 0;
    *n_skipped = 0;
    if ((st = pq_fasta_open(path, &fo, &f))) return st;
    for (;;) {
        if (o->max_seqs > 0 && n >= o->max_seqs) break;
        if (n == cap) {
            int64_t nc = cap ? cap * 2 : 64;
            pq_fasta_record *r = realloc(recs, (size_t)nc * sizeof *r);
            if (!r) { st = pq_err(PQ_ERR_RESOURCE, "out of memory reading %s", path); goto fail; }
            recs = r;
            cap = nc;
        }
        bool got = false;
        if ((st = pq_fasta_next(f, &recs[n], &got))) goto fail;
        if (!got) break;
        n++;
    }
    *n_skipped = pq_fasta_n_skipped(f);
    pq_fasta_close(f);
    if (n == 0) {
        pq_calib_records_free(recs, 0);
        return pq_err(PQ_ERR_CALIBRATION, "%s: no usable calibration sequence (%lld skipped as "
                      "empty or longer than %lld residues)", path, (long long)*n_skipped,
                      (long long)fo.max_residues);
    }
    *recs_out = recs;
    *n_out = n;
    return PQ_OK;
fail:
    pq_fasta_close(f);
    pq_calib_records_free(recs, n);
    return st;
}

/* Forward one packed batch of records idx[0..k) with the observer armed. */
static pq_status run_batch(pq_esm2_model *m, const pq_fasta_record *recs, const int64_t *idx,
                           int64_t k, int64_t *off, int32_t *ids, pq_esm2_outputs *out)
{
    off[0] = 0;
    for (int64_t j = 0; j < k; j++) {
        const pq_fasta_record *r = &recs[idx[j]];
        memcpy(ids + off[j], r->ids, (size_t)r->n_ids * sizeof *ids);
        off[j + 1] = off[j] + r->n_ids;
    }
    pq_esm2_batch b = {.n_seqs = k, .offsets = off, .ids = ids};
    pq_status st = pq_esm2_forward(m, &b, NULL, out);
    if (st) {
        char why[512];
        snprintf(why, sizeof why, "%s", pq_err_detail());
        if (k == 1) pq_err_replace(st, "calibration sequence '%s': %s", recs[idx[0]].id, why);
        else pq_err_replace(st, "calibration batch of %lld sequences from '%s': %s", (long long)k,
                            recs[idx[0]].id, why);
    }
    pq_esm2_outputs_clear(out);
    return st;
}

pq_status pq_calib_collect(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n, int rank,
                           int n_ranks, int64_t batch_tokens, pq_calib *c)
{
    pq_status st = PQ_OK;
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    if (batch_tokens <= 0) batch_tokens = PQ_CALIB_BATCH_TOKENS;
    int64_t max_ids = 1;
    for (int64_t i = 0; i < n; i++)
        if (recs[i].n_ids > max_ids) max_ids = recs[i].n_ids;
    int64_t cap_ids = batch_tokens > max_ids ? batch_tokens : max_ids;
    int *owner = malloc((size_t)(n ? n : 1) * sizeof *owner);
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    int64_t *off = malloc((size_t)(n + 1) * sizeof *off);
    int32_t *ids = malloc((size_t)cap_ids * sizeof *ids);
    if (!owner || !idx || !off || !ids) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory for calibration batches");
        goto cleanup;
    }
    if ((st = pq_calib_plan(recs, n, n_ranks, owner))) goto cleanup;
    pq_esm2_model_set_observer(m, pq_calib_observe, c);
    int64_t k = 0, tok = 0;
    for (int64_t i = 0; i <= n && !st; i++) {
        bool last = i == n;
        if (!last && owner[i] != rank) continue;
        /* the batch so far goes when the next record would overflow it */
        if (k && (last || tok + recs[i].n_ids > batch_tokens)) {
            st = run_batch(m, recs, idx, k, off, ids, &out);
            if (!st && c->failed) st = pq_err(PQ_ERR_RESOURCE, "out of memory collecting statistics");
            if (!st) c->n_sequences += (uint64_t)k;
            k = tok = 0;
        }
        if (last) break;
        idx[k++] = i;
        tok += recs[i].n_ids;
    }
    pq_esm2_model_set_observer(m, NULL, NULL);
    if (!st) st = pq_calib_flush(c);
cleanup:
    pq_esm2_outputs_clear(&out);
    free(owner);
    free(idx);
    free(off);
    free(ids);
    return st;
}

pq_status pq_calib_model_sha256(const char *path, char hex[65])
{
    if (pq_path_is_h5(path))
        return pq_hash_tree_file(path, PQ_HASH_CHUNK_BYTES, hex);
    pq_st_model *st_m = NULL;
    pq_status st = pq_st_open(path, &st_m);
    /* the same digest, threads and all, that quantize records */
    if (!st) st = pq_st_hash_tree(st_m, PQ_HASH_CHUNK_BYTES, pq_cpu_count(), hex);
    pq_st_close(st_m);
    return st;
}

pq_status pq_calib_add_dataset(pq_calib *c, const char *path)
{
    char hex[65];
    pq_status st = pq_sha256_file(path, hex);
    if (st) return st;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t old = c->datasets ? strlen(c->datasets) : 0;
    size_t add = strlen(base) + 80;
    char *d = realloc(c->datasets, old + add);
    if (!d) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    snprintf(d + old, add, "%ssha256:%s %s", old ? ";" : "", hex, base);
    c->datasets = d;
    return PQ_OK;
}

pq_status pq_calib_set_source(pq_calib *c, const char *model, const char *data, int64_t n_skipped)
{
    c->n_skipped = (uint64_t)n_skipped;
    free(c->model_path);
    if (!(c->model_path = strdup(model))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_calib_model_sha256(model, c->model_sha256);
    if (!st) st = pq_calib_add_dataset(c, data);
    return st;
}

pq_status pq_calib_collect_file(const char *model, const char *data, const pq_calib_data_opts *o,
                                int n_threads, pq_calib **out)
{
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n = 0, skipped = 0;
    pq_calib *c = NULL;
    pq_esm2_model_opts mo = {.layer_begin = 0, .layer_end = 0, .n_threads = n_threads, .ops = o->ops};
    *out = NULL;
    pq_status st = pq_esm2_model_open(model, &mo, &m);
    if (!st) st = pq_calib_read_data(data, o, &recs, &n, &skipped);
    if (!st) {
        const pq_esm2_config *cfg = pq_esm2_model_config(m);
        st = pq_calib_create(cfg->num_layers, cfg->embed_dim, cfg->ffn_dim, &c);
    }
    if (!st) st = pq_calib_collect(m, recs, n, 0, 1, o->batch_tokens, c);
    if (!st) st = pq_calib_set_source(c, model, data, skipped);
    if (!st) {
        *out = c;
        c = NULL;
    }
    pq_calib_free(c);
    pq_calib_records_free(recs, n);
    pq_esm2_model_free(m);
    return st;
}
