/* SPDX-License-Identifier: Apache-2.0 */
/* calib_run.c - calibration data, sharding and the observed forward pass. */
#include "calib_run.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int pq_calib_shard(const char *id, int n_ranks)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return n_ranks > 1 ? (int)(h % (uint64_t)n_ranks) : 0;
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

pq_status pq_calib_collect(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n, int rank,
                           int n_ranks, pq_calib *c)
{
    pq_status st = PQ_OK;
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    pq_esm2_model_set_observer(m, pq_calib_observe, c);
    for (int64_t i = 0; i < n; i++) {
        if (pq_calib_shard(recs[i].id, n_ranks) != rank) continue;
        int64_t off[2] = {0, recs[i].n_ids};
        pq_esm2_batch b = {.n_seqs = 1, .offsets = off, .ids = recs[i].ids};
        if ((st = pq_esm2_forward(m, &b, NULL, &out))) {
            char why[512];
            snprintf(why, sizeof why, "%s", pq_err_detail());
            pq_err_replace(st, "calibration sequence '%s': %s", recs[i].id, why);
            break;
        }
        pq_esm2_outputs_clear(&out);
        if (c->failed) { st = pq_err(PQ_ERR_RESOURCE, "out of memory collecting statistics"); break; }
        c->n_sequences++;
    }
    pq_esm2_outputs_clear(&out);
    pq_esm2_model_set_observer(m, NULL, NULL);
    return st;
}

static void to_hex(const unsigned char *md, char hex[65])
{
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

pq_status pq_calib_file_sha256(const char *path, char hex[65])
{
    pq_status st = PQ_OK;
    FILE *f = fopen(path, "rb");
    if (!f) return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    size_t got;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        st = pq_err(PQ_ERR_INTERNAL, "sha256 init failed");
        goto cleanup;
    }
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        if (EVP_DigestUpdate(ctx, buf, got) != 1) { st = pq_err(PQ_ERR_INTERNAL, "sha256 failed"); goto cleanup; }
    if (ferror(f)) { st = pq_err(PQ_ERR_IO, "%s: read error", path); goto cleanup; }
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32) {
        st = pq_err(PQ_ERR_INTERNAL, "sha256 final failed");
        goto cleanup;
    }
    to_hex(md, hex);
cleanup:
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return st;
}

pq_status pq_calib_model_sha256(const char *path, char hex[65])
{
    size_t n = strlen(path);
    if ((n > 3 && !strcmp(path + n - 3, ".h5")) || (n > 5 && !strcmp(path + n - 5, ".hdf5")))
        return pq_calib_file_sha256(path, hex);
    pq_st_model *st_m = NULL;
    pq_status st = pq_st_open(path, &st_m);
    if (!st) st = pq_st_sha256(st_m, hex);
    pq_st_close(st_m);
    return st;
}

pq_status pq_calib_add_dataset(pq_calib *c, const char *path)
{
    char hex[65];
    pq_status st = pq_calib_file_sha256(path, hex);
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
