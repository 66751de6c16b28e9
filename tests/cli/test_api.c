/* SPDX-License-Identifier: Apache-2.0 */
/* test_api.c - the public library API (proteus.h): config validation,
 * quantize_model (dynamic and static), get_quantization_stats and export,
 * on a synthetic t6.
 *
 * Arguments: the proteus executable and the repository's data/ folder
 * (the static scheme's bundled sample, found through $PROTEUS_DATA_DIR). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "format/h5model.h"
#include "api/proteus.h"
#include "kernels/kernels_impl.h"
#include "t6_fixture.h"

static char g_dir[256], g_model[300];
static const char *g_proteus, *g_data;

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
    /* GPTQ: a known method, its options in range, and scales it can follow */
    pq_config_defaults(&c);
    pq_err_clear();
    assert_int_equal(pq_config_set(&c, "method", "obq"), PQ_ERR_CONFIG);
    assert_non_null(strstr(pq_err_detail(), "rtn, gptq"));
    assert_int_equal(pq_config_set(&c, "gptq_damp", "0"), PQ_ERR_CONFIG);
    assert_int_equal(pq_config_set(&c, "gptq_block_size", "0"), PQ_ERR_CONFIG);
    assert_int_equal(pq_config_set(&c, "method", "gptq"), PQ_OK);
    pq_err_clear();
    assert_int_equal(pq_config_validate(&c), PQ_ERR_CONFIG); /* one scale per tensor */
    assert_non_null(strstr(pq_err_detail(), "per-channel or group"));
    assert_int_equal(pq_config_set(&c, "per_channel", "true"), PQ_OK);
    assert_int_equal(pq_config_validate(&c), PQ_OK);
    pq_config_free(&c);
}

/* A --config string value is taken whole: an include pattern longer than
 * any fixed buffer reaches the pattern list unchanged (it was once cut to 511
 * characters, matching other names than the user wrote). */
static void test_config_json_long_string(void **state)
{
    (void)state;
    char pat[701], path[400];
    for (int i = 0; i < 700; i++) pat[i] = "esm.encoder.layer*"[i % 18];
    pat[700] = '\0';
    snprintf(path, sizeof path, "%s/long.json", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"include\": \"%s\", \"exclude\": [\"%s\"]}", pat, pat);
    fclose(f);
    pq_config c;
    pq_config_defaults(&c);
    assert_int_equal(pq_config_load_json(&c, path), PQ_OK);
    assert_int_equal(c.n_include, 1);
    assert_int_equal(c.n_exclude, 1);
    assert_string_equal(c.include[0], pat);
    assert_string_equal(c.exclude[0], pat);
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

/* Run g_proteus with argv[1..] (argv[0] is replaced), its output into log:
 * the exit status, or -1 when it did not exit. */
static int run_proteus(char **argv, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stdout) || dup2(fileno(stdout), 2) < 0) _exit(126);
        argv[0] = (char *)g_proteus;
        execv(g_proteus, argv);
        _exit(127);
    }
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws)) return -1;
    return WEXITSTATUS(ws);
}

/* Quantize g_model per-channel with the bundled sample in reach, once
 * through the library with config key `key` = `value` into g_dir/TAG_api.h5
 * and once with `proteus quantize --per-channel OPT VALUE` (OPT_VALUE NULL:
 * OPT alone) into g_dir/TAG_cli.h5; both must succeed. */
static void api_and_cli(const char *tag, const char *key, const char *value, char *opt, char *opt_value,
                        char api[320], char cli[320])
{
    pq_config c;
    pq_manager *m = NULL;
    char log[320];
    snprintf(api, 320, "%s/%s_api.h5", g_dir, tag);
    snprintf(cli, 320, "%s/%s_cli.h5", g_dir, tag);
    snprintf(log, sizeof log, "%s/%s_cli.log", g_dir, tag);
    assert_int_equal(setenv("PROTEUS_DATA_DIR", g_data, 1), 0);
    pq_config_defaults(&c);
    assert_int_equal(pq_config_set(&c, "per_channel", "true"), PQ_OK);
    assert_int_equal(pq_config_set(&c, key, value), PQ_OK);
    assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
    pq_config_free(&c);
    pq_err_clear();
    pq_status st = pq_quantize_model(m, g_model, api);
    if (st) fprintf(stderr, "pq_quantize_model: %s\n", pq_err_detail());
    assert_int_equal(st, PQ_OK);
    pq_manager_destroy(m);
    char *argv[] = {NULL, "quantize", "--model", g_model, "--out", cli, "--per-channel", opt, opt_value, NULL};
    int rc = run_proteus(argv, log);
    if (rc) fprintf(stderr, "proteus quantize %s exited %d (see %s)\n", opt, rc, log);
    assert_int_equal(rc, 0);
    assert_int_equal(unsetenv("PROTEUS_DATA_DIR"), 0);
}

/* The static scheme through the library calibrates on the bundled sample,
 * as `proteus quantize --scheme static` does when given no data: every
 * quantized Linear has an act_scale, the same bits as the command's. */
