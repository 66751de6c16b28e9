/* SPDX-License-Identifier: Apache-2.0 */
/* test_esm2.c - ESM-2 size table, HF names and architecture detection on
 * synthetic, trained and deliberately inconsistent checkpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt_testutil.h"
#include "format/esm2.h"
#include "format/synth.h"


static void test_arch_table(void **state)
{
    (void)state;
    /* esm2.md section 1 table: name, L, D, H, params */
    static const struct { const char *name; int L, D, H; int64_t params; } doc[6] = {
        {"esm2_t6_8M_UR50D", 6, 320, 20, 7512474LL},
        {"esm2_t12_35M_UR50D", 12, 480, 20, 33501394LL},
        {"esm2_t30_150M_UR50D", 30, 640, 20, 148140154LL},
        {"esm2_t33_650M_UR50D", 33, 1280, 20, 651043254LL},
        {"esm2_t36_3B_UR50D", 36, 2560, 40, 2839005634LL},
        {"esm2_t48_15B_UR50D", 48, 5120, 40, 15129100194LL},
    };
    int n = 0;
    const pq_esm2_arch *a = pq_esm2_archs(&n);
    assert_int_equal(n, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(a[i].name, doc[i].name);
        assert_int_equal(a[i].num_layers, doc[i].L);
        assert_int_equal(a[i].embed_dim, doc[i].D);
        assert_int_equal(a[i].attention_heads, doc[i].H);
        assert_int_equal(a[i].ffn_dim, 4 * doc[i].D);
        assert_int_equal(a[i].vocab_size, 33);
        assert_int_equal(a[i].n_params, doc[i].params);
    }
    assert_ptr_equal(pq_esm2_arch_find("esm2_t33_650M_UR50D"), &a[3]);
    assert_ptr_equal(pq_esm2_arch_find("esm2_t33_650M"), &a[3]);
    assert_ptr_equal(pq_esm2_arch_find("t33_650M"), &a[3]);
    assert_ptr_equal(pq_esm2_arch_find("650M"), &a[3]);
    assert_ptr_equal(pq_esm2_arch_find("8M"), &a[0]);
    assert_ptr_equal(pq_esm2_arch_find("t48_15B"), &a[5]);
    assert_null(pq_esm2_arch_find("650"));
    assert_null(pq_esm2_arch_find("t33_650"));
    assert_null(pq_esm2_arch_find("esm2_t34_650M_UR50D"));
    assert_null(pq_esm2_arch_find(""));
}

