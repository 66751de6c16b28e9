/* SPDX-License-Identifier: Apache-2.0 */
/* test_synth.c - synthetic ESM-2 checkpoints: determinism, names/shapes,
 * rotary inv_freq against torch, weight statistics, and reading a freshly
 * written one tensor by tensor without keeping it mapped. */
#include <math.h>
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
#include "format/esm2.h"
#include "format/safetensors.h"
#include "format/synth.h"

static char *s_dir, *g_f32, *g_f16;

static int synth_setup(void **state)
{
    (void)state;
    s_dir = tu_mkdtemp();
    g_f32 = tu_path(s_dir, "t6_f32.safetensors");
    g_f16 = tu_path(s_dir, "t6_f16.safetensors");
    const pq_esm2_arch *t6 = pq_esm2_arch_find("esm2_t6_8M_UR50D");
    if (pq_synth_write(t6, 42, PQ_DT_F32, g_f32) != PQ_OK) return -1;
    if (pq_synth_write(t6, 42, PQ_DT_F16, g_f16) != PQ_OK) return -1;
    return 0;
}

static int synth_teardown(void **state)
{
    (void)state;
    tu_rm_rf(s_dir);
    free(s_dir);
    free(g_f32);
    free(g_f16);
    return 0;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void test_determinism(void **state)
{
    (void)state;
    const pq_esm2_arch *t6 = pq_esm2_arch_find("t6_8M");
    char *b = tu_path(s_dir, "again.safetensors");
    char *c = tu_path(s_dir, "seed43.safetensors");
    /* tiny row blocks: the bytes must not depend on the blocking */
    assert_int_equal(pq_synth_write_blocked(t6, 42, PQ_DT_F32, b, 4096), PQ_OK);
    assert_int_equal(pq_synth_write(t6, 43, PQ_DT_F32, c), PQ_OK);
    size_t na, nb, nc;
    unsigned char *A = slurp(g_f32, &na), *B = slurp(b, &nb), *C = slurp(c, &nc);
    assert_int_equal(na, nb);
    assert_memory_equal(A, B, na);
    /* a different seed: same layout, different values almost everywhere */
    assert_int_equal(na, nc);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | A[i];
    size_t same = 0, n_words = (na - 8 - hlen) / 4;
    for (size_t i = 0; i < n_words; i++) same += !memcmp(A + 8 + hlen + 4 * i, C + 8 + hlen + 4 * i, 4);
    /* only the inv_freq buffers (48 floats) are seed-independent */
    assert_true(same < 100);
    char *partial = tu_path(s_dir, "again.safetensors.partial");
    assert_int_not_equal(access(partial, F_OK), 0);
    free(partial);
    free(A);
    free(B);
    free(C);
    free(b);
    free(c);
}

static void test_names_shapes(void **state)
{
    (void)state;
    static tu_tensor want[6 * 17 + 12];
    int n = tu_esm2_tensors(6, 320, 16, 1, 1, 0, want);
    const char *files[2] = {g_f32, g_f16};
    for (int f = 0; f < 2; f++) {
        pq_st_model *m = NULL;
        assert_int_equal(pq_st_open(files[f], &m), PQ_OK);
        assert_int_equal(pq_st_count(m), n);
        assert_int_equal(n, 112);
        for (int i = 0; i < n; i++) {
            const pq_st_tensor *t = pq_st_find(m, want[i].name);
            if (!t) fail_msg("missing %s", want[i].name);
            assert_int_equal(t->ndim, want[i].ndim);
            for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], want[i].shape[d]);
            assert_int_equal(t->dtype, f == 0 ? PQ_DT_F32 : PQ_DT_F16);
        }
        pq_esm2_config c;
        assert_int_equal(pq_esm2_detect(m, &c), PQ_OK);
        assert_string_equal(c.arch->name, "esm2_t6_8M_UR50D");
        pq_st_close(m);
    }
    /* the file size is the header plus the parameter bytes: esm2.md gives
     * 7,512,474 parameters, plus 48 inv_freq floats */
    struct stat st;
    assert_int_equal(stat(g_f32, &st), 0);
    size_t na;
    unsigned char *A = slurp(g_f32, &na);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | A[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal((uint64_t)st.st_size, 8 + hlen + 4 * (7512474ULL + 48));
    free(A);
}

/* torch 1.13: (1/(10000**(torch.arange(0,hd,2).float()/hd))).half().float() */
static const float torch_hd16[8] = {0x1p+0f, 0x1.43cp-2f, 0x1.998p-4f, 0x1.03p-5f,
                                    0x1.47cp-7f, 0x1.9e8p-9f, 0x1.064p-10f, 0x1.4b8p-12f};
