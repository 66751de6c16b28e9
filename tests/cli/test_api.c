/* SPDX-License-Identifier: Apache-2.0 */
/* test_api.c - the public library API (proteus.h): config validation,
 * quantize_model, get_quantization_stats and export, on a synthetic t6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "format/h5model.h"
#include "api/proteus.h"
#include "kernels/kernels_impl.h"
#include "t6_fixture.h"

static char g_dir[256], g_model[300];

static int setup(void **state)
{
    (void)state;
    return pq_t6_fixture_make("api", 5, g_dir, g_model);
}

static int teardown(void **state)
{
    (void)state;
    return pq_t6_fixture_remove(g_dir);
}

static void test_config_errors(void **state)
{
    (void)state;
    pq_config c;
    pq_config_defaults(&c);
    pq_err_clear();
    assert_int_equal(pq_config_set(&c, "precision", "int3"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "int8, int4"));
    pq_err_clear();
    assert_int_equal(pq_config_set(&c, "turbo", "1"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "'turbo'"));
    pq_err_clear();
    assert_int_equal(pq_config_set(&c, "group_size", "31"), PQ_ERR_CONFIG);
    assert_int_equal(pq_config_set(&c, "group_size", "64"), PQ_OK);
    assert_int_equal(pq_config_set(&c, "per_channel", "true"), PQ_OK);
    pq_err_clear();
    assert_int_equal(pq_config_validate(&c), PQ_ERR_CONFIG);
    pq_qspec s = pq_config_qspec(&c);
    assert_int_equal(s.gran, PQ_GRAN_GROUP);
    assert_int_equal(s.group_size, 64);
    pq_config_free(&c);
}

static void test_quantize_stats_export(void **state)
{
    (void)state;
    pq_config c;
    pq_manager *m = NULL;
    const pq_job_stats *st = NULL;
    char out[320], copy[320];
    snprintf(out, sizeof out, "%s/q.h5", g_dir);
    snprintf(copy, sizeof copy, "%s/copy.h5", g_dir);
    pq_config_defaults(&c);
    assert_int_equal(pq_config_set(&c, "per_channel", "true"), PQ_OK);
    assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
    pq_config_free(&c); /* the manager holds its own copy */
    assert_int_equal(pq_get_quantization_stats(m, &st), PQ_ERR_CONFIG);
    assert_int_equal(pq_quantize_model(m, g_model, out), PQ_OK);
    assert_int_equal(pq_get_quantization_stats(m, &st), PQ_OK);
    /* esm2.md: 6 layers x (q, k, v, out, fc1, fc2) */
    assert_int_equal(st->n_quantized, 36);
    /* per layer: 4 x 320x320 + 1280x320 + 320x1280 codes, one fp32 scale per row
     * (320 x 4 + 1280 + 320), fp32 input = 4 bytes per weight */
    uint64_t codes = 6ull * (4 * 320 * 320 + 2 * 1280 * 320);
    uint64_t scales = 6ull * (4 * 320 + 1280 + 320) * 4;
    uint64_t quant_before = codes * 4, quant_after = codes + scales;
    uint64_t float_bytes = st->bytes_before - quant_before;
    assert_int_equal(st->bytes_after, quant_after + float_bytes);
    assert_true(st->min_sqnr_db > 20.0 && st->mean_sqnr_db >= st->min_sqnr_db);

    pq_err_clear();
    assert_int_equal(pq_export(m, out, copy, "onnx"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "hdf5"));
    assert_int_equal(pq_export(m, out, copy, "hdf5"), PQ_OK);

    pq_h5r *a = NULL, *b = NULL;
    assert_int_equal(pq_h5r_open(out, &a), PQ_OK);
    assert_int_equal(pq_h5r_open(copy, &b), PQ_OK);
    assert_int_equal(pq_h5r_count(a), pq_h5r_count(b));
    for (int64_t i = 0; i < pq_h5r_count(a); i++) {
        const pq_h5r_entry *ea = pq_h5r_get(a, i), *eb = pq_h5r_find(b, ea->name);
        assert_non_null(eb);
        assert_int_equal(ea->quantized, eb->quantized);
        if (!ea->quantized) continue;
        pq_qtensor qa = {0}, qb = {0};
        assert_int_equal(pq_h5r_read_qtensor(a, ea, &qa), PQ_OK);
        assert_int_equal(pq_h5r_read_qtensor(b, eb, &qb), PQ_OK);
        assert_memory_equal(qa.codes, qb.codes, (size_t)(qa.rows * qa.code_row_bytes));
        assert_memory_equal(qa.scale, qb.scale, (size_t)qa.n_scales * sizeof(float));
        pq_qtensor_free(&qa);
        pq_qtensor_free(&qb);
    }
    pq_h5r_close(a);
    pq_h5r_close(b);
    pq_manager_destroy(m);
}

static void test_failure_leaves_nothing(void **state)
{
    (void)state;
    pq_config c;
    pq_manager *m = NULL;
    char out[320], missing[320];
    snprintf(out, sizeof out, "%s/none.h5", g_dir);
    snprintf(missing, sizeof missing, "%s/missing.safetensors", g_dir);
    pq_config_defaults(&c);
    assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
    pq_err_clear();
    assert_int_equal(pq_quantize_model(m, missing, out), PQ_ERR_IO);
    assert_non_null(strstr(pq_err_detail(), "missing.safetensors"));
    assert_int_not_equal(access(out, F_OK), 0);
    /* hardware targets that this machine cannot serve: cuda (CPU kernels in
     * this version), avx512 where the CPU lacks what the VNNI GEMM needs */
    const char *targets[] = {"cuda", "avx512"};
    for (int i = 0; i < 2 && !(i == 1 && pq_cpu_has_avx512vnni()); i++) {
        pq_manager_destroy(m);
        assert_int_equal(pq_config_set(&c, "hardware_target", targets[i]), PQ_OK);
        assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
        pq_err_clear();
        assert_int_equal(pq_quantize_model(m, g_model, out), PQ_ERR_HARDWARE);
        assert_non_null(strstr(pq_err_detail(), "available"));
        assert_int_not_equal(access(out, F_OK), 0);
    }
    pq_manager_destroy(m);
    pq_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_quantize_stats_export),
        cmocka_unit_test(test_failure_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
