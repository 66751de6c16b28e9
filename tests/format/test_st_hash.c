/* SPDX-License-Identifier: Apache-2.0 */
/* test_st_hash.c - the tree digest of a checkpoint (st_hash.h) against
 * Python's hashlib running the docs/FORMAT.md recipe, and its leaves against
 * the sha256sum tool, on small files with small chunk sizes; its XXH3-128
 * form against the xxhsum tool (Debian's xxhash), leaves and root. */
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
#include "format/st_hash.h"
#include "pq_config.h"

#define N_FLOATS 1250 /* a 5000-byte data area */

/* One F32 tensor 'w' [1250] of a byte pattern no chunk repeats. Returns the
 * owned path; *size gets the file's size. */
static char *write_model(const char *name, off_t *size)
{
    static unsigned char data[N_FLOATS * 4];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)((i * 131u + (i >> 8) * 7u) & 0xff);
    char *p = tu_path(g_dir, name);
    tu_write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1250],\"data_offsets\":[0,5000]}}", data, sizeof data);
    struct stat s;
    assert_int_equal(stat(p, &s), 0);
    *size = s.st_size;
    return p;
}

static void hex_of(const uint8_t *b, char hex[65])
{
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
}

static void test_chunks_and_leaves(void **state)
{
    (void)state;
    off_t size;
    char *p = write_model("m.safetensors", &size);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    /* 5000 data bytes + 8 + header: ceil(size / 1000) chunks, the last short */
    int64_t n = pq_st_hash_chunk_count(m, 1000);
    assert_int_equal(n, (size + 999) / 1000);
    assert_true(size % 1000 != 0);
    assert_int_equal(pq_st_hash_chunk_len(m, 1000, 0), 1000);
    assert_int_equal(pq_st_hash_chunk_len(m, 1000, n - 1), size - 1000 * (n - 1));
    assert_int_equal(pq_st_hash_chunk_len(m, 1000, n), 0);
    assert_int_equal(pq_st_hash_chunk_count(m, size), 1);
    assert_int_equal(pq_st_hash_chunk_count(m, 1), size);

    /* leaf 1 = sha256sum of bytes [1000, 2000) of the file */
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char part[1000];
    assert_int_equal(fseek(f, 1000, SEEK_SET), 0);
    assert_int_equal(fread(part, 1, sizeof part, f), sizeof part);
    fclose(f);
    char *pp = tu_path(g_dir, "part");
    tu_write_raw(pp, part, sizeof part);
    const char *pps[1] = {pp};
    char want[65], got[65];
    tu_sha256sum(pps, 1, want);
    uint8_t leaf[32];
    assert_int_equal(pq_st_hash_chunk(m, PQ_DIGEST_SHA256, 1000, 1, leaf), PQ_OK);
    hex_of(leaf, got);
    assert_string_equal(got, want);
    pq_err_clear();
    assert_int_equal(pq_st_hash_chunk(m, PQ_DIGEST_SHA256, 1000, n, leaf), PQ_ERR_INTERNAL);
    assert_non_null(strstr(pq_err_detail(), "out of range"));

    /* leaves hashed one by one and combined = the whole digest = hashlib */
    uint8_t *leaves = malloc((size_t)n * 32);
    for (int64_t i = n - 1; i >= 0; i--) assert_int_equal(pq_st_hash_chunk(m, PQ_DIGEST_SHA256, 1000, i, leaves + 32 * i), PQ_OK);
    char combined[65], tree1[65], tree3[65];
    assert_int_equal(pq_hash_tree_combine(PQ_DIGEST_SHA256, leaves, n, combined), PQ_OK);
    assert_int_equal(pq_st_hash_tree(m, 1000, 1, tree1), PQ_OK);
    assert_int_equal(pq_st_hash_tree(m, 1000, 3, tree3), PQ_OK);
    const char *ps[1] = {p};
    tu_tree_hash_py(ps, 1, 1000, want);
    assert_string_equal(combined, want);
    assert_string_equal(tree1, want);
    assert_string_equal(tree3, want);
    free(leaves);
    free(pp);
    pq_st_close(m);
    free(p);
}