static void test_names(void **state)
{
    (void)state;
    int l = 99;
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.12.intermediate.dense.weight", &l), PQ_ESM2_FC1);
    assert_int_equal(l, 12);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.0.output.dense.weight", &l), PQ_ESM2_FC2);
    assert_int_equal(l, 0);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.3.attention.output.dense.bias", &l), PQ_ESM2_OUT_BIAS);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.3.LayerNorm.weight", &l), PQ_ESM2_LN_FFN_W);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.3.attention.LayerNorm.bias", &l), PQ_ESM2_LN_ATTN_B);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.35.attention.self.rotary_embeddings.inv_freq", &l),
                     PQ_ESM2_INV_FREQ);
    assert_int_equal(l, 35);
    assert_int_equal(pq_esm2_role_of("esm.embeddings.word_embeddings.weight", &l), PQ_ESM2_EMBED);
    assert_int_equal(l, -1);
    assert_int_equal(pq_esm2_role_of("lm_head.decoder.weight", &l), PQ_ESM2_LM_DECODER);
    assert_int_equal(pq_esm2_role_of("lm_head.bias", &l), PQ_ESM2_LM_BIAS);
    assert_int_equal(pq_esm2_role_of("esm.contact_head.regression.weight", &l), PQ_ESM2_CONTACT_W);
    assert_int_equal(pq_esm2_role_of("esm.embeddings.position_ids", &l), PQ_ESM2_IGNORED);
    assert_int_equal(pq_esm2_role_of("esm.embeddings.position_embeddings.weight", &l), PQ_ESM2_IGNORED);
    assert_int_equal(pq_esm2_role_of("esm.pooler.dense.weight", &l), PQ_ESM2_IGNORED);
    assert_int_equal(pq_esm2_role_of("lm_head.decoder.bias", &l), PQ_ESM2_IGNORED);
    /* not ESM-2 names */
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.01.LayerNorm.weight", &l), PQ_ESM2_ROLE_OTHER);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.-1.LayerNorm.weight", &l), PQ_ESM2_ROLE_OTHER);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.1.LayerNorm.weights", &l), PQ_ESM2_ROLE_OTHER);
    assert_int_equal(pq_esm2_role_of("esm.encoder.layer.1", &l), PQ_ESM2_ROLE_OTHER);
    assert_int_equal(pq_esm2_role_of("encoder.layer.1.LayerNorm.weight", &l), PQ_ESM2_ROLE_OTHER);
    assert_int_equal(pq_esm2_role_of("lm_head.weight", &l), PQ_ESM2_ROLE_OTHER);

    char buf[160];
    assert_string_equal(pq_esm2_name(PQ_ESM2_K, 7, buf, sizeof buf), "esm.encoder.layer.7.attention.self.key.weight");
    assert_string_equal(pq_esm2_name(PQ_ESM2_LM_LN_B, 7, buf, sizeof buf), "lm_head.layer_norm.bias");
    /* every named role round-trips */
    for (int r = 1; r < PQ__ESM2_ROLE_COUNT; r++) {
        if (r == PQ_ESM2_IGNORED) continue;
        pq_esm2_name((pq_esm2_role)r, 4, buf, sizeof buf);
        assert_int_equal(pq_esm2_role_of(buf, &l), r);
    }
    int n_lin = 0;
    for (int r = 0; r < PQ__ESM2_ROLE_COUNT; r++) n_lin += pq_esm2_role_is_linear((pq_esm2_role)r);
    assert_int_equal(n_lin, 6);
    assert_true(pq_esm2_role_is_linear(PQ_ESM2_FC2));
    assert_false(pq_esm2_role_is_linear(PQ_ESM2_LM_DENSE_W));
}

static void test_detect_synth(void **state)
{
    (void)state;
    char *p = tu_path(g_dir, "t6.safetensors");
    const pq_esm2_arch *t6 = pq_esm2_arch_find("t6_8M");
    assert_int_equal(pq_synth_write(t6, 7, PQ_DT_F16, p), PQ_OK);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    pq_esm2_config c;
    assert_int_equal(pq_esm2_detect(m, &c), PQ_OK);
    assert_ptr_equal(c.arch, t6);
    assert_int_equal(c.num_layers, 6);
    assert_int_equal(c.embed_dim, 320);
    assert_int_equal(c.attention_heads, 20);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.ffn_dim, 1280);
    assert_int_equal(c.vocab_size, 33);
    assert_true(c.layer_norm_eps == 1e-5f);
    assert_true(c.token_dropout);
    assert_true(c.has_contact_head);
    assert_true(c.has_inv_freq);
    assert_false(c.has_decoder);
    pq_st_close(m);
    free(p);
}

static void test_detect_trained(void **state)
{
    (void)state;
    const char *p = getenv("PQ_TEST_TRAINED_MODEL");
    if (!p || access(p, R_OK) != 0)
        fail_msg("trained model not found at PQ_TEST_TRAINED_MODEL='%s' (the meson test passes data/models/)",
                 p ? p : "(unset)");
    pq_st_model *m = NULL;
    if (pq_st_open(p, &m) != PQ_OK) fail_msg("open: %s", pq_err_detail());
    pq_esm2_config c;
    if (pq_esm2_detect(m, &c) != PQ_OK) fail_msg("detect: %s", pq_err_detail());
    assert_non_null(c.arch);
    assert_string_equal(c.arch->name, "esm2_t6_8M_UR50D");
    assert_int_equal(c.num_layers, 6);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.has_decoder);
    assert_true(c.has_contact_head);
    assert_true(c.has_inv_freq);
    /* esm2.md: 7,512,474 parameters; the file also stores the tied decoder
     * (33*320) and the inv_freq buffers (6*8) */
    int64_t total = 0;
    for (int64_t i = 0; i < pq_st_count(m); i++) total += pq_st_get(m, i)->n_elems;
    assert_int_equal(total, 7512474 + 33 * 320 + 6 * 8);
    pq_st_close(m);
}

