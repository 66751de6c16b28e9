/* SPDX-License-Identifier: Apache-2.0 */
/* test_model.c - tokenizer and FASTA reader (hand-made cases), and the
 * forward's error handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "esm2_model.h"
#include "fasta.h"
#include "tokenizer.h"

static void test_tokenizer_ids(void **state)
{
    (void)state;
    int32_t *ids;
    int64_t n;
    /* by the table of esm2.md section 2: M=20 K=15 T=11 a->A=5 <mask>=32 L=4 X=24 '-'=30 */
    const char *s = "MKTa<mask>LX-*";
    assert_int_equal(pq_tok_encode(s, strlen(s), "r1", 0, &ids, &n), PQ_OK);
    const int32_t want[] = {0, 20, 15, 11, 5, 32, 4, 24, 30, 2};
    assert_int_equal(n, 10);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    assert_string_equal(pq_tok_str(32), "<mask>");
    assert_string_equal(pq_tok_str(29), ".");
    assert_int_equal(pq_tok_char_id('o'), 28);
}

static void test_tokenizer_errors(void **state)
{
    (void)state;
    int32_t *ids;
    int64_t n;
    assert_int_equal(pq_tok_encode("MKJL", 4, "recA", 0, &ids, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "recA"));
    assert_non_null(strstr(pq_err_detail(), "position 3"));
    pq_err_clear();
    /* only unknown characters: error strictly, all <unk> when asked */
    assert_int_equal(pq_tok_encode("J#1", 3, "junk", 0, &ids, &n), PQ_ERR_FORMAT);
    pq_err_clear();
    assert_int_equal(pq_tok_encode("J#1", 3, "junk", PQ_TOK_UNKNOWN_TO_UNK, &ids, &n), PQ_OK);
    const int32_t want[] = {0, 3, 3, 3, 2};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    assert_int_equal(pq_tok_encode("<pad>A", 6, "p", 0, &ids, &n), PQ_ERR_FORMAT);
    pq_err_clear();
    assert_int_equal(pq_tok_encode("*", 1, "star", 0, &ids, &n), PQ_ERR_FORMAT);
    pq_err_clear();
}

static char tmpdir[256];

static const char *write_file(const char *name, const char *text, int gz)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        gzwrite(g, text, (unsigned)strlen(text));
        gzclose(g);
    } else {
        FILE *f = fopen(path, "wb");
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void check_two_records(const char *path)
{
    pq_fasta_record *r;
    int64_t n;
    pq_fasta_opts o = pq_fasta_defaults();
    assert_int_equal(pq_fasta_read_all(path, &o, 0, &r, &n), PQ_OK);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].id, "sp|P1|X");
    assert_string_equal(r[0].desc, "first protein  OS=x");
    /* "MKT" + "LLA" across lines, '*' stripped */
    const int32_t w0[] = {0, 20, 15, 11, 4, 4, 5, 2};
    assert_int_equal(r[0].n_ids, 8);
    assert_memory_equal(r[0].ids, w0, sizeof w0);
    assert_string_equal(r[1].id, "two");
    assert_int_equal(r[1].line, 5);
    const int32_t w1[] = {0, 6, 6, 2};
    assert_memory_equal(r[1].ids, w1, sizeof w1);
    for (int64_t i = 0; i < n; i++) pq_fasta_record_free(&r[i]);
    free(r);
}

static void test_fasta_multiline_gz_crlf(void **state)
{
    (void)state;
    const char *txt = ">sp|P1|X first protein  OS=x\nMKT\nLLA*\n\n>two\nGG\n";
    check_two_records(write_file("a.fa", txt, 0));
    check_two_records(write_file("a.fa.gz", txt, 1));
    const char *crlf = ">sp|P1|X first protein  OS=x\r\nMKT\r\nLLA*\r\n\r\n>two\r\nGG";
    check_two_records(write_file("crlf.fa", crlf, 0));
}

