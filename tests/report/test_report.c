/* SPDX-License-Identifier: Apache-2.0 */
/* test_report.c - the library side of `proteus report`: HTML escaping, the
 * colour scales (against matplotlib's viridis and ColorBrewer's Reds at
 * their stops, and hand-computed points between), the JSON checks (each
 * error naming the file and the key), and whole runs on a small model
 * written here (weight SQNR from hand-set metric sums, a fp16 Linear, a
 * fallback trail), with the refusals that must leave no page behind. The
 * page itself is drawn by Chromium in test_report_render.py. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "format/h5model.h"
#include "report/report.h"

static char g_dir[256];

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static void write_text(const char *name, const char *text)
{
    char p[400];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- escaping ---- */

static char *esc(const char *s, size_t max)
{
    pq_html h;
    pq_html_init(&h);
    pq_html_text(&h, s, max);
    assert_int_equal(pq_html_status(&h), PQ_OK);
    char *r = strdup(h.buf ? h.buf : "");
    pq_html_free(&h);
    return r;
}

static void test_escape(void **state)
{
    (void)state;
    char *s = esc("a<b>&\"c\"'d'", 0);
    assert_string_equal(s, "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
    free(s);
    s = esc("</script><script>alert(1)</script>", 0);
    assert_null(strchr(s, '<'));
    assert_string_equal(s, "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;");
    free(s);
    s = esc("tab\there\nnew\x01\x7f", 0); /* controls but tab/newline become U+FFFD */
    assert_string_equal(s, "tab\there\nnew\xEF\xBF\xBD\xEF\xBF\xBD");
    free(s);
    s = esc("abcdef", 3);
    assert_string_equal(s, "abc\xE2\x80\xA6");
    free(s);
    s = esc("ab\xC3\xA9z", 3); /* "abéz": the cut falls inside é, which stays whole or goes */
    assert_string_equal(s, "ab\xE2\x80\xA6");
    free(s);
    s = esc("", 0);
    assert_string_equal(s, "");
    free(s);
    pq_html h;
    pq_html_init(&h);
    pq_html_text(&h, NULL, 0);
    assert_int_equal(h.len, 0);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pq_html_printf(&h, "<p>%s</p>", big); /* longer than printf's first try */
    assert_int_equal(h.len, sizeof big - 1 + 7);
    assert_int_equal(strncmp(h.buf + h.len - 5, "x</p>", 5), 0);
    pq_html_free(&h);
}

/* ---- colours ---- */

static void assert_rgb(pq_palette p, double t, unsigned hex)
{
    uint8_t c[3];
    pq_html_colour(p, t, c);
    unsigned got = (unsigned)c[0] << 16 | (unsigned)c[1] << 8 | c[2];
    if (got != hex) fail_msg("palette %d at t=%g: #%06x, expected #%06x", (int)p, t, got, hex);
}

static void test_colour(void **state)
{
    (void)state;
    /* matplotlib viridis(0), (0.25), (0.5), (0.75), (1): #440154 #3b528b #21918c #5ec962 #fde725 */
    assert_rgb(PQ_PAL_QUALITY, 0, 0x440154);
    assert_rgb(PQ_PAL_QUALITY, 0.25, 0x3b528b);
    assert_rgb(PQ_PAL_QUALITY, 0.5, 0x21918c);
    assert_rgb(PQ_PAL_QUALITY, 0.75, 0x5ec962);
    assert_rgb(PQ_PAL_QUALITY, 1, 0xfde725);
    /* ColorBrewer Reds (9 classes) first and last: #fff5f0, #67000d */
    assert_rgb(PQ_PAL_HARM, 0, 0xfff5f0);
    assert_rgb(PQ_PAL_HARM, 1, 0x67000d);
    /* halfway between viridis stops 0.5 and 0.75: (0x21+0x5e)/2 = 63.5 -> 64,
     * (0x91+0xc9)/2 = 173, (0x8c+0x62)/2 = 119 */
    assert_rgb(PQ_PAL_QUALITY, 0.625, 0x40ad77);
    /* clamped, and NaN is the grey of "no value" */
    assert_rgb(PQ_PAL_QUALITY, -3, 0x440154);
    assert_rgb(PQ_PAL_QUALITY, 7, 0xfde725);
    assert_rgb(PQ_PAL_HARM, NAN, 0xd0d0d0);
    assert_true(pq_html_scale(5, 0, 10) == 0.5);
    assert_true(pq_html_scale(0, 0, 10) == 0);
    assert_true(pq_html_scale(INFINITY, 0, 10) == 1);
    assert_true(pq_html_scale(-INFINITY, 0, 10) == 0);
    assert_true(pq_html_scale(3, 3, 3) == 0.5);
    assert_true(isnan(pq_html_scale(NAN, 0, 1)));
    /* white text on the dark end, black on the light end and on yellow */
    const uint8_t dark[3] = {0x44, 0x01, 0x54}, yellow[3] = {0xfd, 0xe7, 0x25}, white[3] = {255, 255, 255};
    const uint8_t red[3] = {0x67, 0x00, 0x0d};
    assert_true(pq_html_text_white(dark));
    assert_true(pq_html_text_white(red));
    assert_false(pq_html_text_white(yellow));
    assert_false(pq_html_text_white(white));
}

/* ---- JSON checks ---- */

static pq_status load_eval(const char *name, const char *text, int L)
{
    char p[400];
    write_text(name, text);
    path_in(p, sizeof p, name);
    pq_report_eval e;
    pq_status st = pq_report_eval_load(p, L, &e);
    pq_report_eval_free(&e);
    return st;
}

static pq_status load_opt(const char *name, const char *text, int L)
{
    char p[400];
    write_text(name, text);
    path_in(p, sizeof p, name);
    pq_report_opt o;
    pq_status st = pq_report_opt_load(p, L, &o);
    pq_report_opt_free(&o);
    return st;
}

static void assert_detail_has(const char *a, const char *b)
{
    const char *d = pq_err_detail();
    if (!strstr(d, a) || (b && !strstr(d, b))) fail_msg("detail '%s' lacks '%s' or '%s'", d, a, b ? b : "");
}

static void test_json_errors(void **state)
{
    (void)state;
    char p[400];
    pq_report_eval e;
    path_in(p, sizeof p, "absent.json");
    pq_err_clear();
    assert_int_equal(pq_report_eval_load(p, 2, &e), PQ_ERR_IO);
    assert_detail_has("absent.json", NULL);
    pq_err_clear();
    assert_int_equal(load_eval("e1.json", "{\"accuracy_reference\": 0.4,\n \"x\": }", 2), PQ_ERR_FORMAT);
    assert_detail_has("e1.json", "line 2");
    pq_err_clear();
    assert_int_equal(load_eval("e2.json", "[1, 2]", 2), PQ_ERR_FORMAT);
    assert_detail_has("e2.json", "object");
    pq_err_clear();
    assert_int_equal(load_eval("e3.json", "{\"logits_kl_mean\": \"small\"}", 2), PQ_ERR_FORMAT);
    assert_detail_has("e3.json: logits_kl_mean", "a number");
    pq_err_clear();
    assert_int_equal(load_eval("e4.json", "{\"accuracy_quantized\": 41.5}", 2), PQ_ERR_FORMAT);
    assert_detail_has("accuracy_quantized", "outside");
    pq_err_clear();
    assert_int_equal(load_eval("e5.json", "{\"linear_sqnr_db\": [{\"layer\": 2, \"q\": 1}]}", 2), PQ_ERR_FORMAT);
    assert_detail_has("linear_sqnr_db[0].layer", "another model");
    pq_err_clear();
    assert_int_equal(load_eval("e6.json", "{\"utilization\": {\"kernel\": 3}}", 2), PQ_ERR_FORMAT);
    assert_detail_has("utilization.kernel", "a string");
    /* absent keys, null, and evaluate's non-finite strings are fine */
    assert_int_equal(load_eval("e7.json", "{\"logits_kl_max\": null, \"linear_sqnr_db\": [{\"layer\": 1, "
                                          "\"q\": \"inf\", \"out\": 3.5}, {\"layer\": \"head\", \"lm_dense\": 9}]}",
                               2), PQ_OK);
    path_in(p, sizeof p, "e7.json");
    assert_int_equal(pq_report_eval_load(p, 2, &e), PQ_OK);
    assert_true(isinf(e.sqnr[6 + 0]) && e.sqnr[6 + 3] == 3.5 && isnan(e.sqnr[0]) && e.head_sqnr == 9);
    pq_report_eval_free(&e);

    pq_err_clear();
    assert_int_equal(load_opt("o1.json", "{\"front\": [{\"bytes\": 5}, {\"bytes\": 6, \"accuracy\": \"high\"}]}", 2),
                     PQ_ERR_FORMAT);
    assert_detail_has("o1.json: front[1].accuracy", "a number");
    pq_err_clear();
    assert_int_equal(load_opt("o2.json", "{\"sensitivity\": [{\"layer\": 0, \"linear\": \"fc3\"}]}", 2),
                     PQ_ERR_FORMAT);
    assert_detail_has("sensitivity[0].linear", "fc3");
    pq_err_clear();
    assert_int_equal(load_opt("o3.json", "{\"sensitivity\": [{\"layer\": 5, \"linear\": \"q\"}]}", 2),
                     PQ_ERR_FORMAT);
    assert_detail_has("sensitivity[0].layer", "2 layers");
    pq_err_clear();
    assert_int_equal(load_opt("o4.json", "{\"sensitivity\": [{\"layer\": 1, \"linear\": \"o\", \"candidates\": "
                                         "[{\"recipe\": {\"precision\": \"int4\", \"symmetric\": 1}}]}]}", 2),
                     PQ_ERR_FORMAT);
    assert_detail_has("sensitivity[0].candidates[0].recipe.symmetric", "true or false");
    pq_err_clear();
    assert_int_equal(load_opt("o5.json", "{\"chosen\": {\"met\": \"yes\"}}", 2), PQ_ERR_FORMAT);
    assert_detail_has("chosen.met", NULL);
    pq_err_clear();
    assert_int_equal(load_opt("o6.json", "{\"unmet\": [\"max size\", 3]}", 2), PQ_ERR_FORMAT);
    assert_detail_has("unmet[1]", "a string");
    pq_report_opt o;
    write_text("o7.json", "{\"constraints\": {\"max_size_bytes\": 1000, \"max_drop_points\": null}, \"front\": "
                          "[{\"label\": \"a\", \"bytes\": 10, \"accuracy\": 0.5, \"chosen\": true}], "
                          "\"sensitivity\": [{\"layer\": 1, \"linear\": \"fc2\", \"candidates\": [{\"recipe\": "
                          "{\"precision\": \"int4\", \"group_size\": 64, \"symmetric\": false}, \"d_loss\": 0.5}]}]}");
    path_in(p, sizeof p, "o7.json");
    assert_int_equal(pq_report_opt_load(p, 2, &o), PQ_OK);
    assert_true(o.max_size == 1000 && isnan(o.max_drop) && isnan(o.min_speedup) && o.n_front == 1);
    assert_true(o.front[0].chosen && o.n_sens == 1 && o.sens[0].linear == 5 && o.sens[0].layer == 1);
    assert_string_equal(o.sens[0].cand[0].label, "int4 g64 asym");
    pq_report_opt_free(&o);

    pq_report_trail t;
    pq_err_clear();
    assert_int_equal(pq_report_trail_parse("[{\"attempt\": 1,", "Q.h5: /provenance fallback_trail", &t),
                     PQ_ERR_FORMAT);
    assert_detail_has("Q.h5: /provenance fallback_trail", "line 1");
    pq_err_clear();
    assert_int_equal(pq_report_trail_parse("[{\"attempt\": 1, \"kept_float\": [\"a\", 2]}]", "T", &t),
                     PQ_ERR_FORMAT);
    assert_detail_has("T: [0].kept_float[1]", NULL);
    pq_err_clear();
    assert_int_equal(pq_report_trail_parse("[{\"drop\": 3}]", "T", &t), PQ_ERR_FORMAT);
    assert_detail_has("[0].drop", "outside");
}

/* ---- whole runs on a model written here ---- */

static const char *const k_names[6] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                       "attention.output.dense", "intermediate.dense", "output.dense"};

