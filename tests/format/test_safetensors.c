/* SPDX-License-Identifier: Apache-2.0 */
/* test_safetensors.c - the safetensors reader on hand-built valid, sharded and
 * malformed files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ckpt_testutil.h"
#include "format/safetensors.h"
#include "format/st_hash.h"


/* Little-endian byte helpers for building data areas by hand. */
static void put_f32(unsigned char *p, float f) { memcpy(p, &f, 4); }
static void put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }

/* 'z' (F32 [2,3]) first in the data area, then 'b' F16 [5], 'c' BF16 [2,2],
 * 'd' I64 [1], an empty 'e' F32 [0,3]; the header is space padded. */
static const char *valid_json =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"z\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"c\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[34,42]},"
    "\"b\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[24,34]},"
    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[50,50]},"
    "\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[42,50]}}    ";

static size_t valid_data(unsigned char *buf)
{
    memset(buf, 0, 64);
    for (int i = 0; i < 6; i++) put_f32(buf + 4 * i, (float)(i + 1) * 0.5f);
    /* F16: 1.0, -2.0, 0.333251953125 (0x3555), smallest denormal 2^-24, 65504 */
    static const uint16_t h[5] = {0x3c00, 0xc000, 0x3555, 0x0001, 0x7bff};
    for (int i = 0; i < 5; i++) put_u16(buf + 24 + 2 * i, h[i]);
    /* BF16: 1.0, 3.140625 (0x4049), -123.5 (0xc2f7), -0.0 */
    static const uint16_t bf[4] = {0x3f80, 0x4049, 0xc2f7, 0x8000};
    for (int i = 0; i < 4; i++) put_u16(buf + 34 + 2 * i, bf[i]);
    buf[42] = 7; /* int64 7 */
    return 50;
}

static char *write_valid(const char *name)
{
    unsigned char data[64];
    size_t n = valid_data(data);
    char *p = tu_path(g_dir, name);
    tu_write_st(p, valid_json, data, n);
    return p;
}

static void test_valid_file(void **state)
{
    (void)state;
    char *p = write_valid("v.safetensors");
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    assert_int_equal(pq_st_count(m), 5);
    assert_int_equal(pq_st_file_count(m), 1);
    assert_string_equal(pq_st_file_path(m, 0), p);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(pq_st_total_bytes(m), (uint64_t)st.st_size);
    /* sorted by name */
    const char *order[5] = {"b", "c", "d", "e", "z"};
    for (int i = 0; i < 5; i++) assert_string_equal(pq_st_get(m, i)->name, order[i]);
    assert_null(pq_st_get(m, 5));
    assert_null(pq_st_find(m, "nope"));

    const pq_st_tensor *z = pq_st_find(m, "z");
    assert_non_null(z);
    assert_int_equal(z->dtype, PQ_DT_F32);
    assert_int_equal(z->ndim, 2);
    assert_int_equal(z->shape[0], 2);
    assert_int_equal(z->shape[1], 3);
    assert_int_equal(z->n_elems, 6);
    assert_int_equal(z->n_bytes, 24);
    assert_int_equal(z->offset, 8 + strlen(valid_json));
    float f[8];
    assert_int_equal(pq_st_read_rows_f32(m, z, 1, 1, f), PQ_OK);
    assert_true(f[0] == 2.0f && f[1] == 2.5f && f[2] == 3.0f);
    assert_int_equal(pq_st_read_rows_f32(m, z, 0, 2, f), PQ_OK);
    for (int i = 0; i < 6; i++) assert_true(f[i] == (float)(i + 1) * 0.5f);
    assert_int_not_equal(pq_st_read_rows_f32(m, z, 1, 2, f), PQ_OK); /* past the end */

    const pq_st_tensor *b = pq_st_find(m, "b");
    assert_int_equal(b->dtype, PQ_DT_F16);
    assert_int_equal(pq_st_read_rows_f32(m, b, 0, 1, f), PQ_OK); /* 1-D = one row */
    assert_true(f[0] == 1.0f);
    assert_true(f[1] == -2.0f);
    assert_true(f[2] == 0.333251953125f);
    assert_true(f[3] == 5.9604644775390625e-08f);
    assert_true(f[4] == 65504.0f);

    const pq_st_tensor *c = pq_st_find(m, "c");
    assert_int_equal(pq_st_read_rows_f32(m, c, 1, 1, f), PQ_OK);
    assert_true(f[0] == -123.5f);
    assert_true(f[1] == 0.0f);
    assert_int_equal(pq_st_read_rows_f32(m, c, 0, 1, f), PQ_OK);
    assert_true(f[0] == 1.0f && f[1] == 3.140625f);

    const pq_st_tensor *d = pq_st_find(m, "d");
    assert_int_equal(d->dtype, PQ_DT_I64);
    int64_t iv;
    memcpy(&iv, pq_st_data(m, d), 8);
    assert_int_equal(iv, 7);
    pq_err_clear();
    assert_int_equal(pq_st_read_rows_f32(m, d, 0, 1, f), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "'d'"));
    pq_err_clear();

    const pq_st_tensor *e = pq_st_find(m, "e");
    assert_int_equal(e->n_elems, 0);
    assert_int_equal(pq_st_read_rows_f32(m, e, 0, 0, f), PQ_OK);

    /* release drops pages but the data stays readable from the file */
    pq_st_release(m, z);
    pq_st_release(m, z);
    assert_int_equal(pq_st_read_rows_f32(m, z, 0, 2, f), PQ_OK);
    assert_true(f[5] == 3.0f);

    /* one file smaller than a chunk: the digest is SHA-256(SHA-256(file)) */
    char hex[65], want[65];
    assert_int_equal(pq_st_hash_tree(m, PQ_HASH_CHUNK_BYTES, 1, hex), PQ_OK);
    const char *paths[1] = {p};
    tu_tree_hash_py(paths, 1, (long)PQ_HASH_CHUNK_BYTES, want);
    assert_string_equal(hex, want);
    pq_st_close(m);
    pq_st_close(NULL);
    free(p);
}

