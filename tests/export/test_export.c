/* SPDX-License-Identifier: Apache-2.0 */
/* test_export.c - pq_export, the library's side of `proteus export`: each
 * format through the API (the safetensors folder read back by Proteus'
 * own safetensors reader: the tensors of the file, dequantized values,
 * the dtype the manager's float_dtype asks for), and the refusals: an
 * unknown format, a non-empty folder, an input that is missing or not a
 * Proteus model, a group size compressed-tensors cannot express; a stale
 * OUT.partial is replaced, a failed export leaves nothing. The peer suite
 * (test_export_peer.py) checks the folders against transformers and
 * compressed-tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/proteus.h"
#include "format/h5model.h"
#include "format/safetensors.h"
#include "../cli/t6_fixture.h"

static char g_dir[256], g_model[300], g_q8[400], g_q4[400];

static bool exists(const char *dir, const char *name)
{
    char p[700];
    snprintf(p, sizeof p, "%s%s%s", dir, name ? "/" : "", name ? name : "");
    return access(p, F_OK) == 0;
}

static void quantize(const char *out, const char *const *kv)
{
    pq_config c;
    pq_manager *m = NULL;
    pq_config_defaults(&c);
    for (; *kv; kv += 2) assert_int_equal(pq_config_set(&c, kv[0], kv[1]), PQ_OK);
    assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
    assert_int_equal(pq_quantize_model(m, g_model, out), PQ_OK);
    pq_manager_destroy(m);
    pq_config_free(&c);
}

static int setup(void **state)
{
    (void)state;
    if (pq_t6_fixture_make("export", 11, g_dir, g_model)) return -1;
    snprintf(g_q8, sizeof g_q8, "%s/q8.h5", g_dir);
    snprintf(g_q4, sizeof g_q4, "%s/q4.h5", g_dir);
    static const char *const q8[] = {"per_channel", "true", NULL};
    static const char *const q4[] = {"precision", "int4", "group_size", "128", NULL};
    quantize(g_q8, q8);
    quantize(g_q4, q4);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return pq_t6_fixture_remove(g_dir);
}

static pq_status export_with(const char *float_dtype, const char *in, const char *out, const char *format)
{
    pq_config c;
    pq_manager *m = NULL;
    pq_config_defaults(&c);
    assert_int_equal(pq_config_set(&c, "float_dtype", float_dtype), PQ_OK);
    assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
    pq_err_clear();
    pq_status st = pq_export(m, in, out, format);
    pq_manager_destroy(m);
    pq_config_free(&c);
    return st;
}

/* The safetensors folder holds every tensor of the file, the quantized ones
 * as the reader dequantizes them, in the dtype asked for. */