static void test_chunk_sizes(void **state)
{
    (void)state;
    off_t size;
    char *p = write_model("m.safetensors", &size);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    const char *ps[1] = {p};
    long sizes[] = {1, 64, 4096, (long)size - 1, (long)size, (long)size + 1, (long)PQ_HASH_CHUNK_BYTES};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char want[65], got[65], file[65];
        tu_tree_hash_py(ps, 1, sizes[k], want);
        assert_int_equal(pq_st_hash_tree(m, sizes[k], 2, got), PQ_OK);
        assert_string_equal(got, want);
        /* the plain-file form reads with pread: the same digest */
        assert_int_equal(pq_hash_tree_file(p, sizes[k], file), PQ_OK);
        assert_string_equal(file, want);
    }
    /* the digest differs from the file's plain SHA-256 (one chunk: it is
     * the SHA-256 of that SHA-256) */
    char plain[65], tree[65];
    tu_sha256sum(ps, 1, plain);
    assert_int_equal(pq_st_hash_tree(m, PQ_HASH_CHUNK_BYTES, 1, tree), PQ_OK);
    assert_string_not_equal(plain, tree);
    pq_st_close(m);
    free(p);
}

/* The XXH3-128 tree of path's bytes in chunks of `chunk`, each leaf and the
 * root computed by `xxhsum -H2` (its canonical hex, as the file records). */
static void xxhsum_tree(const char *path, long chunk, char hex[65])
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import subprocess, sys\n"
             "c = int(sys.argv[1]); d = open(sys.argv[2], \"rb\").read()\n"
             "h = lambda b: subprocess.run([\"xxhsum\", \"-H2\", \"-\"], input=b, capture_output=True, "
             "check=True).stdout.split()[0].decode()\n"
             "leaves = b\"\".join(bytes.fromhex(h(d[i:i + c])) for i in range(0, len(d), c))\n"
             "print(h(leaves))' %ld '%s'", chunk, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%64s", hex), 1);
    while (fgetc(p) != EOF) {}
    assert_int_equal(pclose(p), 0);
}

static bool have_xxhsum(void)
{
    return system("xxhsum -H2 - < /dev/null > /dev/null 2>&1") == 0;
}

static void test_xxh3(void **state)
{
    (void)state;
    if (!PQ_HAVE_XXHASH || !have_xxhsum()) {
        fprintf(stderr, "SKIP xxh3: %s\n", PQ_HAVE_XXHASH ? "no xxhsum (Debian package xxhash) to check against"
                                                         : "this build has no libxxhash");
        skip();
    }
    off_t size;
    char *p = write_model("m.safetensors", &size);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    /* one leaf: xxhsum of bytes [1000, 2000), 16 bytes then 16 zero bytes */
    char cmd[4096], want[65], got[65];
    snprintf(cmd, sizeof cmd, "tail -c +1001 '%s' | head -c 1000 | xxhsum -H2 -", p);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    assert_int_equal(fscanf(pp, "%64s", want), 1);
    while (fgetc(pp) != EOF) {}
    pclose(pp);
    uint8_t leaf[PQ_HASH_LEAF_BYTES], zero[16] = {0};
    assert_int_equal(pq_st_hash_chunk(m, PQ_DIGEST_XXH3, 1000, 1, leaf), PQ_OK);
    hex_of(leaf, got);
    got[32] = '\0';
    assert_string_equal(got, want);
    assert_memory_equal(leaf + 16, zero, 16);
    /* whole trees over several chunk sizes, 1 and 3 threads */
    long sizes[] = {1000, 64, (long)size, (long)PQ_HASH_CHUNK_BYTES};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char t1[65], t3[65];
        xxhsum_tree(p, sizes[k], want);
        assert_int_equal(pq_st_digest_tree(m, PQ_DIGEST_XXH3, sizes[k], 1, t1), PQ_OK);
        assert_int_equal(pq_st_digest_tree(m, PQ_DIGEST_XXH3, sizes[k], 3, t3), PQ_OK);
        assert_string_equal(t1, want);
        assert_string_equal(t3, want);
    }
    /* no leaves: XXH3-128 of the empty string */
    assert_int_equal(pq_hash_tree_combine(PQ_DIGEST_XXH3, NULL, 0, got), PQ_OK);
    assert_string_equal(got, "99aa06d3014798d86001c324468d497f");
    pq_st_close(m);
    free(p);
}

static void test_combine_edges(void **state)
{
    (void)state;
    char hex[65];
    /* no leaves: SHA-256 of the empty string (FIPS 180-4 example value) */
    assert_int_equal(pq_hash_tree_combine(PQ_DIGEST_SHA256, NULL, 0, hex), PQ_OK);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* a missing file is an I/O error naming it */
    pq_err_clear();
    assert_int_equal(pq_hash_tree_file("/nonexistent/model.h5", 1000, hex), PQ_ERR_IO);
    assert_non_null(strstr(pq_err_detail(), "/nonexistent/model.h5"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chunks_and_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xxh3, setup, teardown),
        cmocka_unit_test(test_combine_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
