/* SPDX-License-Identifier: Apache-2.0 */
/* test_model.c - tokenizer and FASTA reader (hand-made cases), and the
 * forward's error handling. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmocka.h>


#include "model/batch.h"
#include "model/esm2_model.h"
#include "model/fasta.h"
#include "model/tokenizer.h"

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

/* Inputs a user may give by mistake: each refused with the record's name
 * or the line, never read as residues. */
static void test_fasta_refusals(void **state)
{
    (void)state;
    pq_fasta_record *r = NULL;
    int64_t n = 0;
    pq_fasta_opts o = pq_fasta_defaults();
    char path[512];
    /* a binary file (NUL bytes) after a valid-looking header: line 2 named */
    snprintf(path, sizeof path, "%s/bin.fa", tmpdir);
    const char bin[] = ">x\nMK\0\x01\xff\nGG\n";
    FILE *f = fopen(path, "wb");
    fwrite(bin, 1, sizeof bin - 1, f);
    fclose(f);
    assert_int_equal(pq_fasta_read_all(path, &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "line 2: NUL byte"));
    pq_err_clear();
    /* a gzip file cut short: an error, not the records before the cut */
    const char *gz = write_file("cut.fa.gz", ">a\nMKTAYIAKQR\n>b\nGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGG\n", 1);
    struct stat sb;
    assert_int_equal(stat(gz, &sb), 0);
    assert_int_equal(truncate(gz, sb.st_size - 12), 0);
    assert_int_equal(pq_fasta_read_all(gz, &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "truncated gzip"));
    pq_err_clear();
    /* '*' is a terminator only at the very end of a record */
    assert_int_equal(pq_fasta_read_all(write_file("s.fa", ">st op\nMK*\nLL\n", 0), &o, 0, &r, &n),
                     PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "record 'st' line 2 column 3: unknown residue '*'"));
    pq_err_clear();
    assert_int_equal(pq_fasta_read_all(write_file("s2.fa", ">only\n*\n", 0), &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "record 'only' (line 1) has no residues"));
    pq_err_clear();
    /* J (Leu or Ile) is not in ESM-2's alphabet */
    assert_int_equal(pq_fasta_read_all(write_file("j.fa", ">j\r\nmkj\r\n", 0), &o, 0, &r, &n), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "record 'j' line 2 column 3: unknown residue 'j'"));
    pq_err_clear();
    /* a 100,000-residue protein on one line: cropped to the context by
     * default, whole without a limit */
    char *big = malloc(100000 + 16);
    strcpy(big, ">big\n");
    for (int i = 0; i < 100000; i++) big[5 + i] = "ACDEFGHIKLMNPQRSTVWY"[i % 20];
    strcpy(big + 5 + 100000, "\n");
    const char *bp = write_file("big.fa", big, 0);
    free(big);
    assert_int_equal(pq_fasta_read_all(bp, &o, 0, &r, &n), PQ_OK);
    assert_int_equal(r[0].n_ids, 1024);
    assert_int_equal(r[0].n_residues_orig, 100000);
    assert_int_equal(r[0].ids[1023], PQ_TOK_EOS);
    pq_fasta_record_free(&r[0]);
    free(r);
    o.max_residues = 0;
    assert_int_equal(pq_fasta_read_all(bp, &o, 0, &r, &n), PQ_OK);
    assert_int_equal(r[0].n_ids, 100002);
    assert_int_equal(r[0].ids[100000], pq_tok_char_id('Y'));
    pq_fasta_record_free(&r[0]);
    free(r);
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

/* ---- forward properties on the trained t6 model (numbers vs fair-esm are
 * the peer suite's job; here: packing, stages, observer, bad batches) ---- */

typedef struct obs_log {
    int calls[8][PQ__ESM2_ROLE_COUNT];
    int64_t dims[PQ__ESM2_ROLE_COUNT];
    int64_t n_tokens;
    int head_calls;
} obs_log;