static void test_fasta_errors(void **state)
{
    (void)state;
    pq_fasta_record *r;
    int64_t n;
    pq_fasta_opts o = pq_fasta_defaults();
    /* empty record: error with its id and line */
    assert_int_equal(pq_fasta_read_all(write_file("e.fa", ">a\nMK\n>empty\n>c\nGG\n", 0), &o, 0, &r, &n),
                     PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "'empty'"));
    assert_non_null(strstr(pq_err_detail(), "line 3"));
    pq_err_clear();
    /* ... or skipped */
    o.skip_empty = true;
    assert_int_equal(pq_fasta_read_all(write_file("e.fa", ">a\nMK\n>empty\n>c\nGG\n", 0), &o, 0, &r, &n), PQ_OK);
    assert_int_equal(n, 2);
    for (int64_t i = 0; i < n; i++) pq_fasta_record_free(&r[i]);
    free(r);
    o = pq_fasta_defaults();
    /* bad character: record id, line 4, column 3 */
    assert_int_equal(pq_fasta_read_all(write_file("b.fa", ">a\nMK\n>bad one\nMKT\nMKJ\n", 0), &o, 0, &r, &n),
                     PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "'bad'"));
    assert_non_null(strstr(pq_err_detail(), "line 5 column 3"));
    assert_non_null(strstr(pq_err_detail(), "'J'"));
    pq_err_clear();
    /* no valid record */
    assert_int_equal(pq_fasta_read_all(write_file("n.fa", "\n\n", 0), &o, 0, &r, &n), PQ_ERR_FORMAT);
    pq_err_clear();
    o.skip_empty = true;
    assert_int_equal(pq_fasta_read_all(write_file("n2.fa", ">x\n>y\n", 0), &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "no usable"));
    pq_err_clear();
    o = pq_fasta_defaults();
    /* data before the first header */
    assert_int_equal(pq_fasta_read_all(write_file("h.fa", "MKT\n>a\nMK\n", 0), &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "line 1"));
    pq_err_clear();
    /* missing file */
    assert_int_equal(pq_fasta_read_all("/nonexistent/x.fa", &o, 0, &r, &n), PQ_ERR_IO);
    pq_err_clear();
}

static void test_fasta_crop_skip(void **state)
{
    (void)state;
    pq_fasta_record *r;
    int64_t n;
    const char *p = write_file("long.fa", ">long\nMKTLLAGG\n>short\nMK\n", 0);
    pq_fasta_opts o = pq_fasta_defaults();
    o.max_residues = 3;
    assert_int_equal(pq_fasta_read_all(p, &o, 0, &r, &n), PQ_OK);
    assert_int_equal(n, 2);
    const int32_t w[] = {0, 20, 15, 11, 2};
    assert_int_equal(r[0].n_ids, 5);
    assert_memory_equal(r[0].ids, w, sizeof w);
    assert_int_equal(r[0].n_residues_orig, 8);
    for (int64_t i = 0; i < n; i++) pq_fasta_record_free(&r[i]);
    free(r);
    o.on_long = PQ_FASTA_SKIP;
    assert_int_equal(pq_fasta_read_all(p, &o, 0, &r, &n), PQ_OK);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].id, "short");
    pq_fasta_record_free(&r[0]);
    free(r);
    o.on_long = PQ_FASTA_ERROR;
    assert_int_equal(pq_fasta_read_all(p, &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "'long'"));
    pq_err_clear();
}

/* A checkpoint whose q weight has the wrong shape: a tiny safetensors file
 * written by hand with one tensor is enough for the registry to refuse. */
static void test_bad_checkpoint(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    const char *hdr = "{\"esm.embeddings.word_embeddings.weight\":{\"dtype\":\"F32\",\"shape\":[33,3],"
                      "\"data_offsets\":[0,396]}}";
    uint64_t hl = strlen(hdr);
    FILE *f = fopen(path, "wb");
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    float z[99] = {0};
    fwrite(z, sizeof z, 1, f);
    fclose(f);
    pq_esm2_model *m = NULL;
    assert_int_equal(pq_esm2_model_load(path, NULL, &m), PQ_ERR_FORMAT);
    assert_null(m);
    pq_err_clear();
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pq_test_model_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_ids),
        cmocka_unit_test(test_tokenizer_errors),
        cmocka_unit_test(test_fasta_multiline_gz_crlf),
        cmocka_unit_test(test_fasta_errors),
        cmocka_unit_test(test_fasta_crop_skip),
        cmocka_unit_test(test_bad_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