/* Two layers, D 8, ffn 32: every Linear int8 per channel, but layer 1's
 * fc2 kept in fp16; metrics sum_sq = 100 * (i + 1), err_sq = 1 for Linear
 * number i = 6 l + k, so its SQNR is 20 + 10 log10(i + 1) dB; layer 0's k
 * exact (err_sq 0). provenance carries `trail` as fallback_trail. */
static void write_model(const char *path, const char *trail)
{
    pq_h5_meta meta = {.architecture = "esm2_custom", .model_name = "tiny<b>.safetensors", .source_sha256 = "ab12",
                       .source_hash_chunk_bytes = (int64_t)64 << 20, .created_by = "proteus test",
                       .config_json = "{}", .num_ranks = 1};
    meta.cfg = (pq_esm2_config){.num_layers = 2, .embed_dim = 8, .attention_heads = 2, .head_dim = 4,
                                .ffn_dim = 32, .vocab_size = 33, .layer_norm_eps = 1e-5f, .token_dropout = true};
    pq_h5w *w = NULL;
    assert_int_equal(pq_h5w_create(path, &meta, &w), PQ_OK);
    const pq_qspec spec = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 6; k++) {
            char name[128];
            snprintf(name, sizeof name, "esm.encoder.layer.%d.%s.weight", l, k_names[k]);
            int64_t rows = k == 4 ? 32 : 8, cols = k == 5 ? 32 : 8;
            if (l == 1 && k == 5) {
                float *v = calloc((size_t)(rows * cols), sizeof *v);
                const int64_t shape[2] = {rows, cols};
                assert_int_equal(pq_h5w_put_float(w, name, 2, shape, v, true), PQ_OK);
                free(v);
                continue;
            }
            pq_qtensor qt;
            assert_int_equal(pq_qtensor_alloc(&qt, &spec, rows, cols), PQ_OK);
            memset(qt.codes, 0, (size_t)(qt.code_row_bytes * rows));
            for (int64_t i = 0; i < qt.n_scales; i++) qt.scale[i] = 1;
            int i = 6 * l + k;
            qt.metrics = (pq_qmetrics){.sqnr_db = -99, .sum_sq = 100.0 * (i + 1), .err_sq = i == 1 ? 0 : 1};
            assert_int_equal(pq_h5w_put_qtensor(w, name, &qt, "dynamic", "rtn"), PQ_OK);
            pq_qtensor_free(&qt);
        }
    const int64_t s8[1] = {8};
    float ln[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(pq_h5w_put_float(w, "esm.encoder.emb_layer_norm_after.weight", 1, s8, ln, false), PQ_OK);
    assert_int_equal(pq_h5w_provenance(w, "command_line", "proteus quantize --out '<x>&y'"), PQ_OK);
    if (trail) assert_int_equal(pq_h5w_provenance(w, "fallback_trail", trail), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
}

static const char k_trail[] =
    "[{\"attempt\": 1, \"what\": \"requested <script>alert(1)</script>\", \"recipe\": {\"precision\": \"int4\", "
    "\"group_size\": 0, \"symmetric\": true, \"per_channel\": false}, \"kept_float\": [], \"accuracy\": 0.3, "
    "\"reference_accuracy\": 0.41, \"drop\": 0.11, \"kl\": 0.5, \"bytes\": 4000, \"accepted\": false}, "
    "{\"attempt\": 2, \"what\": \"int4 -> int8\", \"recipe\": {\"precision\": \"int8\", \"per_channel\": true, "
    "\"symmetric\": true}, \"kept_float\": [\"esm.encoder.layer.1.output.dense.weight\"], \"accuracy\": 0.405, "
    "\"reference_accuracy\": 0.41, \"drop\": 0.005, \"kl\": 0.02, \"bytes\": 8000, \"accepted\": true}]";

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_run(void **state)
{
    (void)state;
    char model[400], out[400];
    path_in(model, sizeof model, "tiny.h5");
    path_in(out, sizeof out, "tiny.html");
    write_model(model, k_trail);
    pq_report_opts o = {.model = model, .out = out};
    assert_int_equal(pq_report_run(&o), PQ_OK);
    char *page = read_all(out), partial[420];
    assert_non_null(page);
    snprintf(partial, sizeof partial, "%s.partial", out);
    assert_false(exists(partial));
    /* 12 weight-SQNR cells, none for output SQNR or sensitivity without their JSON */
    assert_int_equal(count(page, "class=\"cell cell-weight-sqnr\""), 12);
    assert_int_equal(count(page, "cell-output-sqnr"), 0);
    assert_int_equal(count(page, "cell-recipe\""), 12);
    /* layer 0 v is Linear 2: 20 + 10 log10(3) = 24.7712 dB; layer 0 k exact; layer 1 fc2 fp16 */
    assert_non_null(strstr(page, "data-layer=\"0\" data-linear=\"v\" data-value=\"24.7712\""));
    assert_non_null(strstr(page, "data-layer=\"0\" data-linear=\"k\" data-value=\"inf\""));
    assert_non_null(strstr(page, "data-layer=\"1\" data-linear=\"fc2\" data-value=\"nan\""));
    assert_non_null(strstr(page, "data-layer=\"1\" data-linear=\"fc2\" data-value=\"fp16\""));
    /* the trail: two rows, the second accepted; strings from the file escaped */
    assert_int_equal(count(page, "<tr class=\"trail-row"), 2);
    assert_int_equal(count(page, "<tr class=\"trail-row accepted\""), 1);
    assert_null(strstr(page, "<script"));
    assert_non_null(strstr(page, "requested &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(page, "proteus quantize --out &#39;&lt;x&gt;&amp;y&#39;"));
    assert_non_null(strstr(page, "tiny&lt;b&gt;.safetensors"));
    /* 11 int8 Linears of 8x8, 8x32 or 32x8 + scales; fp16 8x32; fp32 8 */
    assert_non_null(strstr(page, "<td class=\"txt\">int8 channel symmetric rtn</td><td>11</td>"));
    free(page);

    /* the same inputs give the same bytes, checksums verified or not */
    char out2[400];
    path_in(out2, sizeof out2, "tiny2.html");
    o.out = out2;
    o.no_verify = true;
    assert_int_equal(pq_report_run(&o), PQ_OK);
    char *a = read_all(out), *b = read_all(out2);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* A refused run leaves an existing page as it was and no .partial. */
static void assert_refused(pq_report_opts *o, pq_status want, const char *detail)
{
    char partial[420];
    snprintf(partial, sizeof partial, "%s.partial", o->out);
    FILE *f = fopen(o->out, "w");
    fputs("old page", f);
    fclose(f);
    pq_err_clear();
    assert_int_equal(pq_report_run(o), want);
    assert_detail_has(detail, NULL);
    char *s = read_all(o->out);
    assert_string_equal(s, "old page");
    free(s);
    assert_false(exists(partial));
}

static void test_refusals(void **state)
{
    (void)state;
    char model[400], bad[400], out[400], text[400], e[400];
    path_in(model, sizeof model, "tiny.h5");
    path_in(out, sizeof out, "refused.html");
    pq_report_opts o = {.model = model, .out = out};
    path_in(text, sizeof text, "absent.h5");
    o.model = text;
    assert_refused(&o, PQ_ERR_IO, "absent.h5");
    write_text("notes.h5", "not an HDF5 file\n");
    path_in(text, sizeof text, "notes.h5");
    assert_refused(&o, PQ_ERR_FORMAT, "notes.h5");
    path_in(bad, sizeof bad, "badtrail.h5");
    write_model(bad, "[{\"attempt\": \"first\"}]");
    o.model = bad;
    assert_refused(&o, PQ_ERR_FORMAT, "fallback_trail");
    o.model = model;
    write_text("bad_eval.json", "{\"speedup\": [1]}");
    path_in(e, sizeof e, "bad_eval.json");
    o.evaluate = e;
    assert_refused(&o, PQ_ERR_FORMAT, "bad_eval.json: speedup");
    o.evaluate = NULL;
    o.optimize = e;
    o.out = e; /* --out names an input */
    pq_err_clear();
    assert_int_equal(pq_report_run(&o), PQ_ERR_CONFIG);
    char *s = read_all(e);
    assert_string_equal(s, "{\"speedup\": [1]}");
    free(s);
}

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/pq_report_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_colour),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