static void obs(void *user, const pq_ops *ops, int layer, pq_esm2_role site, const float *x, int64_t n,
                int64_t dim)
{
    obs_log *o = user;
    (void)x;
    assert_non_null(ops);
    if (layer < 0) { o->head_calls++; return; }
    o->calls[layer][site]++;
    o->dims[site] = dim;
    o->n_tokens = n;
}

static pq_esm2_model *load_model(int l0, int l1)
{
    const char *path = getenv("PQ_TEST_MODEL");
    if (!path || access(path, R_OK) != 0) return NULL;
    pq_esm2_model_opts o = {.layer_begin = l0, .layer_end = l1, .n_threads = 2};
    pq_esm2_model *m = NULL;
    assert_int_equal(pq_esm2_model_load(path, &o, &m), PQ_OK);
    return m;
}

static void encode2(const char *a, const char *b, int32_t *ids, int64_t *off)
{
    int32_t *t;
    int64_t n;
    off[0] = 0;
    assert_int_equal(pq_tok_encode(a, strlen(a), "a", 0, &t, &n), PQ_OK);
    memcpy(ids, t, (size_t)n * sizeof *t);
    off[1] = n;
    free(t);
    assert_int_equal(pq_tok_encode(b, strlen(b), "b", 0, &t, &n), PQ_OK);
    memcpy(ids + off[1], t, (size_t)n * sizeof *t);
    off[2] = off[1] + n;
    free(t);
}

static void test_forward_packing_stages_observer(void **state)
{
    (void)state;
    pq_esm2_model *m = load_model(0, 0);
    if (!m) { print_message("PQ_TEST_MODEL not readable\n"); fail(); }
    const char *A = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", *B = "GSHMAS<mask>LLKDE";
    int32_t ids[128];
    int64_t off[3];
    encode2(A, B, ids, off);
    obs_log log;
    memset(&log, 0, sizeof log);
    pq_esm2_model_set_observer(m, obs, &log);
    pq_esm2_batch both = {.n_seqs = 2, .offsets = off, .ids = ids};
    pq_esm2_outputs o1;
    memset(&o1, 0, sizeof o1);
    o1.want_logits = true;
    o1.n_repr = 1;
    o1.repr_layers[0] = -1;
    assert_int_equal(pq_esm2_forward(m, &both, NULL, &o1), PQ_OK);
    /* every Linear input seen once per layer with its width */
    for (int l = 0; l < 6; l++) {
        assert_int_equal(log.calls[l][PQ_ESM2_Q], 1);
        assert_int_equal(log.calls[l][PQ_ESM2_OUT], 1);
        assert_int_equal(log.calls[l][PQ_ESM2_FC1], 1);
        assert_int_equal(log.calls[l][PQ_ESM2_FC2], 1);
    }
    assert_int_equal(log.dims[PQ_ESM2_FC2], 1280);
    assert_int_equal(log.dims[PQ_ESM2_FC1], 320);
    assert_int_equal(log.n_tokens, off[2]);
    assert_int_equal(log.head_calls, 1);
    pq_esm2_model_set_observer(m, NULL, NULL);

    /* sequence B alone equals B inside the packed batch (attention is per
     * sequence, token dropout uses its own length) */
    int64_t off1[2] = {0, off[2] - off[1]};
    pq_esm2_batch one = {.n_seqs = 1, .offsets = off1, .ids = ids + off[1]};
    pq_esm2_outputs o2;
    memset(&o2, 0, sizeof o2);
    o2.want_logits = true;
    assert_int_equal(pq_esm2_forward(m, &one, NULL, &o2), PQ_OK);
    for (int64_t i = 0; i < off1[1] * 33; i++)
        assert_float_equal(o2.logits[i], o1.logits[off[1] * 33 + i], 1e-4); /* GEMM blocking differs with N */
    /* the masked position predicts a real residue's logits that are finite */
    for (int64_t i = 0; i < off[2] * 33; i++) assert_true(isfinite(o1.logits[i]));

    /* two stages [0,2) + [2,6) give the same logits as the whole model */
    pq_esm2_model *s1 = load_model(0, 2), *s2 = load_model(2, 6);
    pq_esm2_outputs a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(pq_esm2_forward(s1, &both, NULL, &a), PQ_OK);
    assert_non_null(a.x_out);
    b.want_logits = true;
    assert_int_equal(pq_esm2_forward(s2, &both, a.x_out, &b), PQ_OK);
    assert_memory_equal(b.logits, o1.logits, (size_t)(off[2] * 33) * sizeof(float));
    /* a stage cannot produce logits or start without activations */
    pq_esm2_outputs bad;
    memset(&bad, 0, sizeof bad);
    bad.want_logits = true;
    assert_int_equal(pq_esm2_forward(s1, &both, NULL, &bad), PQ_ERR_CONFIG);
    pq_err_clear();
    bad.want_logits = false;
    assert_int_equal(pq_esm2_forward(s2, &both, NULL, &bad), PQ_ERR_CONFIG);
    pq_err_clear();

    /* bad batches: <pad> inside, out-of-vocabulary id, too short */
    int32_t padded[5] = {0, 5, 1, 5, 2};
    int64_t o5[2] = {0, 5};
    pq_esm2_batch pb = {.n_seqs = 1, .offsets = o5, .ids = padded};
    assert_int_equal(pq_esm2_forward(m, &pb, NULL, &bad), PQ_ERR_FORMAT);
    pq_err_clear();
    padded[2] = 40;
    assert_int_equal(pq_esm2_forward(m, &pb, NULL, &bad), PQ_ERR_FORMAT);
    pq_err_clear();
    int64_t o2t[2] = {0, 2};
    pq_esm2_batch sb = {.n_seqs = 1, .offsets = o2t, .ids = padded};
    assert_int_equal(pq_esm2_forward(m, &sb, NULL, &bad), PQ_ERR_CONFIG);
    pq_err_clear();

    pq_esm2_outputs_clear(&o1);
    pq_esm2_outputs_clear(&o2);
    pq_esm2_outputs_clear(&a);
    pq_esm2_outputs_clear(&b);
    pq_esm2_model_free(s1);
    pq_esm2_model_free(s2);
    pq_esm2_model_free(m);
}