static void test_directory(void **state)
{
    (void)state;
    char *sub = tu_path(g_dir, "dirmodel");
    assert_int_equal(mkdir(sub, 0755), 0);
    char *p = tu_path(sub, "model.safetensors");
    unsigned char data[64];
    tu_write_st(p, valid_json, data, valid_data(data));
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(sub, &m), PQ_OK);
    assert_int_equal(pq_st_count(m), 5);
    pq_st_close(m);
    /* an empty directory is an I/O error naming it */
    char *empty = tu_path(g_dir, "emptydir");
    assert_int_equal(mkdir(empty, 0755), 0);
    pq_err_clear();
    assert_int_equal(pq_st_open(empty, &m), PQ_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(pq_err_detail(), "emptydir"));
    pq_err_clear();
    free(empty);
    free(p);
    free(sub);
}

/* Two shards: a.weight F32 [2] + b.bias F32 [1] in shard 1, c F16 [2] in shard 2. */
static char *write_sharded(const char *sub_name, const char *index_json, int write_second)
{
    char *sub = tu_path(g_dir, sub_name);
    assert_int_equal(mkdir(sub, 0755), 0);
    unsigned char d1[12], d2[4];
    put_f32(d1, 1.5f);
    put_f32(d1 + 4, -4.0f);
    put_f32(d1 + 8, 8.0f);
    put_u16(d2, 0x3800); /* 0.5 */
    put_u16(d2 + 2, 0xbc00); /* -1.0 */
    char *s1 = tu_path(sub, "model-00001-of-00002.safetensors");
    char *s2 = tu_path(sub, "model-00002-of-00002.safetensors");
    tu_write_st(s1, "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", d1, 12);
    if (write_second)
        tu_write_st(s2, "{\"c\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d2, 4);
    char *idx = tu_path(sub, "model.safetensors.index.json");
    tu_write_raw(idx, index_json, strlen(index_json));
    free(s1);
    free(s2);
    free(sub);
    return idx;
}

static const char *good_index =
    "{\"metadata\":{\"total_size\":16},\"weight_map\":{"
    "\"c\":\"model-00002-of-00002.safetensors\","
    "\"a.weight\":\"model-00001-of-00002.safetensors\","
    "\"b.bias\":\"model-00001-of-00002.safetensors\"}}";

static void test_sharded(void **state)
{
    (void)state;
    char *idx = write_sharded("sharded", good_index, 1);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(idx, &m), PQ_OK);
    assert_int_equal(pq_st_count(m), 3);
    assert_int_equal(pq_st_file_count(m), 2);
    assert_non_null(strstr(pq_st_file_path(m, 0), "model-00001-of-00002.safetensors"));
    assert_non_null(strstr(pq_st_file_path(m, 1), "model-00002-of-00002.safetensors"));
    const pq_st_tensor *c = pq_st_find(m, "c");
    assert_int_equal(c->file_idx, 1);
    float f[2];
    assert_int_equal(pq_st_read_rows_f32(m, c, 0, 1, f), PQ_OK);
    assert_true(f[0] == 0.5f && f[1] == -1.0f);
    const pq_st_tensor *b = pq_st_find(m, "b.bias");
    assert_int_equal(b->file_idx, 0);
    assert_int_equal(pq_st_read_rows_f32(m, b, 0, 1, f), PQ_OK);
    assert_true(f[0] == 8.0f);
    /* shards in index order, each cut on its own: a chunk never spans two */
    char hex[65], want[65];
    const char *paths[2] = {pq_st_file_path(m, 0), pq_st_file_path(m, 1)};
    for (long chunk = 7; chunk <= 1000; chunk += 331) {
        assert_int_equal(pq_st_hash_tree(m, chunk, 2, hex), PQ_OK);
        tu_tree_hash_py(paths, 2, chunk, want);
        assert_string_equal(hex, want);
    }
    struct stat s1, s2;
    assert_int_equal(stat(paths[0], &s1), 0);
    assert_int_equal(stat(paths[1], &s2), 0);
    assert_int_equal(pq_st_total_bytes(m), (uint64_t)(s1.st_size + s2.st_size));
    pq_st_close(m);

    /* the directory form finds the index */
    char *dir = tu_path(g_dir, "sharded");
    assert_int_equal(pq_st_open(dir, &m), PQ_OK);
    assert_int_equal(pq_st_file_count(m), 2);
    pq_st_close(m);
    free(dir);
    free(idx);
}

