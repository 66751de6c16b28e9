/* SPDX-License-Identifier: Apache-2.0 */
/* ckpt_testutil.c - helpers for the checkpoint tests (see ckpt_testutil.h). */
#include "ckpt_testutil.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    abort();
}

char *tu_mkdtemp(void)
{
    const char *t = getenv("TMPDIR");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/pq_ckpt_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(buf)) die("mkdtemp");
    return strdup(buf);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void tu_rm_rf(const char *dir)
{
    if (dir) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tu_write_raw(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    if (n && fwrite(buf, 1, n, f) != n) die("fwrite");
    fclose(f);
}

void tu_write_st(const char *path, const char *json, const void *data, size_t n_data)
{
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    uint64_t n = strlen(json);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(json, 1, n, f) != n) die("fwrite");
    if (data && n_data && fwrite(data, 1, n_data, f) != n_data) die("fwrite");
    fflush(f);
    if (!data && n_data && ftruncate(fileno(f), (off_t)(8 + n + n_data)) != 0) die("ftruncate");
    fclose(f);
}

void tu_sha256sum(const char *const *paths, int n, char hex[65])
{
    char cmd[4096] = "cat";
    for (int i = 0; i < n; i++) {
        strncat(cmd, " '", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, paths[i], sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, "'", sizeof cmd - strlen(cmd) - 1);
    }
    strncat(cmd, " | sha256sum", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) die("popen");
    if (fscanf(p, "%64s", hex) != 1) die("sha256sum output");
    pclose(p);
}

void tu_tree_hash_py(const char *const *paths, int n, long chunk, char hex[65])
{
    /* the recipe of docs/FORMAT.md, run by Python's hashlib */
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import hashlib, sys\n"
             "c = int(sys.argv[1]); leaves = b\"\"\n"
             "for fn in sys.argv[2:]:\n"
             "    d = open(fn, \"rb\").read()\n"
             "    leaves += b\"\".join(hashlib.sha256(d[i:i + c]).digest() for i in range(0, len(d), c))\n"
             "print(hashlib.sha256(leaves).hexdigest())' %ld", chunk);
    for (int i = 0; i < n; i++) {
        strncat(cmd, " '", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, paths[i], sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, "'", sizeof cmd - strlen(cmd) - 1);
    }
    FILE *p = popen(cmd, "r");
    if (!p) die("popen");
    if (fscanf(p, "%64s", hex) != 1) die("python3 hashlib output");
    while (fgetc(p) != EOF) {} /* the newline may come in a write of its own */
    if (pclose(p) != 0) die("python3 hashlib failed");
}

static void put(tu_tensor *t, int *n, const char *name, int ndim, int64_t d0, int64_t d1)
{
    tu_tensor *e = &t[(*n)++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = "F32";
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
}

int tu_esm2_tensors(int L, int D, int hd, int with_inv, int with_contact, int with_decoder,
                    tu_tensor *out)
{
    static const struct { const char *suffix; int kind; } per_layer[] = {
        /* kind: 0 = [D,D], 1 = [D], 2 = [4D,D], 3 = [4D], 4 = [D,4D] */
        {"attention.self.query.weight", 0}, {"attention.self.query.bias", 1},
        {"attention.self.key.weight", 0},   {"attention.self.key.bias", 1},
        {"attention.self.value.weight", 0}, {"attention.self.value.bias", 1},
        {"attention.output.dense.weight", 0}, {"attention.output.dense.bias", 1},
        {"attention.LayerNorm.weight", 1},  {"attention.LayerNorm.bias", 1},
        {"intermediate.dense.weight", 2},   {"intermediate.dense.bias", 3},
        {"output.dense.weight", 4},         {"output.dense.bias", 1},
        {"LayerNorm.weight", 1},            {"LayerNorm.bias", 1},
    };
    int n = 0;
    char nm[128];
    for (int l = 0; l < L; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            snprintf(nm, sizeof nm, "esm.encoder.layer.%d.%s", l, per_layer[i].suffix);
            switch (per_layer[i].kind) {
            case 0: put(out, &n, nm, 2, D, D); break;
            case 1: put(out, &n, nm, 1, D, 0); break;
            case 2: put(out, &n, nm, 2, 4 * D, D); break;
            case 3: put(out, &n, nm, 1, 4 * D, 0); break;
            default: put(out, &n, nm, 2, D, 4 * D); break;
            }
        }
        if (with_inv) {
            snprintf(nm, sizeof nm, "esm.encoder.layer.%d.attention.self.rotary_embeddings.inv_freq", l);
            put(out, &n, nm, 1, hd / 2, 0);
        }
    }
    put(out, &n, "esm.embeddings.word_embeddings.weight", 2, 33, D);
    put(out, &n, "esm.encoder.emb_layer_norm_after.weight", 1, D, 0);
    put(out, &n, "esm.encoder.emb_layer_norm_after.bias", 1, D, 0);
    put(out, &n, "lm_head.dense.weight", 2, D, D);
    put(out, &n, "lm_head.dense.bias", 1, D, 0);
    put(out, &n, "lm_head.layer_norm.weight", 1, D, 0);
    put(out, &n, "lm_head.layer_norm.bias", 1, D, 0);
    put(out, &n, "lm_head.bias", 1, 33, 0);
    if (with_decoder) put(out, &n, "lm_head.decoder.weight", 2, 33, D);
    if (with_contact) {
        put(out, &n, "esm.contact_head.regression.weight", 2, 1, (int64_t)L * (D / hd));
        put(out, &n, "esm.contact_head.regression.bias", 1, 1, 0);
    }
    return n;
}

int tu_drop(tu_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) {
            memmove(&t[i], &t[i + 1], (size_t)(n - i - 1) * sizeof *t);
            return n - 1;
        }
    return n;
}

void tu_write_tensors(const char *path, const tu_tensor *t, int n)
{
    size_t cap = 256 + (size_t)n * 256, used = 0;
    char *js = malloc(cap);
    uint64_t off = 0;
    used += (size_t)snprintf(js + used, cap - used, "{");
    for (int i = 0; i < n; i++) {
        uint64_t ne = 1;
        for (int d = 0; d < t[i].ndim; d++) ne *= (uint64_t)t[i].shape[d];
        uint64_t esz = strcmp(t[i].dtype, "I64") == 0 || strcmp(t[i].dtype, "F64") == 0 ? 8
                       : strcmp(t[i].dtype, "F32") == 0 || strcmp(t[i].dtype, "I32") == 0 ? 4 : 2;
        char shape[64];
        if (t[i].ndim == 2)
            snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)t[i].shape[0], (long long)t[i].shape[1]);
        else
            snprintf(shape, sizeof shape, "[%lld]", (long long)t[i].shape[0]);
        used += (size_t)snprintf(js + used, cap - used, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%llu,%llu]}",
                                 i ? "," : "", t[i].name, t[i].dtype, shape, (unsigned long long)off,
                                 (unsigned long long)(off + ne * esz));
        off += ne * esz;
    }
    snprintf(js + used, cap - used, "}");
    tu_write_st(path, js, NULL, (size_t)off);
    free(js);
}

char *g_dir;

int setup(void **state)
{
    (void)state;
    g_dir = tu_mkdtemp();
    return 0;
}

int teardown(void **state)
{
    (void)state;
    tu_rm_rf(g_dir);
    free(g_dir);
    return 0;
}