static const float torch_hd32[16] = {
    0x1p+0f, 0x1.2p-1f, 0x1.43cp-2f, 0x1.6c4p-3f, 0x1.998p-4f, 0x1.cccp-5f, 0x1.03p-5f, 0x1.234p-6f,
    0x1.47cp-7f, 0x1.708p-8f, 0x1.9e8p-9f, 0x1.d24p-10f, 0x1.064p-10f, 0x1.26cp-11f, 0x1.4b8p-12f, 0x1.75p-13f};
static const float torch_hd64[32] = {
    0x1p+0f, 0x1.8p-1f, 0x1.2p-1f, 0x1.afcp-2f, 0x1.43cp-2f, 0x1.e5cp-3f, 0x1.6c4p-3f, 0x1.11p-3f,
    0x1.998p-4f, 0x1.334p-4f, 0x1.cccp-5f, 0x1.598p-5f, 0x1.03p-5f, 0x1.848p-6f, 0x1.234p-6f, 0x1.b5p-7f,
    0x1.47cp-7f, 0x1.eb8p-8f, 0x1.708p-8f, 0x1.144p-8f, 0x1.9e8p-9f, 0x1.36cp-9f, 0x1.d24p-10f, 0x1.5d8p-10f,
    0x1.064p-10f, 0x1.894p-11f, 0x1.26cp-11f, 0x1.ba4p-12f, 0x1.4b8p-12f, 0x1.f14p-13f, 0x1.75p-13f, 0x1.17cp-13f};

static void test_inv_freq(void **state)
{
    (void)state;
    float v[64];
    pq_esm2_inv_freq(64, v);
    /* esm2.md 6.1: published values of an HF hd=64 checkpoint (6 digits) */
    static const double published[6] = {1.0, 0.75, 0.5625, 0.421631, 0.316162, 0.237183};
    for (int i = 0; i < 6; i++) assert_true(fabs(v[i] - published[i]) <= 5e-7);
    assert_true(v[1] == 0.75f);
    for (int i = 0; i < 32; i++) assert_true(v[i] == torch_hd64[i]);
    pq_esm2_inv_freq(32, v);
    for (int i = 0; i < 16; i++) assert_true(v[i] == torch_hd32[i]);
    pq_esm2_inv_freq(16, v);
    for (int i = 0; i < 8; i++) assert_true(v[i] == torch_hd16[i]);

    /* in both synthetic files, every layer holds the torch values */
    const char *files[2] = {g_f32, g_f16};
    for (int f = 0; f < 2; f++) {
        pq_st_model *m = NULL;
        assert_int_equal(pq_st_open(files[f], &m), PQ_OK);
        for (int l = 0; l < 6; l++) {
            char nm[128];
            pq_esm2_name(PQ_ESM2_INV_FREQ, l, nm, sizeof nm);
            const pq_st_tensor *t = pq_st_find(m, nm);
            assert_non_null(t);
            assert_int_equal(pq_st_read_rows_f32(m, t, 0, 1, v), PQ_OK);
            for (int i = 0; i < 8; i++) assert_true(v[i] == torch_hd16[i]);
        }
        pq_st_close(m);
    }
}

static float *read_all(const pq_st_model *m, const char *name, int64_t *n)
{
    const pq_st_tensor *t = pq_st_find(m, name);
    if (!t) fail_msg("missing %s", name);
    float *x = malloc((size_t)t->n_elems * sizeof *x);
    int64_t rows = t->ndim >= 2 ? t->shape[0] : 1;
    assert_int_equal(pq_st_read_rows_f32(m, t, 0, rows, x), PQ_OK);
    *n = t->n_elems;
    return x;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef struct moments { double n, s1, s2, s4, maxabs; } moments;

static void acc(moments *mo, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        mo->n += 1;
        mo->s1 += v;
        mo->s2 += v * v;
        mo->s4 += v * v * v * v;
        if (fabs(v) > mo->maxabs) mo->maxabs = fabs(v);
    }
}

static double mean_of(const moments *m) { return m->s1 / m->n; }
static double std_of(const moments *m) { double u = mean_of(m); return sqrt(m->s2 / m->n - u * u); }