/* ---------------------------------------------------------- malformed */

static void expect_format(const char *path, const char *s1, const char *s2)
{
    pq_st_model *m = (pq_st_model *)1;
    pq_err_clear();
    pq_status st = pq_st_open(path, &m);
    if (st != PQ_ERR_FORMAT || !strstr(pq_err_detail(), s1) || (s2 && !strstr(pq_err_detail(), s2)))
        fail_msg("%s: got status %d detail '%s', want FORMAT with '%s'%s%s", path, (int)st,
                 pq_err_detail(), s1, s2 ? " and " : "", s2 ? s2 : "");
    assert_null(m);
    pq_err_clear();
}

typedef struct bad_case {
    const char *file;
    const char *json;
    size_t n_data;
    const char *want1, *want2;
} bad_case;

#define T(name, dt, sh, off) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":" off "}"

static const bad_case bad_cases[] = {
    {"notjson.safetensors", "{not json}", 0, "header is not valid JSON", NULL},
    {"array.safetensors", "[1, 2]     ", 0, "header is not a JSON object", NULL},
    {"dtype.safetensors", "{" T("w", "F8", "[2]", "[0,2]") "}", 2, "tensor 'w'", "unsupported dtype 'F8'"},
    {"negshape.safetensors", "{" T("w", "F32", "[-1]", "[0,4]") "}", 4, "tensor 'w'", "not a non-negative integer"},
    {"floatshape.safetensors", "{" T("w", "F32", "[1.5]", "[0,4]") "}", 4, "tensor 'w'", "not a non-negative integer"},
    {"ovfshape.safetensors", "{" T("w", "F32", "[4294967296,4294967296]", "[0,0]") "}", 0, "tensor 'w'", "overflows"},
    {"ovfbytes.safetensors", "{" T("w", "F64", "[2305843009213693952,2]", "[0,0]") "}", 0, "tensor 'w'", "overflows"},
    {"ndim.safetensors", "{" T("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "tensor 'w'", "9 dimensions"},
    {"offsets_oob.safetensors", "{" T("w", "F32", "[25]", "[0,100]") "}", 16, "tensor 'w'", "beyond the data area of 16 bytes"},
    {"offsets_rev.safetensors", "{" T("w", "F32", "[0]", "[8,4]") "}", 8, "tensor 'w'", "begin > end"},
    {"offsets_form.safetensors", "{" T("w", "F32", "[1]", "[0]") "}", 4, "tensor 'w'", "data_offsets must be"},
    {"mismatch.safetensors", "{" T("x.weight", "F32", "[2,2]", "[0,12]") "}", 12,
     "mismatch.safetensors: tensor 'x.weight': data_offsets [0, 12] hold 12 bytes but shape [2, 2] F32 needs 16", NULL},
    {"overlap.safetensors", "{" T("a", "F32", "[4]", "[0,16]") "," T("b", "F32", "[4]", "[8,24]") "}", 24,
     "tensor 'b'", "overlaps tensor 'a'"},
    {"gap.safetensors", "{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[16,24]") "}", 24,
     "tensor 'b'", "gap of 8"},
    {"dup.safetensors", "{" T("a", "F32", "[1]", "[0,4]") "," T("a", "F32", "[1]", "[4,8]") "}", 8,
     "dup.safetensors", "duplicate"},
    {"trailing.safetensors", "{" T("a", "F32", "[4]", "[0,16]") "}", 20, "trailing.safetensors", "4 trailing bytes"},
    {"meta.safetensors", "{\"__metadata__\":{\"k\":3}," T("a", "F32", "[1]", "[0,4]") "}", 4, "__metadata__", "'k'"},
    {"field.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
     "tensor 'a'", "unknown field 'x'"},
    {"entry.safetensors", "{\"a\":3}", 0, "tensor 'a'", "not a JSON object"},
};

static void test_malformed_headers(void **state)
{
    (void)state;
    unsigned char zeros[128] = {0};
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        char *p = tu_path(g_dir, bad_cases[i].file);
        tu_write_st(p, bad_cases[i].json, zeros, bad_cases[i].n_data);
        expect_format(p, bad_cases[i].want1, bad_cases[i].want2);
        free(p);
    }
}