/* Write t[0..n) and run detect; returns status, detail in pq_err_detail(). */
static pq_status detect_file(const char *name, const tu_tensor *t, int n, pq_esm2_config *c)
{
    char *p = tu_path(g_dir, name);
    tu_write_tensors(p, t, n);
    pq_st_model *m = NULL;
    pq_err_clear();
    pq_status st = pq_st_open(p, &m);
    if (st != PQ_OK) fail_msg("%s: open: %s", name, pq_err_detail());
    st = pq_esm2_detect(m, c);
    pq_st_close(m);
    free(p);
    return st;
}

static void expect_detect_error(const char *name, const tu_tensor *t, int n, const char *s1, const char *s2)
{
    pq_esm2_config c;
    pq_status st = detect_file(name, t, n, &c);
    if (st != PQ_ERR_FORMAT || !strstr(pq_err_detail(), s1) || (s2 && !strstr(pq_err_detail(), s2)))
        fail_msg("%s: status %d detail '%s'; want FORMAT with '%s' / '%s'", name, (int)st, pq_err_detail(),
                 s1, s2 ? s2 : "");
    pq_err_clear();
}

/* A custom size: L=2, D=8, head_dim 4 (H=2). */
#define CL 2
#define CD 8
#define CHD 4
static tu_tensor tt[64 * 17 + 12];