static void test_statistics(void **state)
{
    (void)state;
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(g_f32, &m), PQ_OK);
    static const pq_esm2_role lin[6] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2};
    char nm[160];
    int64_t n;
    moments lw = {0};
    int outlier_rows = 0, rows_seen = 0;
    for (int l = 0; l < 6; l++) {
        for (int r = 0; r < 6; r++) {
            pq_esm2_name(lin[r], l, nm, sizeof nm);
            float *x = read_all(m, nm, &n);
            acc(&lw, x, n);
            const pq_st_tensor *t = pq_st_find(m, nm);
            int64_t rows = t->shape[0], cols = t->shape[1];
            for (int64_t i = 0; i < rows; i++) {
                double ss = 0;
                for (int64_t j = 0; j < cols; j++) ss += (double)x[i * cols + j] * x[i * cols + j];
                outlier_rows += sqrt(ss / (double)cols) > 0.08; /* 4 sigma row RMS */
                rows_seen++;
            }
            /* robust sigma from the median |w| is the N(0, 0.02) bulk */
            for (int64_t i = 0; i < n; i++) x[i] = fabsf(x[i]);
            qsort(x, (size_t)n, sizeof *x, cmp_float);
            double sigma = x[n / 2] / 0.6744897501960817;
            if (sigma < 0.0192 || sigma > 0.0212) fail_msg("%s: robust sigma %g, want ~0.02", nm, sigma);
            free(x);
        }
    }
    assert_true(fabs(mean_of(&lw)) < 5e-4);
    double sd = std_of(&lw);
    /* the outliers inflate the plain std above 0.02 but not wildly */
    if (sd < 0.021 || sd > 0.05) fail_msg("Linear std %g", sd);
    double kurt = (lw.s4 / lw.n) / ((lw.s2 / lw.n) * (lw.s2 / lw.n));
    if (kurt < 6.0) fail_msg("Linear weights not heavy-tailed: kurtosis %g", kurt);
    if (lw.maxabs < 0.3) fail_msg("no large single values: max |w| %g", lw.maxabs);
    /* about 0.5% outlier rows (plus rows crossing many outlier columns: none at 0.5%) */
    double frac = (double)outlier_rows / rows_seen;
    if (frac < 0.001 || frac > 0.02) fail_msg("outlier row fraction %g", frac);

    /* LayerNorm weights near 1, biases small, embedding wider */
    moments lnw = {0}, bias = {0}, emb = {0};
    static const pq_esm2_role lnr[2] = {PQ_ESM2_LN_ATTN_W, PQ_ESM2_LN_FFN_W};
    static const pq_esm2_role br[6] = {PQ_ESM2_Q_BIAS, PQ_ESM2_K_BIAS, PQ_ESM2_V_BIAS,
                                       PQ_ESM2_OUT_BIAS, PQ_ESM2_FC1_BIAS, PQ_ESM2_FC2_BIAS};
    for (int l = 0; l < 6; l++) {
        for (int r = 0; r < 2; r++) {
            float *x = read_all(m, pq_esm2_name(lnr[r], l, nm, sizeof nm), &n);
            acc(&lnw, x, n);
            free(x);
        }
        for (int r = 0; r < 6; r++) {
            float *x = read_all(m, pq_esm2_name(br[r], l, nm, sizeof nm), &n);
            acc(&bias, x, n);
            free(x);
        }
    }
    float *x = read_all(m, "esm.embeddings.word_embeddings.weight", &n);
    acc(&emb, x, n);
    free(x);
    if (fabs(mean_of(&lnw) - 1.0) > 0.005 || fabs(std_of(&lnw) - 0.05) > 0.005)
        fail_msg("LayerNorm weights mean %g std %g", mean_of(&lnw), std_of(&lnw));
    if (fabs(mean_of(&bias)) > 0.001 || fabs(std_of(&bias) - 0.01) > 0.001)
        fail_msg("biases mean %g std %g", mean_of(&bias), std_of(&bias));
    if (fabs(std_of(&emb) - 0.1) > 0.005) fail_msg("embedding std %g", std_of(&emb));
    pq_st_close(m);
}

static void test_f16_matches_f32(void **state)
{
    (void)state;
    pq_st_model *a = NULL, *b = NULL;
    assert_int_equal(pq_st_open(g_f32, &a), PQ_OK);
    assert_int_equal(pq_st_open(g_f16, &b), PQ_OK);
    assert_int_equal(pq_st_count(a), pq_st_count(b));
    for (int64_t i = 0; i < pq_st_count(a); i++) {
        const pq_st_tensor *ta = pq_st_get(a, i), *tb = pq_st_get(b, i);
        assert_string_equal(ta->name, tb->name);
        const unsigned char *pa = pq_st_data(a, ta), *pb = pq_st_data(b, tb);
        for (int64_t e = 0; e < ta->n_elems; e++) {
            float f;
            uint16_t h;
            memcpy(&f, pa + 4 * e, 4);
            memcpy(&h, pb + 2 * e, 2);
            if (pq_f32_to_f16(f) != h) fail_msg("%s[%lld]: f16 0x%04x vs f32 %a", ta->name, (long long)e, h, f);
        }
    }
    pq_st_close(a);
    pq_st_close(b);
}