static void test_masking(void **state)
{
    (void)state;
    int64_t n_ids = 2002, masked = 0;
    int32_t *ids = malloc((size_t)n_ids * sizeof *ids), *orig = malloc((size_t)n_ids * sizeof *orig);
    ids[0] = 0;
    ids[n_ids - 1] = 2;
    for (int64_t i = 1; i < n_ids - 1; i++) ids[i] = 4 + (int32_t)(i % 20);
    masked = pq_mask_sequence(ids, n_ids, 0, 3, 0.15, orig);
    /* Binomial(2000, 0.15): mean 300, sd 16 */
    assert_in_range(masked, 300 - 80, 300 + 80);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[n_ids - 1], 2);
    int64_t cnt = 0;
    for (int64_t i = 0; i < n_ids; i++)
        if (orig[i] >= 0) {
            cnt++;
            assert_int_equal(ids[i], PQ_TOK_MASK);
            assert_int_equal(orig[i], 4 + (int32_t)(i % 20));
        }
    assert_int_equal(cnt, masked);
    /* a 1-residue sequence always gets its residue masked */
    int32_t one[3] = {0, 5, 2}, o1[3];
    assert_int_equal(pq_mask_sequence(one, 3, 0, 0, 0.15, o1), 1);
    assert_int_equal(one[1], PQ_TOK_MASK);
    free(ids);
    free(orig);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
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
        cmocka_unit_test(test_fasta_refusals),
        cmocka_unit_test(test_bad_checkpoint),
        cmocka_unit_test(test_forward_packing_stages_observer),
        cmocka_unit_test(test_masking),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); /* leave no test files behind */
    return rc;
}
