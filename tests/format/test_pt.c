/* SPDX-License-Identifier: Apache-2.0 */
/* test_pt.c - the PyTorch checkpoint reader (format/pt_*.c through
 * pq_st_open) on hand-built zips and pickles: the opcodes torch.save writes
 * (pickletools' numbering), zip64, fair-esm names, and every malformed or
 * hostile case refused with its own error. Nothing in a pickle runs: a
 * pickle that would call os.system("touch MARKER") leaves no marker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt_testutil.h"
#include "format/safetensors.h"

/* ------------------------------------------------------------ byte buffers */

typedef struct buf {
    unsigned char d[1 << 22]; /* room for the pickles over the bounds */
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->d);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void op(buf *b, unsigned char c) { put(b, &c, 1); }
static void le(buf *b, uint64_t v, int k)
{
    for (int i = 0; i < k; i++) op(b, i < 8 ? (unsigned char)(v >> (8 * i)) : 0); /* wider: zero bytes */
}

/* ------------------------------------------------------------ pickles */

static void pk_str(buf *b, const char *s)
{
    op(b, 'X'); /* BINUNICODE */
    le(b, strlen(s), 4);
    put(b, s, strlen(s));
}
static void pk_int(buf *b, int64_t v)
{
    op(b, 'J'); /* BININT */
    le(b, (uint64_t)v, 4);
}
static void pk_global(buf *b, const char *mod, const char *name)
{
    op(b, 'c');
    put(b, mod, strlen(mod));
    op(b, '\n');
    put(b, name, strlen(name));
    op(b, '\n');
}
static void pk_ints(buf *b, const int64_t *v, int n)
{
    op(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    op(b, 't');
}

/* Persistent ids of the legacy format (a sixth item, None). */
static int g_legacy_pid;

/* A tensor as torch.save writes it: _rebuild_tensor_v2(persistent storage,
 * offset, size, stride, False, OrderedDict()). `fn` replaces the rebuild
 * function when not NULL. */
static void pk_tensor(buf *b, const char *fn, const char *stype, const char *key, int64_t numel, int64_t off,
                      const int64_t *size, const int64_t *stride, int nd)
{
    pk_global(b, "torch._utils", fn ? fn : "_rebuild_tensor_v2");
    op(b, '(');
    op(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", stype);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    if (g_legacy_pid) op(b, 'N'); /* the legacy format's view metadata: none */
    op(b, 't');
    op(b, 'Q'); /* BINPERSID */
    pk_int(b, off);
    pk_ints(b, size, nd);
    pk_ints(b, stride, nd);
    op(b, 0x89); /* NEWFALSE */
    pk_global(b, "collections", "OrderedDict");
    op(b, ')');
    op(b, 'R');
    op(b, 't');
    op(b, 'R');
}

static void pk_proto(buf *b)
{
    op(b, 0x80);
    op(b, 2);
}

static void pk_begin(buf *b)
{
    b->n = 0;
    pk_proto(b);
}

/* {"w": F32 [2,3] over storage "0" of 6 floats} as torch.save writes it */
static void pk_simple(buf *b, const char *name)
{
    static const int64_t size[2] = {2, 3}, stride[2] = {3, 1};
    pk_begin(b);
    pk_global(b, "collections", "OrderedDict");
    op(b, ')');
    op(b, 'R');
    op(b, 'q'); /* BINPUT 0 */
    op(b, 0);
    op(b, '(');
    pk_str(b, name);
    pk_tensor(b, NULL, "FloatStorage", "0", 6, 0, size, stride, 2);
    op(b, 'u');
    op(b, '.');
}

/* ------------------------------------------------------------ zips */

typedef struct zentry {
    const char *name;
    const void *data;
    size_t n;
    int method; /* 0 stored, 8 deflate (data then is not really deflated) */
} zentry;

/* The fields a local and a central header share, from "version needed" to
 * "extra field length" (APPNOTE 4.3.7, 4.3.12). */
static void header_common(buf *b, const zentry *e, int zip64, size_t extra_len)
{
    le(b, zip64 ? 45 : 20, 2);
    le(b, 0, 2); /* flags */
    le(b, (uint64_t)e->method, 2);
    le(b, 0, 4); /* time, date */
    le(b, 0, 4); /* crc (not checked by readers that map in place) */
    le(b, zip64 ? 0xffffffffu : e->n, 4);
    le(b, zip64 ? 0xffffffffu : e->n, 4);
    le(b, strlen(e->name), 2);
    le(b, extra_len, 2);
}

/* The zip64 extra field: both sizes, and the local header's offset when
 * with_local. */
static void zip64_extra(buf *b, uint64_t n, int with_local, uint64_t local)
{
    le(b, 1, 2);
    le(b, with_local ? 24 : 16, 2);
    le(b, n, 8);
    le(b, n, 8);
    if (with_local) le(b, local, 8);
}

/* A zip of the entries; zip64: every size and offset through the zip64
 * extra field and end records (as writers do for files over 4 GiB). */
static void write_zip(const char *path, const zentry *e, int n, int zip64)
{
    static buf z, cd;
    z.n = cd.n = 0;
    for (int i = 0; i < n; i++) {
        uint64_t local = z.n;
        size_t nl = strlen(e[i].name);
        le(&z, 0x04034b50, 4);
        header_common(&z, &e[i], zip64, zip64 ? 20 : 3);
        put(&z, e[i].name, nl);
        if (zip64)
            zip64_extra(&z, e[i].n, 0, 0);
        else
            put(&z, "xyz", 3); /* an unrelated extra field moves the data */
        put(&z, e[i].data, e[i].n);
        le(&cd, 0x02014b50, 4);
        le(&cd, zip64 ? 45 : 20, 2); /* made by */
        header_common(&cd, &e[i], zip64, zip64 ? 28 : 0);
        le(&cd, 0, 2 + 2 + 2); /* comment length, disk, internal attributes */
        le(&cd, 0, 4);         /* external attributes */
        le(&cd, zip64 ? 0xffffffffu : local, 4);
        put(&cd, e[i].name, nl);
        if (zip64) zip64_extra(&cd, e[i].n, 1, local);
    }
    uint64_t cd_off = z.n;
    put(&z, cd.d, cd.n);
    if (zip64) {
        uint64_t r = z.n;
        le(&z, 0x06064b50, 4);
        le(&z, 44, 8);
        le(&z, 45, 2);
        le(&z, 45, 2);
        le(&z, 0, 8);
        le(&z, (uint64_t)n, 8);
        le(&z, (uint64_t)n, 8);
        le(&z, cd.n, 8);
        le(&z, cd_off, 8);
        le(&z, 0x07064b50, 4);
        le(&z, 0, 4);
        le(&z, r, 8);
        le(&z, 1, 4);
    }
    le(&z, 0x06054b50, 4);
    le(&z, 0, 4);
    le(&z, zip64 ? 0xffff : (uint64_t)n, 2);
    le(&z, zip64 ? 0xffff : (uint64_t)n, 2);
    le(&z, zip64 ? 0xffffffffu : cd.n, 4);
    le(&z, zip64 ? 0xffffffffu : cd_off, 4);
    le(&z, 0, 2);
    tu_write_raw(path, z.d, z.n);
}

static const float k_w[6] = {0.5f, -1.0f, 2.25f, 3.0f, -4.5f, 8.0f};

/* archive/data.pkl = pickle p, archive/data/0 = the six floats */
static char *write_ckpt(const char *name, const buf *p, int zip64)
{
    zentry e[3] = {{"archive/data.pkl", p->d, p->n, 0}, {"archive/data/0", k_w, sizeof k_w, 0},
                   {"archive/version", "3\n", 2, 0}};
    char *path = tu_path(g_dir, name);
    write_zip(path, e, 3, zip64);
    return path;
}

static void expect_format(const char *path, const char *s1, const char *s2)
{
    pq_st_model *m = (pq_st_model *)1;
    pq_err_clear();
    pq_status st = pq_st_open(path, &m);
    if (st != PQ_ERR_FORMAT || !strstr(pq_err_detail(), s1) || (s2 && !strstr(pq_err_detail(), s2)))
        fail_msg("%s: got status %d detail '%s', want FORMAT with '%s'%s%s", path, (int)st, pq_err_detail(), s1,
                 s2 ? " and " : "", s2 ? s2 : "");
    assert_null(m);
    pq_err_clear();
}

static void expect_w(const char *path, const char *name)
{
    pq_st_model *m = NULL;
    if (pq_st_open(path, &m) != PQ_OK) fail_msg("%s: %s", path, pq_err_detail());
    assert_string_equal(pq_st_kind(m), "PyTorch");
    assert_int_equal(pq_st_count(m), 1);
    const pq_st_tensor *t = pq_st_find(m, name);
    assert_non_null(t);
    assert_int_equal(t->dtype, PQ_DT_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    float got[6];
    assert_int_equal(pq_st_read_rows_f32(m, t, 0, 2, got), PQ_OK);
    assert_memory_equal(got, k_w, sizeof k_w);
    pq_st_close(m);
}

/* ------------------------------------------------------------ tests */

static void test_valid(void **state)
{
    (void)state;
    static buf p;
    pk_simple(&p, "w");
    for (int z64 = 0; z64 < 2; z64++) {
        char *path = write_ckpt(z64 ? "z64.pt" : "plain.pt", &p, z64);
        expect_w(path, "w");
        free(path);
    }
}

/* A tensor at a storage offset: shape [2] from element 3 of the storage. */
static void test_offset_view(void **state)
{
    (void)state;
    static buf p;
    static const int64_t size[1] = {2}, stride[1] = {1};
    pk_begin(&p);
    op(&p, '}');
    pk_str(&p, "v");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 3, size, stride, 1);
    op(&p, 's');
    op(&p, '.');
    char *path = write_ckpt("view.bin", &p, 0);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(path, &m), PQ_OK);
    float got[2];
    assert_int_equal(pq_st_read_rows_f32(m, pq_st_find(m, "v"), 0, 1, got), PQ_OK);
    assert_true(got[0] == k_w[3] && got[1] == k_w[4]);
    pq_st_close(m);
    free(path);
}

/* A directory: pytorch_model.bin.index.json and its shards, then
 * pytorch_model.bin beside it, then model.safetensors, which wins. */
static void test_directory(void **state)
{
    (void)state;
    static buf p;
    char *dir = tu_path(g_dir, "repo");
    assert_int_equal(mkdir(dir, 0755), 0);
    const char *const shard[2] = {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"};
    for (int i = 0; i < 2; i++) {
        pk_simple(&p, i ? "v" : "w");
        zentry e[2] = {{"shard/data.pkl", p.d, p.n, 0}, {"shard/data/0", k_w, sizeof k_w, 0}};
        char *sp = tu_path(dir, shard[i]);
        write_zip(sp, e, 2, 0);
        free(sp);
    }
    char *idx = tu_path(dir, "pytorch_model.bin.index.json");
    const char *json = "{\"metadata\":{\"total_size\":48},\"weight_map\":{"
                       "\"w\":\"pytorch_model-00001-of-00002.bin\",\"v\":\"pytorch_model-00002-of-00002.bin\"}}";
    tu_write_raw(idx, json, strlen(json));
    pq_st_model *m = NULL;
    if (pq_st_open(dir, &m) != PQ_OK) fail_msg("%s", pq_err_detail());
    assert_int_equal(pq_st_count(m), 2);
    assert_int_equal(pq_st_file_count(m), 2);
    assert_int_equal(pq_st_find(m, "v")->file_idx, 1);
    pq_st_close(m);
    free(idx);
    char *single = tu_path(dir, "pytorch_model.bin"), *st = tu_path(dir, "model.safetensors");
    char *one = write_ckpt("one.pt", (pk_simple(&p, "x"), &p), 0);
    assert_int_equal(rename(one, single), 0);
    assert_int_equal(pq_st_open(dir, &m), PQ_OK); /* the index still comes first */
    assert_int_equal(pq_st_count(m), 2);
    pq_st_close(m);
    tu_write_st(st, "{\"s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", k_w, 4);
    assert_int_equal(pq_st_open(dir, &m), PQ_OK);
    assert_string_equal(pq_st_kind(m), "safetensors");
    assert_non_null(pq_st_find(m, "s"));
    pq_st_close(m);
    free(one);
    free(single);
    free(st);
    free(dir);
}

/* fair-esm's layout: {"model": {names with encoder.sentence_encoder.},
 * "args": an argparse.Namespace, "cfg": an object built by REDUCE}: the
 * wrapper objects stay placeholders; names become Hugging Face's. */
static void test_fairesm_layout(void **state)
{
    (void)state;
    static buf p;
    static const int64_t size[2] = {2, 3}, stride[2] = {3, 1};
    pk_begin(&p);
    op(&p, '}');
    op(&p, '(');
    pk_str(&p, "args");
    pk_global(&p, "argparse", "Namespace");
    op(&p, ')');
    op(&p, 0x81); /* NEWOBJ */
    op(&p, '}');
    pk_str(&p, "layers");
    pk_int(&p, 6);
    op(&p, 's');
    op(&p, 'b'); /* BUILD */
    pk_str(&p, "cfg");
    pk_global(&p, "omegaconf.dictconfig", "DictConfig");
    op(&p, ')');
    op(&p, 'R');
    pk_str(&p, "model");
    op(&p, '}');
    op(&p, '(');
    pk_str(&p, "encoder.sentence_encoder.layers.3.self_attn.q_proj.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 2);
    pk_str(&p, "encoder.lm_head.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 2);
    pk_str(&p, "encoder.sentence_encoder.layers.0.self_attn.rot_emb.inv_freq");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, (const int64_t[]){6}, (const int64_t[]){1}, 1);
    pk_str(&p, "encoder.sentence_encoder.emb_layer_norm_after.bias");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, (const int64_t[]){6}, (const int64_t[]){1}, 1);
    pk_str(&p, "encoder.sentence_encoder.layers.12.final_layer_norm.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, (const int64_t[]){6}, (const int64_t[]){1}, 1);
    pk_str(&p, "encoder.sentence_encoder.embed_tokens.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 2);
    pk_str(&p, "contact_head.regression.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, (const int64_t[]){1, 6}, (const int64_t[]){6, 1}, 2);
    op(&p, 'u');
    op(&p, 'u');
    op(&p, '.');
    char *path = write_ckpt("esm2_t6.pt", &p, 0);
    pq_st_model *m = NULL;
    if (pq_st_open(path, &m) != PQ_OK) fail_msg("%s", pq_err_detail());
    /* expected names: transformers' convert_esm.py, read backwards */
    static const char *const want[] = {
        "esm.contact_head.regression.weight",
        "esm.embeddings.word_embeddings.weight",
        "esm.encoder.emb_layer_norm_after.bias",
        "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq",
        "esm.encoder.layer.12.LayerNorm.weight",
        "esm.encoder.layer.3.attention.self.query.weight",
    }; /* lm_head.weight is embed_tokens' storage: tied, so dropped */
    assert_int_equal(pq_st_count(m), 6);
    for (int i = 0; i < 6; i++) assert_string_equal(pq_st_get(m, i)->name, want[i]);
    pq_st_close(m);
    free(path);
}

/* lm_head.decoder.weight is dropped only when it is the embedding's bytes. */
static void test_tied(void **state)
{
    (void)state;
    static buf p;
    static const int64_t size[1] = {3}, stride[1] = {1};
    for (int off = 0; off < 2; off++) {
        pk_begin(&p);
        op(&p, '}');
        op(&p, '(');
        pk_str(&p, "esm.embeddings.word_embeddings.weight");
        pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 1);
        pk_str(&p, "lm_head.decoder.weight");
        pk_tensor(&p, NULL, "FloatStorage", "0", 6, 3 * off, size, stride, 1);
        op(&p, 'u');
        op(&p, '.');
        char *path = write_ckpt("tied.bin", &p, 0);
        pq_st_model *m = NULL;
        assert_int_equal(pq_st_open(path, &m), PQ_OK);
        assert_int_equal(pq_st_count(m), off ? 2 : 1);
        assert_true((pq_st_find(m, "lm_head.decoder.weight") != NULL) == (off != 0));
        pq_st_close(m);
        free(path);
    }
}

/* __reduce__ returning (os.system, ("touch MARKER",)): as data it stays a
 * placeholder and the load succeeds; as a tensor it is refused. The marker
 * never appears. */
static void test_malicious(void **state)
{
    (void)state;
    char *marker = tu_path(g_dir, "MARKER");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "touch %s", marker);
    static buf p;
    for (int as_tensor = 0; as_tensor < 2; as_tensor++) {
        static const int64_t size[2] = {2, 3}, stride[2] = {3, 1};
        pk_begin(&p);
        op(&p, '}');
        pk_str(&p, "model");
        op(&p, '}');
        pk_str(&p, as_tensor ? "w" : "v");
        if (as_tensor) {
            pk_global(&p, "posix", "system");
            op(&p, '(');
            pk_str(&p, cmd);
            op(&p, 't');
            op(&p, 'R');
        } else {
            pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 2);
        }
        op(&p, 's');
        op(&p, 's');
        pk_str(&p, "args");
        pk_global(&p, "posix", "system");
        op(&p, '(');
        pk_str(&p, cmd);
        op(&p, 't');
        op(&p, 'R');
        op(&p, 's');
        op(&p, '.');
        char *path = write_ckpt("evil.pt", &p, 0);
        if (as_tensor) {
            expect_format(path, "tensor 'w' is built by posix.system", "not by torch._utils._rebuild_tensor_v2");
        } else {
            pq_st_model *m = NULL;
            if (pq_st_open(path, &m) != PQ_OK) fail_msg("%s", pq_err_detail());
            assert_int_equal(pq_st_count(m), 1);
            pq_st_close(m);
        }
        assert_int_equal(access(marker, F_OK), -1);
        free(path);
    }
    free(marker);
}

/* The legacy format (torch/serialization.py, _legacy_save): the magic
 * number, 1001, sys_info, the object, the sorted storage keys, then each
 * storage as an int64 element count and its bytes. `variant` breaks it. */
static char *write_legacy(const char *name, int variant)
{
    static buf p;
    static const unsigned char magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                          0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    static const int64_t size[2] = {2, 3}, stride[2] = {3, 1};
    p.n = 0;
    put(&p, magic, sizeof magic);
    if (variant == 1) p.d[5] ^= 1; /* another magic number */
    pk_proto(&p);
    op(&p, 'M');
    le(&p, 1001, 2);
    op(&p, '.');
    pk_proto(&p);
    op(&p, '}');
    pk_str(&p, "little_endian");
    op(&p, variant == 2 ? 0x89 : 0x88);
    op(&p, 's');
    op(&p, '.');
    pk_proto(&p);
    op(&p, '}');
    pk_str(&p, "w");
    g_legacy_pid = 1;
    pk_tensor(&p, NULL, "FloatStorage", "140", 6, 0, size, stride, 2);
    g_legacy_pid = 0;
    op(&p, 's');
    op(&p, '.');
    pk_proto(&p);
    op(&p, ']');
    pk_str(&p, "140");
    op(&p, 'a');
    op(&p, '.');
    le(&p, 6, 8);
    put(&p, k_w, variant == 3 ? sizeof k_w - 4 : sizeof k_w);
    if (variant == 4) op(&p, 0);
    char *path = tu_path(g_dir, name);
    tu_write_raw(path, p.d, p.n);
    return path;
}

static void test_legacy(void **state)
{
    (void)state;
    char *path = write_legacy("old.pt", 0);
    expect_w(path, "w");
    free(path);
    static const char *const want[] = {NULL, "does not start with torch.save's magic number", "not saved little-endian",
                                       "runs past the end", "1 bytes after the last storage"};
    for (int v = 1; v < 5; v++) {
        path = write_legacy("old.pt", v);
        expect_format(path, want[v], NULL);
        free(path);
    }
}

/* One malformed pickle per case, each with its error. */
static void test_bad_pickles(void **state)
{
    (void)state;
    static buf p;
    static const int64_t size[2] = {2, 3}, stride[2] = {3, 1}, tstride[2] = {1, 2};
    char *path;
#define CASE(build, w1, w2)                                                                                  \
    do {                                                                                                     \
        pk_begin(&p);                                                                                        \
        build;                                                                                               \
        path = write_ckpt("bad.pt", &p, 0);                                                                  \
        expect_format(path, w1, w2);                                                                         \
        free(path);                                                                                          \
    } while (0)
#define DICT_OF(value) (op(&p, '}'), pk_str(&p, "w"), (value), op(&p, 's'), op(&p, '.'))
    /* a tensor made by another function (torch's pre-v2 rebuild) */
    CASE(DICT_OF(pk_tensor(&p, "_rebuild_tensor", "FloatStorage", "0", 6, 0, size, stride, 2)),
         "tensor 'w' is built by torch._utils._rebuild_tensor", "refused");
    /* non-contiguous (a transpose) */
    CASE(DICT_OF(pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, tstride, 2)), "tensor 'w' is not contiguous",
         "stride [1, 2]");
    /* more elements than the storage */
    CASE(DICT_OF(pk_tensor(&p, NULL, "FloatStorage", "0", 6, 1, size, stride, 2)), "tensor 'w'",
         "beyond its storage");
    /* a storage larger than its entry */
    CASE(DICT_OF(pk_tensor(&p, NULL, "FloatStorage", "0", 7, 0, size, stride, 2)), "storage 'archive/data/0'",
         "fewer than its 7");
    /* a storage entry that is not there */
    CASE(DICT_OF(pk_tensor(&p, NULL, "FloatStorage", "9", 6, 0, size, stride, 2)), "zip entry 'archive/data/9'",
         "missing");
    /* a storage type outside the table */
    CASE(DICT_OF(pk_tensor(&p, NULL, "ComplexFloatStorage", "0", 3, 0, size, stride, 2)),
         "storage type torch.ComplexFloatStorage", "not supported");
    /* a value that is not a tensor */
    CASE(DICT_OF(pk_int(&p, 5)), "entry 'w' is a int", "not a tensor");
    /* the saved object is not a dict */
    CASE((op(&p, ']'), op(&p, '.')), "the saved object is a list", "not a dict of tensors");
    /* text-protocol opcode INT */
    CASE((put(&p, "I5\n", 3), op(&p, '.')), "opcode 'I' is not one torch.save writes", "at byte 2");
    /* a byte that is no opcode */
    CASE((op(&p, 0xff), op(&p, '.')), "unknown opcode", "0xff");
    /* no STOP */
    CASE(op(&p, '}'), "ends without STOP", NULL);
    /* a string longer than the pickle */
    CASE((op(&p, 'X'), le(&p, 1000, 4), op(&p, '.')), "runs past the end", NULL);
    /* BINGET of a memo slot never set */
    CASE((op(&p, 'h'), op(&p, 7), op(&p, '.')), "memo index 7 was never set", NULL);
    /* stack underflow */
    CASE((op(&p, 's'), op(&p, '.')), "stack underflow", NULL);
    /* an integer wider than 64 bits */
    CASE((op(&p, 0x8a), op(&p, 9), le(&p, 0, 9), op(&p, '.')), "beyond 64 bits", NULL);
    /* a persistent id of another shape */
    CASE((pk_str(&p, "x"), op(&p, 'Q'), op(&p, '.')), "persistent id other than", NULL);
    /* a legacy storage view: a sixth persistent-id item that is not None */
    CASE((op(&p, '('), pk_str(&p, "storage"), pk_global(&p, "torch", "FloatStorage"), pk_str(&p, "0"),
          pk_str(&p, "cpu"), pk_int(&p, 6), pk_ints(&p, (const int64_t[]){0, 3}, 2), op(&p, 't'), op(&p, 'Q'),
          op(&p, '.')),
         "a storage view (legacy format) is not supported", NULL);
    /* more values than the bound (1 << 20), and a deeper stack than it */
    CASE((memset(p.d + p.n, 'N', (1 << 20) + 1), p.n += (1 << 20) + 1, op(&p, '.')), "more than 1048576 values", NULL);
    CASE((op(&p, 'N'), memset(p.d + p.n, '2', 1 << 20), p.n += 1 << 20, op(&p, '.')), "stack deeper than 1048576",
         NULL);
    /* 2000 nested MARKs */
    CASE((memset(p.d + p.n, '(', 2000), p.n += 2000, op(&p, '.')), "nested deeper than", NULL);
    /* SETITEM on a list */
    CASE((op(&p, ']'), pk_str(&p, "k"), pk_str(&p, "v"), op(&p, 's'), op(&p, '.')), "SETITEM on a list", NULL);
    /* calling a string */
    CASE((pk_str(&p, "f"), op(&p, ')'), op(&p, 'R'), op(&p, '.')), "REDUCE calls a str", NULL);
    /* protocol 6 */
    p.d[1] = 6;
    path = write_ckpt("bad.pt", &p, 0);
    expect_format(path, "pickle protocol 6", NULL);
    free(path);
#undef CASE
#undef DICT_OF
}

static void test_bad_containers(void **state)
{
    (void)state;
    static buf p;
    pk_simple(&p, "w");
    /* a compressed storage entry */
    zentry e[2] = {{"archive/data.pkl", p.d, p.n, 0}, {"archive/data/0", k_w, sizeof k_w, 8}};
    char *path = tu_path(g_dir, "deflated.pt");
    write_zip(path, e, 2, 0);
    expect_format(path, "zip entry 'archive/data/0' is compressed", "re-save");
    free(path);
    /* no data.pkl */
    path = tu_path(g_dir, "nopkl.pt");
    write_zip(path, e + 1, 1, 0);
    expect_format(path, "not a torch.save checkpoint", NULL);
    free(path);
    /* a zip cut short: no end record */
    path = tu_path(g_dir, "cut.pt");
    write_zip(path, e, 2, 0);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 200), 0);
    fclose(f);
    expect_format(path, "no end of central directory", NULL);
    free(path);
    /* two names that map to one Hugging Face name */
    pk_begin(&p);
    op(&p, '}');
    op(&p, '(');
    static const int64_t size[1] = {6}, stride[1] = {1};
    pk_str(&p, "encoder.embed_tokens.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 1);
    pk_str(&p, "embed_tokens.weight");
    pk_tensor(&p, NULL, "FloatStorage", "0", 6, 0, size, stride, 1);
    op(&p, 'u');
    op(&p, '.');
    path = write_ckpt("twice.pt", &p, 0);
    expect_format(path, "both named 'esm.embeddings.word_embeddings.weight'", NULL);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_offset_view),
        cmocka_unit_test(test_fairesm_layout),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_tied),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_malicious),
        cmocka_unit_test(test_bad_pickles),
        cmocka_unit_test(test_bad_containers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