static void test_custom_and_errors(void **state)
{
    (void)state;
    pq_esm2_arch tiny = {"tiny", 3, 16, 4, 64, 33, 0};
    char *p = tu_path(s_dir, "tiny.safetensors");
    assert_int_equal(pq_synth_write(&tiny, 1, PQ_DT_F16, p), PQ_OK);
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(p, &m), PQ_OK);
    pq_esm2_config c;
    assert_int_equal(pq_esm2_detect(m, &c), PQ_OK);
    assert_null(c.arch);
    assert_int_equal(c.num_layers, 3);
    assert_int_equal(c.embed_dim, 16);
    assert_int_equal(c.attention_heads, 4);
    assert_int_equal(c.head_dim, 4);
    pq_st_close(m);

    const pq_esm2_arch *t6 = pq_esm2_arch_find("8M");
    pq_err_clear();
    assert_int_equal(pq_synth_write(t6, 1, PQ_DT_BF16, p), PQ_ERR_CONFIG);
    pq_err_clear();
    pq_esm2_arch bad = {"bad", 2, 10, 4, 40, 33, 0};
    assert_int_equal(pq_synth_write(&bad, 1, PQ_DT_F32, p), PQ_ERR_CONFIG);
    pq_err_clear();
    /* renaming onto a directory fails: I/O error, no partial file left */
    char *d = tu_path(s_dir, "is_a_dir");
    assert_int_equal(mkdir(d, 0755), 0);
    assert_int_equal(pq_synth_write(&tiny, 1, PQ_DT_F32, d), PQ_ERR_IO);
    assert_non_null(strstr(pq_err_detail(), "is_a_dir"));
    pq_err_clear();
    char *dp = tu_path(s_dir, "is_a_dir.partial");
    assert_int_not_equal(access(dp, F_OK), 0);
    char *nodir = tu_path(s_dir, "no/such/dir.safetensors");
    assert_int_equal(pq_synth_write(&tiny, 1, PQ_DT_F32, nodir), PQ_ERR_IO);
    pq_err_clear();
    free(nodir);
    free(dp);
    free(d);
    free(p);
}

/* Resident kB of the mapping of `path` in this process (/proc/self/smaps). */
static long mapped_kb(const char *path)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[4096];
    long kb = 0;
    int in = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = strstr(line, path) != NULL;
            continue;
        }
        if (in && !strncmp(line, "Rss:", 4)) kb += atol(line + 4);
    }
    fclose(f);
    return kb;
}

/* Every tensor read and released in turn: nothing stays mapped, however
 * large the page-cache folios of a file just written are (a fault maps
 * the whole folio, up to 2 MiB around a 1 kB float tensor). */
static void test_release_unmaps(void **state)
{
    (void)state;
    pq_st_model *m = NULL;
    assert_int_equal(pq_st_open(g_f32, &m), PQ_OK);
    long peak = 0;
    for (int64_t i = 0; i < pq_st_count(m); i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        int64_t cols = t->ndim >= 2 ? t->n_elems / t->shape[0] : t->n_elems;
        float *row = malloc((size_t)(cols ? cols : 1) * sizeof *row);
        assert_non_null(row);
        assert_int_equal(pq_st_read_rows_f32(m, t, 0, 1, row), PQ_OK);
        free(row);
        long kb = mapped_kb(g_f32);
        if (kb > peak) peak = kb;
        pq_st_release(m, t);
    }
    /* the checkpoint is 30 MB: it was mapped piecewise, and none is left */
    assert_true(peak > 0);
    assert_true(mapped_kb(g_f32) < 256);
    pq_st_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_names_shapes),
        cmocka_unit_test(test_inv_freq),
        cmocka_unit_test(test_statistics),
        cmocka_unit_test(test_f16_matches_f32),
        cmocka_unit_test(test_custom_and_errors),
        cmocka_unit_test(test_release_unmaps),
    };
    return cmocka_run_group_tests(tests, synth_setup, synth_teardown);
}
