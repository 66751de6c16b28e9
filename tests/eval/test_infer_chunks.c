/* SPDX-License-Identifier: Apache-2.0 */
/* test_infer_chunks.c - engine/eval's pieces of a distributed run: the
 * chunks a FASTA is cut into (boundaries worked out by hand from the
 * residue counts), and the journal: whole records back in order, a torn
 * tail and a corrupted record cut off on resume, another run's fingerprint
 * refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "eval/infer_chunk.h"
#include "eval/infer_journal.h"

static char g_dir[64];

static void path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/pq_chunksXXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd);
}

/* residues 5, 3, 7, 2, 4 with chunks of 8: [5 3] reaches 8, [7 2] passes
 * it, [4] is the rest */
static void test_chunks(void **state)
{
    (void)state;
    char fa[128];
    path(fa, sizeof fa, "c.fasta");
    FILE *f = fopen(fa, "w");
    assert_non_null(f);
    fputs(">a\nMKTAY\n>b\nGSH\n>c\nACDEFGH\n>d\nKL\n>e\nMNPQ\n", f);
    fclose(f);
    pq_fasta_opts fo = pq_fasta_defaults();
    const int64_t want_n[] = {2, 2, 1}, want_first[] = {0, 2, 4}, want_res[] = {8, 9, 4};
    const char *const want_id[] = {"a", "c", "e"};
    for (int keep = 0; keep < 2; keep++) {
        pq_chunker *c = NULL;
        assert_int_equal(pq_chunker_open(fa, &fo, 8, 0, &c), PQ_OK);
        pq_chunk ch;
        bool got;
        for (int i = 0; i < 3; i++) {
            assert_int_equal(pq_chunker_next(c, keep, &ch, &got), PQ_OK);
            assert_true(got);
            assert_int_equal(ch.index, i);
            assert_int_equal(ch.n, want_n[i]);
            assert_int_equal(ch.first, want_first[i]);
            assert_int_equal(ch.residues, want_res[i]);
            if (keep) assert_string_equal(ch.recs[0].id, want_id[i]);
            else assert_null(ch.recs);
        }
        assert_int_equal(pq_chunker_next(c, keep, &ch, &got), PQ_OK);
        assert_false(got);
        pq_chunker_close(c);
    }
    /* max_records 3: [5 3], [7] */
    pq_chunker *c = NULL;
    pq_chunk ch;
    bool got;
    assert_int_equal(pq_chunker_open(fa, &fo, 8, 3, &c), PQ_OK);
    assert_int_equal(pq_chunker_next(c, true, &ch, &got), PQ_OK);
    assert_int_equal(ch.n, 2);
    assert_int_equal(pq_chunker_next(c, true, &ch, &got), PQ_OK);
    assert_true(got);
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.residues, 7);
    assert_int_equal(pq_chunker_next(c, true, &ch, &got), PQ_OK);
    assert_false(got);
    pq_chunker_close(c);
}

static void put_payload(pq_buf *b, int i)
{
    b->len = 0;
    for (int k = 0; k <= i * 10; k++) assert_int_equal(pq_buf_put_i64(b, 1000 * i + k), PQ_OK);
}

static int64_t file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) ? -1 : (int64_t)sb.st_size;
}

static void test_journal(void **state)
{
    (void)state;
    char jp[128];
    path(jp, sizeof jp, "x.journal");
    pq_infer_journal *j = NULL;
    int64_t done = -1;
    pq_buf b = {0}, got_b = {0};
    assert_int_equal(pq_infer_journal_open(jp, "run A", false, &j, &done), PQ_OK);
    assert_int_equal(done, 0);
    for (int i = 0; i < 3; i++) {
        put_payload(&b, i);
        assert_int_equal(pq_infer_journal_append(j, i, &b), PQ_OK);
    }
    assert_int_equal(pq_infer_journal_append(j, 7, &b), PQ_ERR_INTERNAL); /* out of order */
    pq_infer_journal_close(j, false);
    /* header 8 + 8 + 5, records of 24 + 8 (1 + 10 i) bytes */
    int64_t whole = 21 + (24 + 8) + (24 + 88) + (24 + 168);
    assert_int_equal(file_size(jp), whole);
    FILE *f = fopen(jp, "ab");
    fwrite("CHNK\0\0\0\0\3\0\0\0\0\0\0\0\100\0\0\0\0\0\0\0tor", 1, 27, f); /* torn 4th record */
    fclose(f);
    assert_int_equal(pq_infer_journal_open(jp, "run B", true, &j, &done), PQ_ERR_CONFIG);
    pq_infer_journal_close(j, false);
    assert_int_equal(pq_infer_journal_open(jp, "run A", true, &j, &done), PQ_OK);
    assert_int_equal(done, 3);
    assert_int_equal(file_size(jp), whole);
    assert_int_equal(pq_infer_journal_rewind(j), PQ_OK);
    for (int i = 0; i < 3; i++) {
        bool got;
        assert_int_equal(pq_infer_journal_next(j, &got_b, &got), PQ_OK);
        assert_true(got);
        put_payload(&b, i);
        assert_int_equal(got_b.len, b.len);
        assert_memory_equal(got_b.data, b.data, b.len);
    }
    bool got;
    assert_int_equal(pq_infer_journal_next(j, &got_b, &got), PQ_OK);
    assert_false(got);
    pq_infer_journal_close(j, false);
    /* one flipped byte in the second record's payload: only chunk 0 stays */
    f = fopen(jp, "r+b");
    fseek(f, 21 + 32 + 24 + 5, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(pq_infer_journal_open(jp, "run A", true, &j, &done), PQ_OK);
    assert_int_equal(done, 1);
    assert_int_equal(file_size(jp), 21 + 32);
    put_payload(&b, 1);
    assert_int_equal(pq_infer_journal_append(j, 1, &b), PQ_OK);
    pq_infer_journal_close(j, true);
    assert_int_equal(file_size(jp), -1);
    pq_buf_free(&b);
    pq_buf_free(&got_b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_journal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
