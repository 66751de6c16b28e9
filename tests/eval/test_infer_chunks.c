/* SPDX-License-Identifier: Apache-2.0 */
/* test_infer_chunks.c - the pieces of a distributed inference run: the
 * chunks a FASTA is cut into (boundaries worked out by hand from the
 * residue counts), and their journal (pipeline/journal.h, open-ended
 * blocks; sizes worked out by hand from docs/FORMAT.md's layout): whole
 * records back in chunk order, a torn tail cut off on resume, a damaged
 * record redone while those after it stay, another run's header refused
 * naming the line that differs, a journal left without --resume refused,
 * a second writer refused. */
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
#include "eval/infer_buf.h"
#include "pipeline/journal.h"

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

typedef struct seen {
    int64_t n, ids[8];
    pq_buf b;
} seen;

/* Each block back must be chunk i's payload, in order. */
static pq_status check_block(void *user, int64_t id, const void *data, size_t n)
{
    seen *s = user;
    put_payload(&s->b, (int)id);
    assert_int_equal(n, s->b.len);
    assert_memory_equal(data, s->b.data, n);
    s->ids[s->n++] = id;
    return PQ_OK;
}

static void add(pq_journal *j, pq_buf *b, int id)
{
    put_payload(b, id);
    assert_int_equal(pq_journal_add_block(j, id, b->data, b->len), PQ_OK);
}

#define HEAD_A "kind test\nfasta a.fa, 10 bytes\n"
#define HEAD_B "kind test\nfasta b.fa, 10 bytes\n"

static void test_journal(void **state)
{
    (void)state;
    char out[128], jp[160];
    path(out, sizeof out, "x.h5");
    snprintf(jp, sizeof jp, "%s.journal", out);
    pq_journal *j = NULL, *j2 = NULL;
    pq_buf b = {0};
    seen s = {0};
    assert_int_equal(pq_journal_open_blocks(out, false, HEAD_A, PQ_JOURNAL_ANY_BLOCKS, &j), PQ_OK);
    assert_int_equal(pq_journal_n_blocks(j), 0);
    for (int i = 0; i < 3; i++) add(j, &b, i);
    assert_int_equal(pq_journal_n_blocks(j), 3);
    /* the lock: a second writer of the same OUT is refused while j holds it */
    assert_int_equal(pq_journal_open_blocks(out, true, HEAD_A, PQ_JOURNAL_ANY_BLOCKS, &j2), PQ_ERR_IO);
    assert_non_null(strstr(pq_err_detail(), "is locked"));
    pq_journal_close(j);
    pq_err_clear();
    /* header 16 + 32 text + 32, records 32 + 8 (1 + 10 i) + 32 */
    const int64_t head = 16 + (int64_t)strlen(HEAD_A) + 32, rec[3] = {32 + 8 + 32, 32 + 88 + 32, 32 + 168 + 32};
    const int64_t whole = head + rec[0] + rec[1] + rec[2];
    assert_int_equal(file_size(jp), whole);
    /* the same run without --resume: refused, the journal untouched */
    assert_int_equal(pq_journal_open_blocks(out, false, HEAD_A, PQ_JOURNAL_ANY_BLOCKS, &j), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "pass --resume"));
    pq_err_clear();
    assert_int_equal(file_size(jp), whole);
    /* a torn fourth record: its head promises 800 bytes, 3 follow */
    FILE *f = fopen(jp, "ab");
    fwrite("PQJR\3\0\0\0\3\0\0\0\0\0\0\0\40\3\0\0\0\0\0\0\0\0\0\0\0\0\0\0tor", 1, 35, f);
    fclose(f);
    /* another run's journal: refused naming the line that differs */
    assert_int_equal(pq_journal_open_blocks(out, true, HEAD_B, PQ_JOURNAL_ANY_BLOCKS, &j), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "fasta: this run has b.fa, 10 bytes, the journal a.fa, 10 bytes"));
    pq_err_clear();
    /* --resume: three whole chunks, the torn tail cut off */
    assert_int_equal(pq_journal_open_blocks(out, true, HEAD_A, PQ_JOURNAL_ANY_BLOCKS, &j), PQ_OK);
    assert_int_equal(pq_journal_n_done(j), 3);
    assert_int_equal(pq_journal_n_blocks(j), 3);
    assert_int_equal(file_size(jp), whole);
    assert_int_equal(pq_journal_each_block(j, check_block, &s), PQ_OK);
    assert_int_equal(s.n, 3);
    pq_journal_close(j);
    /* one flipped byte in chunk 1's payload: chunk 1 is redone, 0 and 2 stay */
    f = fopen(jp, "r+b");
    fseek(f, (long)(head + rec[0] + 32 + 5), SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(pq_journal_open_blocks(out, true, HEAD_A, PQ_JOURNAL_ANY_BLOCKS, &j), PQ_OK);
    assert_int_equal(pq_journal_n_done(j), 2);
    assert_int_equal(pq_journal_n_bad(j), 1);
    assert_int_equal(pq_journal_n_blocks(j), 3);
    assert_true(pq_journal_done(j)[0] && !pq_journal_done(j)[1] && pq_journal_done(j)[2]);
    s.n = 0;
    assert_int_equal(pq_journal_each_block(j, check_block, &s), PQ_ERR_INTERNAL); /* chunk 1 is missing */
    pq_err_clear();
    add(j, &b, 1);
    /* back in chunk order, though the file holds 0, (bad 1), 2, 1 */
    s.n = 0;
    assert_int_equal(pq_journal_each_block(j, check_block, &s), PQ_OK);
    assert_int_equal(s.n, 3);
    assert_true(s.ids[0] == 0 && s.ids[1] == 1 && s.ids[2] == 2);
    assert_int_equal(file_size(jp), whole + rec[1]);
    pq_journal_remove(j);
    assert_int_equal(file_size(jp), -1);
    pq_buf_free(&b);
    pq_buf_free(&s.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_journal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