static void test_malformed_lengths(void **state)
{
    (void)state;
    /* shorter than the 8-byte length */
    char *p = tu_path(g_dir, "trunc.safetensors");
    tu_write_raw(p, "\x10\x00\x00\x00\x00", 5);
    expect_format(p, "trunc.safetensors", "truncated header");
    free(p);
    /* length field says 100 bytes but only 10 follow */
    p = tu_path(g_dir, "beyond.safetensors");
    unsigned char b[18] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    tu_write_raw(p, b, sizeof b);
    expect_format(p, "beyond.safetensors", "beyond the file");
    free(p);
    /* 2^40: absurd regardless of the file size */
    p = tu_path(g_dir, "absurd.safetensors");
    unsigned char a[18] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    tu_write_raw(p, a, sizeof a);
    expect_format(p, "absurd.safetensors", "absurd header length 1099511627776");
    free(p);
    /* a header truncated mid-JSON */
    p = tu_path(g_dir, "halfjson.safetensors");
    tu_write_st(p, "{\"a\":{\"dtype\":\"F3", NULL, 0);
    expect_format(p, "halfjson.safetensors", "not valid JSON");
    free(p);
    /* missing file: I/O, not format */
    p = tu_path(g_dir, "missing.safetensors");
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_ERR_IO);
    pq_err_clear();
    free(p);
}

static void test_malformed_shards(void **state)
{
    (void)state;
    char *idx = write_sharded("missing_shard", good_index, 0);
    expect_format(idx, "model-00002-of-00002.safetensors", "does not exist");
    free(idx);

    idx = write_sharded("missing_tensor",
                        "{\"weight_map\":{\"c\":\"model-00002-of-00002.safetensors\","
                        "\"a.weight\":\"model-00001-of-00002.safetensors\","
                        "\"b.bias\":\"model-00001-of-00002.safetensors\","
                        "\"d\":\"model-00002-of-00002.safetensors\"}}", 1);
    expect_format(idx, "tensor 'd'", "missing from shard 'model-00002-of-00002.safetensors'");
    free(idx);

    idx = write_sharded("wrong_shard",
                        "{\"weight_map\":{\"c\":\"model-00001-of-00002.safetensors\","
                        "\"a.weight\":\"model-00001-of-00002.safetensors\","
                        "\"b.bias\":\"model-00002-of-00002.safetensors\"}}", 1);
    expect_format(idx, "tensor 'b.bias'", "weight_map names shard");
    free(idx);

    idx = write_sharded("unlisted",
                        "{\"weight_map\":{\"c\":\"model-00002-of-00002.safetensors\","
                        "\"a.weight\":\"model-00001-of-00002.safetensors\"}}", 1);
    expect_format(idx, "tensor 'b.bias'", "not listed");
    free(idx);

    idx = write_sharded("traversal",
                        "{\"weight_map\":{\"c\":\"../sharded/model-00002-of-00002.safetensors\","
                        "\"a.weight\":\"model-00001-of-00002.safetensors\","
                        "\"b.bias\":\"model-00001-of-00002.safetensors\"}}", 1);
    expect_format(idx, "tensor 'c'", "contains '..'");
    free(idx);

    idx = write_sharded("absolute",
                        "{\"weight_map\":{\"c\":\"/etc/passwd\","
                        "\"a.weight\":\"model-00001-of-00002.safetensors\","
                        "\"b.bias\":\"model-00001-of-00002.safetensors\"}}", 1);
    expect_format(idx, "tensor 'c'", "absolute");
    free(idx);

    idx = write_sharded("no_map", "{\"metadata\":{}}", 1);
    expect_format(idx, "model.safetensors.index.json", "weight_map");
    free(idx);

    idx = write_sharded("dup_index",
                        "{\"weight_map\":{\"c\":\"model-00002-of-00002.safetensors\","
                        "\"c\":\"model-00001-of-00002.safetensors\"}}", 1);
    expect_format(idx, "model.safetensors.index.json", "duplicate");
    free(idx);

    /* the same tensor in two shards */
    idx = write_sharded("twice", good_index, 1);
    char *sub = tu_path(g_dir, "twice");
    char *s2 = tu_path(sub, "model-00002-of-00002.safetensors");
    tu_write_st(s2, "{\"c\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                    "\"b.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                "\0\0\0\0\0\0\0\0", 8);
    expect_format(idx, "tensor 'b.bias'", "two shards");
    free(s2);
    free(sub);
    free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_malformed_lengths),
        cmocka_unit_test(test_malformed_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