static void test_safetensors(void **state)
{
    (void)state;
    char out[400], st_path[500];
    snprintf(out, sizeof out, "%s/hf", g_dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
    /* a stale partial folder of an interrupted export is replaced */
    char partial[420];
    snprintf(partial, sizeof partial, "%s.partial", out);
    assert_int_equal(mkdir(partial, 0755), 0);
    assert_int_equal(export_with("fp32", g_q8, out, "safetensors"), PQ_OK);
    assert_false(exists(partial, NULL));
    for (const char *const *f = (const char *const[]){"config.json", "vocab.txt", "tokenizer_config.json",
                                                      "special_tokens_map.json", NULL}; *f; f++)
        assert_true(exists(out, *f));

    pq_h5r *r = NULL;
    pq_st_model *sm = NULL;
    assert_int_equal(pq_h5r_open(g_q8, &r), PQ_OK);
    assert_int_equal(pq_st_open(st_path, &sm), PQ_OK);
    int n_quant = 0;
    for (int64_t i = 0; i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        const pq_st_tensor *t = pq_st_find(sm, e->name);
        assert_non_null(t);
        assert_int_equal(t->dtype, PQ_DT_F32);
        if (!e->quantized) continue;
        n_quant++;
        int64_t n = e->shape[0] * e->shape[1];
        float *want = malloc((size_t)n * sizeof *want);
        assert_non_null(want);
        assert_int_equal(pq_h5r_read_f32(r, e, want), PQ_OK);
        assert_memory_equal(pq_st_data(sm, t), want, (size_t)n * sizeof *want);
        free(want);
    }
    assert_int_equal(n_quant, 36);
    assert_non_null(pq_st_find(sm, "esm.embeddings.position_ids"));
    assert_null(pq_st_find(sm, "lm_head.decoder.weight")); /* tied */
    pq_st_close(sm);

    /* fp16 through the manager's float_dtype */
    snprintf(out, sizeof out, "%s/hf16", g_dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
    assert_int_equal(export_with("fp16", g_q8, out, "safetensors"), PQ_OK);
    assert_int_equal(pq_st_open(st_path, &sm), PQ_OK);
    assert_int_equal(pq_st_find(sm, "esm.encoder.layer.0.attention.self.query.weight")->dtype, PQ_DT_F16);
    pq_st_close(sm);
    pq_h5r_close(r);
}

static void test_compressed_and_hdf5(void **state)
{
    (void)state;
    char out[400], st_path[500];
    snprintf(out, sizeof out, "%s/ct", g_dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
    assert_int_equal(export_with("fp32", g_q8, out, "compressed-tensors"), PQ_OK);
    pq_st_model *sm = NULL;
    assert_int_equal(pq_st_open(st_path, &sm), PQ_OK);
    const pq_st_tensor *w = pq_st_find(sm, "esm.encoder.layer.0.intermediate.dense.weight");
    const pq_st_tensor *s = pq_st_find(sm, "esm.encoder.layer.0.intermediate.dense.weight_scale");
    assert_non_null(w);
    assert_non_null(s);
    assert_int_equal(w->dtype, PQ_DT_I8);
    assert_int_equal(s->ndim, 2); /* per channel: [out, 1] */
    assert_int_equal(s->shape[0], 1280);
    assert_int_equal(s->shape[1], 1);
    assert_null(pq_st_find(sm, "esm.encoder.layer.0.intermediate.dense.weight_zero_point"));
    pq_st_close(sm);

    snprintf(out, sizeof out, "%s/copy.h5", g_dir);
    assert_int_equal(export_with("fp32", g_q8, out, "hdf5"), PQ_OK);
    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(out, &r), PQ_OK);
    pq_h5r_close(r);
}

static void test_refusals(void **state)
{
    (void)state;
    char out[400], busy[400], path[500];
    snprintf(out, sizeof out, "%s/refused", g_dir);
    assert_int_equal(export_with("fp32", g_q8, out, "onnx"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "compressed-tensors"));
    /* int4 groups of 128 over 320 columns */
    assert_int_equal(export_with("fp32", g_q4, out, "compressed-tensors"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "not a multiple of its group size 128"));
    assert_int_equal(export_with("fp32", g_model, out, "safetensors"), PQ_ERR_FORMAT);
    snprintf(path, sizeof path, "%s/absent.h5", g_dir);
    assert_int_equal(export_with("fp32", path, out, "safetensors"), PQ_ERR_IO);
    assert_false(exists(out, NULL));
    snprintf(path, sizeof path, "%s.partial", out);
    assert_false(exists(path, NULL));

    snprintf(busy, sizeof busy, "%s/busy", g_dir);
    assert_int_equal(mkdir(busy, 0755), 0);
    snprintf(path, sizeof path, "%s/keep", busy);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(export_with("fp32", g_q8, busy, "safetensors"), PQ_ERR_IO);
    assert_non_null(strstr(pq_err_detail(), "not empty"));
    assert_false(exists(busy, "model.safetensors"));
    /* an empty folder is replaced */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(export_with("fp32", g_q8, busy, "safetensors"), PQ_OK);
    assert_true(exists(busy, "model.safetensors"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors),
        cmocka_unit_test(test_compressed_and_hdf5),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