static void test_detect_custom_and_broken(void **state)
{
    (void)state;
    pq_esm2_config c;
    int n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    assert_int_equal(detect_file("custom.safetensors", tt, n, &c), PQ_OK);
    assert_null(c.arch);
    assert_int_equal(c.num_layers, 2);
    assert_int_equal(c.embed_dim, 8);
    assert_int_equal(c.head_dim, 4);
    assert_int_equal(c.attention_heads, 2);
    assert_int_equal(c.ffn_dim, 32);

    /* legacy extras and the decoder are accepted */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 0, 1, tt);
    tu_tensor *e = &tt[n++];
    snprintf(e->name, sizeof e->name, "esm.embeddings.position_ids");
    e->dtype = "I64"; e->ndim = 2; e->shape[0] = 1; e->shape[1] = 1026;
    e = &tt[n++];
    snprintf(e->name, sizeof e->name, "lm_head.decoder.bias");
    e->dtype = "F32"; e->ndim = 1; e->shape[0] = 33;
    assert_int_equal(detect_file("extras.safetensors", tt, n, &c), PQ_OK);
    assert_true(c.has_decoder);
    assert_false(c.has_contact_head);

    /* a wrong shape */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    for (int i = 0; i < n; i++)
        if (!strcmp(tt[i].name, "esm.encoder.layer.1.attention.self.key.weight")) tt[i].shape[1] = 9;
    expect_detect_error("shape.safetensors", tt, n, "tensor 'esm.encoder.layer.1.attention.self.key.weight'",
                        "expected shape [8, 8], got [8, 9]");

    /* fc1 rows not 4D */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    for (int i = 0; i < n; i++)
        if (!strcmp(tt[i].name, "esm.encoder.layer.0.intermediate.dense.weight")) tt[i].shape[0] = 24;
    expect_detect_error("fc1.safetensors", tt, n, "esm.encoder.layer.0.intermediate.dense.weight",
                        "expected shape [32, 8], got [24, 8]");

    /* a missing layer tensor */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    n = tu_drop(tt, n, "esm.encoder.layer.1.output.dense.weight");
    expect_detect_error("missing.safetensors", tt, n, "missing tensor 'esm.encoder.layer.1.output.dense.weight'",
                        "[8, 32]");

    /* a missing global tensor */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    n = tu_drop(tt, n, "lm_head.layer_norm.bias");
    expect_detect_error("missing_glob.safetensors", tt, n, "missing tensor 'lm_head.layer_norm.bias'", NULL);

    /* an extra unknown tensor */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    e = &tt[n++];
    snprintf(e->name, sizeof e->name, "esm.encoder.layer.0.attention.self.extra.weight");
    e->dtype = "F32"; e->ndim = 1; e->shape[0] = 8;
    expect_detect_error("unknown.safetensors", tt, n, "unknown tensor 'esm.encoder.layer.0.attention.self.extra.weight'",
                        NULL);

    /* a gap in the layer indices: layers 0 and 2 only */
    n = tu_esm2_tensors(3, CD, CHD, 1, 0, 0, tt);
    for (int i = 0; i < n;) {
        if (!strncmp(tt[i].name, "esm.encoder.layer.1.", 20)) n = tu_drop(tt, n, tt[i].name);
        else i++;
    }
    expect_detect_error("gap.safetensors", tt, n, "layer 1 has no tensors", NULL);

    /* inv_freq in some layers only */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    n = tu_drop(tt, n, "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq");
    expect_detect_error("inv_part.safetensors", tt, n,
                        "missing tensor 'esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq'", "[2]");

    /* contact head with the wrong in_features (L*H = 4) */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    for (int i = 0; i < n; i++)
        if (!strcmp(tt[i].name, "esm.contact_head.regression.weight")) tt[i].shape[1] = 5;
    expect_detect_error("contact.safetensors", tt, n, "esm.contact_head.regression.weight",
                        "expected shape [1, 4], got [1, 5]");

    /* half a contact head */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 1, 0, tt);
    n = tu_drop(tt, n, "esm.contact_head.regression.bias");
    expect_detect_error("contact_half.safetensors", tt, n, "missing tensor 'esm.contact_head.regression.bias'", NULL);

    /* a custom size without inv_freq cannot give the head count */
    n = tu_esm2_tensors(CL, CD, CHD, 0, 0, 0, tt);
    expect_detect_error("noinv.safetensors", tt, n, "cannot infer the number of heads", NULL);

    /* an integer weight */
    n = tu_esm2_tensors(CL, CD, CHD, 1, 0, 0, tt);
    for (int i = 0; i < n; i++)
        if (!strcmp(tt[i].name, "lm_head.dense.weight")) tt[i].dtype = "I32";
    expect_detect_error("int.safetensors", tt, n, "tensor 'lm_head.dense.weight'", "dtype I32");
}

static void test_detect_published_without_inv_freq(void **state)
{
    (void)state;
    /* t12_35M shapes (zero data, sparse) without inv_freq: head_dim comes
     * from the published table (480 / 20 = 24) */
    static tu_tensor big[12 * 17 + 12];
    int n = tu_esm2_tensors(12, 480, 24, 0, 1, 0, big);
    pq_esm2_config c;
    char *p = tu_path(g_dir, "t12.safetensors");
    tu_write_tensors(p, big, n);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    assert_int_equal(pq_esm2_detect(m, &c), PQ_OK);
    assert_non_null(c.arch);
    assert_string_equal(c.arch->name, "esm2_t12_35M_UR50D");
    assert_int_equal(c.head_dim, 24);
    assert_int_equal(c.attention_heads, 20);
    assert_false(c.has_inv_freq);
    pq_st_close(m);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arch_table),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_detect_synth),
        cmocka_unit_test(test_detect_trained),
        cmocka_unit_test(test_detect_custom_and_broken),
        cmocka_unit_test(test_detect_published_without_inv_freq),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