static void test_static_act_scales(void **state)
{
    (void)state;
    char api[320], cli[320];
    api_and_cli("static", "scheme", "static", "--scheme", "static", api, cli);

    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(api, &r), PQ_OK);
    int n_act = 0;
    for (int64_t i = 0; i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        if (!e->quantized) continue;
        float sa = 0, sc = 0;
        int32_t za = -1, zc = -2;
        bool fa = false, fc = false;
        assert_true(e->has_act_scale);
        assert_int_equal(pq_h5_read_act_qparams(api, e->name, &sa, &za, &fa), PQ_OK);
        assert_int_equal(pq_h5_read_act_qparams(cli, e->name, &sc, &zc, &fc), PQ_OK);
        assert_true(fa && fc);
        assert_true(sa > 0.0f);
        assert_memory_equal(&sa, &sc, sizeof sa);
        assert_int_equal(za, zc);
        n_act++;
    }
    pq_h5r_close(r);
    /* esm2.md: 6 layers x (q, k, v, out, fc1, fc2), each input a site */
    assert_int_equal(n_act, 36);
}

/* SmoothQuant through the C API: the same smoothed LayerNorms and codes as
 * `proteus quantize --smoothquant 0.5` writes for the same model and the
 * bundled sample (a library that ignored the key would keep the source's
 * LayerNorms, which the command divides by s). */
static void test_smoothquant_matches_cli(void **state)
{
    (void)state;
    char api[320], cli[320];
    api_and_cli("sq", "smoothquant_alpha", "0.5", "--smoothquant", "0.5", api, cli);

    pq_h5r *ra = NULL, *rc5 = NULL;
    assert_int_equal(pq_h5r_open(api, &ra), PQ_OK);
    assert_int_equal(pq_h5r_open(cli, &rc5), PQ_OK);
    int n_ln = 0, n_q = 0;
    for (int64_t i = 0; i < pq_h5r_count(ra); i++) {
        const pq_h5r_entry *e = pq_h5r_get(ra, i), *f = pq_h5r_find(rc5, e->name);
        assert_non_null(f);
        if (e->quantized) {
            pq_qtensor qa, qc;
            assert_int_equal(pq_h5r_read_qtensor(ra, e, &qa), PQ_OK);
            assert_int_equal(pq_h5r_read_qtensor(rc5, f, &qc), PQ_OK);
            assert_memory_equal(qa.codes, qc.codes, (size_t)(qa.rows * qa.code_row_bytes));
            assert_memory_equal(qa.scale, qc.scale, (size_t)(qa.rows * qa.n_groups) * sizeof(float));
            pq_qtensor_free(&qa);
            pq_qtensor_free(&qc);
            n_q++;
        } else if (strstr(e->name, "LayerNorm.weight") && strstr(e->name, "attention")) {
            int64_t n = e->shape[0];
            float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
            assert_int_equal(pq_h5r_read_f32(ra, e, a), PQ_OK);
            assert_int_equal(pq_h5r_read_f32(rc5, f, b), PQ_OK);
            assert_memory_equal(a, b, (size_t)n * sizeof *a);
            free(a);
            free(b);
            n_ln++;
        }
    }
    pq_h5r_close(ra);
    pq_h5r_close(rc5);
    assert_int_equal(n_q, 36);
    assert_true(n_ln >= 6);
}

/* Calibration data that gives no statistics fails the static scheme with
 * the calibration error, and nothing is written. */
static void test_static_bad_data(void **state)
{
    (void)state;
    pq_config c;
    pq_manager *m = NULL;
    char out[320], data[320], path[400];
    snprintf(out, sizeof out, "%s/static_bad.h5", g_dir);
    snprintf(data, sizeof data, "%s/baddata", g_dir);
    pq_config_defaults(&c);
    assert_int_equal(pq_config_set(&c, "scheme", "static"), PQ_OK);
    assert_int_equal(pq_manager_create(&c, &m), PQ_OK);
    pq_config_free(&c);

    /* no bundled sample where $PROTEUS_DATA_DIR points (nor next to this test) */
    assert_int_equal(setenv("PROTEUS_DATA_DIR", data, 1), 0);
    pq_err_clear();
    assert_int_equal(pq_quantize_model(m, g_model, out), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "calib_sample.fasta"));
    assert_int_not_equal(access(out, F_OK), 0);

    /* a sample with no usable sequence: one empty, one over 1022 residues */
    assert_int_equal(mkdir(data, 0700), 0);
    snprintf(path, sizeof path, "%s/proteins", data);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/proteins/calib_sample.fasta", data);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(">empty\n\n>long\n", f);
    for (int i = 0; i < 1100; i++) fputc('A', f);
    fputc('\n', f);
    assert_int_equal(fclose(f), 0);
    pq_err_clear();
    assert_int_equal(pq_quantize_model(m, g_model, out), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "no usable calibration sequence"));
    assert_int_not_equal(access(out, F_OK), 0);
    pq_manager_destroy(m);
    assert_int_equal(unsetenv("PROTEUS_DATA_DIR"), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PROTEUS_EXE DATA_DIR\n", argv[0]);
        return 2;
    }
    g_proteus = argv[1];
    g_data = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_json_long_string),
        cmocka_unit_test(test_quantize_stats_export),
        cmocka_unit_test(test_failure_leaves_nothing),
        cmocka_unit_test(test_static_act_scales),
        cmocka_unit_test(test_static_bad_data),
        cmocka_unit_test(test_smoothquant_matches_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
