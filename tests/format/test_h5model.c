/* SPDX-License-Identifier: Apache-2.0 */
/* test_h5model.c - the HDF5 model writer and reader: exact round trips of
 * hand-made tensors, reproducible bytes, commit/abort, and corrupt inputs. */
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "format/h5model.h"
#include "format/h5smooth.h"
#include "format/h5util.h"
#include "base/pq_io.h"

static char tmpdir[64];

static const char *tpath(const char *name)
{
    static char buf[4][320];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static unsigned char *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void assert_same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *ba = slurp(a, &na), *bb = slurp(b, &nb);
    assert_int_equal(na, nb);
    size_t first = na;
    for (size_t i = 0; i < na; i++)
        if (ba[i] != bb[i]) {
            first = i;
            break;
        }
    if (first != na) fail_msg("%s and %s differ first at byte %zu", a, b, first);
    free(ba);
    free(bb);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pq_h5test_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tpath(e->d_name));
    if (d) closedir(d);
    rmdir(tmpdir);
    return 0;
}

static pq_h5_meta test_meta(int num_ranks)
{
    pq_h5_meta m = {
        .architecture = "esm2_t6_8M_UR50D",
        .model_name = "esm2_t6_8M_proteus_mlm.safetensors",
        .source_sha256 = "00ff11ee22dd33cc44bb55aa66997788",
        .source_hash_chunk_bytes = 67108864,
        .created_by = "proteus 0.1.0",
        .config_json = "{\"bits\": 8, \"scheme\": \"w8a16\"}",
        .num_ranks = num_ranks,
    };
    m.cfg.num_layers = 6;
    m.cfg.embed_dim = 320;
    m.cfg.attention_heads = 20;
    m.cfg.head_dim = 16;
    m.cfg.ffn_dim = 1280;
    m.cfg.vocab_size = 33;
    m.cfg.layer_norm_eps = 1e-5f;
    m.cfg.token_dropout = true;
    m.cfg.has_contact_head = true;
    m.cfg.has_decoder = false;
    return m;
}

/* ---- hand-made tensors ---- */

/* 8-bit, per channel, asymmetric: 3 x 5. */
static const int8_t c8_codes[15] = {-128, -1, 0, 1, 127,
                                    5, -5, 100, -100, 0,
                                    127, 126, -127, 3, 2};
static const float c8_scale[3] = {0.5f, 0.25f, 2.0f};
static const int32_t c8_zp[3] = {3, -128, 0};
/* (q - zp) * scale, by hand. */
static const float c8_deq[15] = {-65.5f, -2.0f, -1.5f, -1.0f, 62.0f,
                                 33.25f, 30.75f, 57.0f, 7.0f, 32.0f,
                                 254.0f, 252.0f, -254.0f, 6.0f, 4.0f};

/* 8-bit, per tensor, symmetric: 2 x 3, scale 0.125. */
static const int8_t t8_codes[6] = {-127, 0, 127, 1, -1, 64};
static const float t8_scale[1] = {0.125f};
static const float t8_deq[6] = {-15.875f, 0.0f, 15.875f, 0.125f, -0.125f, 8.0f};

/* 4-bit, group 32, asymmetric: 2 x 39 (odd: the last byte has a pad nibble),
 * 2 groups per row (32 + 7 columns). */
enum { G4_ROWS = 2, G4_COLS = 39, G4_GS = 32, G4_NG = 2, G4_RB = 20 };
static const float g4_scale[G4_ROWS * G4_NG] = {0.0625f, 1.5f, 0.375f, 3.0f};
static const int32_t g4_zp[G4_ROWS * G4_NG] = {-8, 7, 0, -3};

static int g4_code(int r, int c)
{
    if (r == 0 && c == 0) return -8;
    if (r == 0 && c == 1) return 7;
    return ((r * 5 + c * 3) % 16) - 8;
}

/* Packing done here independently of the kernels: low nibble = even column,
 * offset binary, pad nibble 8. */
static void g4_pack(uint8_t *out)
{
    for (int r = 0; r < G4_ROWS; r++)
        for (int j = 0; j < G4_RB; j++) {
            int lo = g4_code(r, 2 * j) + 8;
            int hi = 2 * j + 1 < G4_COLS ? g4_code(r, 2 * j + 1) + 8 : 8;
            out[r * G4_RB + j] = (uint8_t)(lo | hi << 4);
        }
}

static float g4_deq(int r, int c)
{
    int g = c / G4_GS;
    return (float)(g4_code(r, c) - g4_zp[r * G4_NG + g]) * g4_scale[r * G4_NG + g];
}

static const float f32_vals[6] = {1.5f, -2.25f, 3e-8f, 1e30f, -0.0f, 7.0f};
/* float32 inputs and the binary16 values they round to (RNE), by hand. */
static const float f16_in[7] = {1.0f, 0.1f, 65504.0f, 1e-7f, 70000.0f, 2049.0f, 2051.0f};
static const float f16_out[7] = {1.0f, 0.0999755859375f, 65504.0f, 1.1920928955078125e-07f,
                                 INFINITY, 2048.0f, 2052.0f};

static void fill_qt(pq_qtensor *qt, const pq_qspec *spec, int64_t rows, int64_t cols,
                    const void *codes, const float *scale, const int32_t *zp)
{
    assert_int_equal(pq_qtensor_alloc(qt, spec, rows, cols), PQ_OK);
    memcpy(qt->codes, codes, (size_t)(rows * qt->code_row_bytes));
    memcpy(qt->scale, scale, (size_t)qt->n_scales * sizeof(float));
    if (zp) memcpy(qt->zero_point, zp, (size_t)qt->n_scales * sizeof(int32_t));
}

static const pq_qspec spec_c8 = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = false};
static const pq_qspec spec_t8 = {.bits = 8, .gran = PQ_GRAN_TENSOR, .symmetric = true};
static const pq_qspec spec_g4 = {.bits = 4, .gran = PQ_GRAN_GROUP, .group_size = G4_GS,
                                 .symmetric = false};

/* Write the reference file: two float tensors, three quantized ones. When
 * blocks is true the quantized tensors go through begin/rows/end in
 * out-of-order row blocks, else through put_qtensor. */
/* Rows of a begun tensor. placed: the codes go into the .partial file through
 * a second descriptor at pq_h5w_codes_offset() (as a worker on rank 0's
 * machine writes them) and the writer gets codes NULL. */
static void put_rows(pq_h5w *w, const char *name, int64_t row0, int64_t n, int64_t row_bytes,
                     const void *codes, const float *scale, const int32_t *zp, bool placed)
{
    if (placed) {
        uint64_t off = 0;
        assert_int_equal(pq_h5w_codes_offset(w, name, &off), PQ_OK);
        assert_true(off > 0);
        int fd = open(pq_h5w_partial_path(w), O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pq_pwrite_all(fd, codes, (size_t)(n * row_bytes), off + (uint64_t)(row0 * row_bytes)), 0);
        close(fd);
        codes = NULL;
    }
    assert_int_equal(pq_h5w_quant_rows(w, name, row0, n, codes, scale, zp), PQ_OK);
}

static void write_reference(const char *path, int num_ranks, bool blocks, bool placed)
{
    pq_h5_meta meta = test_meta(num_ranks);
    pq_h5w *w = NULL;
    uint8_t g4[G4_ROWS * G4_RB];
    g4_pack(g4);
    assert_int_equal(pq_h5w_create(path, &meta, &w), PQ_OK);
    const int64_t s32[2] = {2, 3}, s16[1] = {7};
    assert_int_equal(pq_h5w_put_float(w, "a.float32", 2, s32, f32_vals, false), PQ_OK);
    assert_int_equal(pq_h5w_put_float(w, "b.float16", 1, s16, f16_in, true), PQ_OK);

    pq_qmetrics m = {.sqnr_db = 41.25, .rel_l2 = 0.0086, .max_abs_err = 0.03125,
                     .sum_sq = 12.5, .err_sq = 0.000925, .n_nonfinite = 2};
    if (!blocks) {
        pq_qtensor qt;
        fill_qt(&qt, &spec_c8, 3, 5, c8_codes, c8_scale, c8_zp);
        qt.metrics = m;
        assert_int_equal(pq_h5w_put_qtensor(w, "c.q8_channel_asym", &qt, "w8a16", "rtn"),
                         PQ_OK);
        pq_qtensor_free(&qt);
        fill_qt(&qt, &spec_t8, 2, 3, t8_codes, t8_scale, NULL);
        qt.metrics = m;
        assert_int_equal(pq_h5w_put_qtensor(w, "d.q8_tensor_sym", &qt, "w8a8", "minmax"),
                         PQ_OK);
        pq_qtensor_free(&qt);
        fill_qt(&qt, &spec_g4, G4_ROWS, G4_COLS, g4, g4_scale, g4_zp);
        qt.metrics = m;
        assert_int_equal(pq_h5w_put_qtensor(w, "e.q4_group_asym", &qt, "w4a16", "gptq"),
                         PQ_OK);
        pq_qtensor_free(&qt);
    } else {
        /* Row blocks in the order results might arrive (the same tensors in
         * the same order as put_qtensor, so the same objects are created). */
        assert_int_equal(pq_h5w_quant_begin(w, "c.q8_channel_asym", &spec_c8, 3, 5, "w8a16",
                                            "rtn"), PQ_OK);
        put_rows(w, "c.q8_channel_asym", 2, 1, 5, c8_codes + 10, c8_scale + 2, c8_zp + 2, placed);
        put_rows(w, "c.q8_channel_asym", 0, 2, 5, c8_codes, c8_scale, c8_zp, placed);
        assert_int_equal(pq_h5w_quant_end(w, "c.q8_channel_asym", &m), PQ_OK);
        assert_int_equal(pq_h5w_quant_begin(w, "d.q8_tensor_sym", &spec_t8, 2, 3, "w8a8",
                                            "minmax"), PQ_OK);
        put_rows(w, "d.q8_tensor_sym", 1, 1, 3, t8_codes + 3, NULL, NULL, placed);
        put_rows(w, "d.q8_tensor_sym", 0, 1, 3, t8_codes, t8_scale, NULL, placed);
        assert_int_equal(pq_h5w_quant_end(w, "d.q8_tensor_sym", &m), PQ_OK);
        assert_int_equal(pq_h5w_quant_begin(w, "e.q4_group_asym", &spec_g4, G4_ROWS, G4_COLS,
                                            "w4a16", "gptq"), PQ_OK);
        put_rows(w, "e.q4_group_asym", 1, 1, G4_RB, g4 + G4_RB, g4_scale + G4_NG, g4_zp + G4_NG, placed);
        put_rows(w, "e.q4_group_asym", 0, 1, G4_RB, g4, g4_scale, g4_zp, placed);
        assert_int_equal(pq_h5w_quant_end(w, "e.q4_group_asym", &m), PQ_OK);
    }
    assert_int_equal(pq_h5w_provenance(w, "command_line", "proteus quantize -o x.h5"), PQ_OK);
    assert_int_equal(pq_h5w_provenance(w, "seed", "1234"), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
}

static void test_roundtrip(void **state)
{
    (void)state;
    const char *p = tpath("rt.h5");
    write_reference(p, 3, false, false);
    assert_true(exists(p));
    assert_false(exists(tpath("rt.h5.partial")));

    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(p, &r), PQ_OK);
    const pq_h5_meta *m = pq_h5r_meta(r);
    assert_string_equal(m->architecture, "esm2_t6_8M_UR50D");
    assert_string_equal(m->model_name, "esm2_t6_8M_proteus_mlm.safetensors");
    assert_string_equal(m->source_sha256, "00ff11ee22dd33cc44bb55aa66997788");
    assert_int_equal(m->source_hash_chunk_bytes, 67108864);
    assert_int_equal(m->format_version, PQ_FORMAT_VERSION);
    assert_string_equal(m->created_by, "proteus 0.1.0");
    assert_string_equal(m->config_json, "{\"bits\": 8, \"scheme\": \"w8a16\"}");
    assert_int_equal(m->num_ranks, 3);
    assert_int_equal(m->cfg.num_layers, 6);
    assert_int_equal(m->cfg.embed_dim, 320);
    assert_int_equal(m->cfg.attention_heads, 20);
    assert_int_equal(m->cfg.head_dim, 16);
    assert_int_equal(m->cfg.ffn_dim, 1280);
    assert_int_equal(m->cfg.vocab_size, 33);
    assert_true(m->cfg.layer_norm_eps == 1e-5f);
    assert_true(m->cfg.token_dropout);
    assert_true(m->cfg.has_contact_head);
    assert_false(m->cfg.has_decoder);

    /* Entries come back sorted by name. */
    static const char *const names[] = {"a.float32", "b.float16", "c.q8_channel_asym",
                                        "d.q8_tensor_sym", "e.q4_group_asym"};
    assert_int_equal(pq_h5r_count(r), 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(pq_h5r_get(r, i)->name, names[i]);
        assert_ptr_equal(pq_h5r_find(r, names[i]), pq_h5r_get(r, i));
    }
    assert_null(pq_h5r_find(r, "zz"));
    assert_null(pq_h5r_get(r, 5));

    /* float32: exact. */
    const pq_h5r_entry *e = pq_h5r_find(r, "a.float32");
    assert_false(e->quantized);
    assert_int_equal(e->stored_dtype, PQ_DT_F32);
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 2);
    assert_int_equal(e->shape[1], 3);
    float f[64];
    assert_int_equal(pq_h5r_read_f32(r, e, f), PQ_OK);
    assert_memory_equal(f, f32_vals, sizeof f32_vals);

    /* float16: RNE-rounded values, by hand. */
    e = pq_h5r_find(r, "b.float16");
    assert_int_equal(e->stored_dtype, PQ_DT_F16);
    assert_int_equal(e->ndim, 1);
    assert_int_equal(e->shape[0], 7);
    assert_int_equal(pq_h5r_read_f32(r, e, f), PQ_OK);
    for (int i = 0; i < 7; i++)
        if (f[i] != f16_out[i]) fail_msg("f16[%d] = %.9g, expected %.9g", i, f[i], f16_out[i]);

    /* 8-bit channel asymmetric. */
    pq_qtensor qt;
    e = pq_h5r_find(r, "c.q8_channel_asym");
    assert_true(e->quantized);
    assert_int_equal(e->stored_dtype, PQ_DT_I8);
    assert_int_equal(e->spec.bits, 8);
    assert_int_equal(e->spec.gran, PQ_GRAN_CHANNEL);
    assert_false(e->spec.symmetric);
    assert_string_equal(e->scheme, "w8a16");
    assert_string_equal(e->method, "rtn");
    assert_true(e->has_metrics);
    assert_false(e->has_act_scale);
    assert_int_equal(e->shape[0], 3);
    assert_int_equal(e->shape[1], 5);
    assert_int_equal(pq_h5r_read_qtensor(r, e, &qt), PQ_OK);
    assert_memory_equal(qt.codes, c8_codes, sizeof c8_codes);
    assert_memory_equal(qt.scale, c8_scale, sizeof c8_scale);
    assert_memory_equal(qt.zero_point, c8_zp, sizeof c8_zp);
    assert_true(qt.metrics.sqnr_db == 41.25 && qt.metrics.n_nonfinite == 2);
    pq_qtensor_free(&qt);
    assert_int_equal(pq_h5r_read_f32(r, e, f), PQ_OK);
    assert_memory_equal(f, c8_deq, sizeof c8_deq);

    /* 8-bit tensor symmetric. */
    e = pq_h5r_find(r, "d.q8_tensor_sym");
    assert_int_equal(e->spec.gran, PQ_GRAN_TENSOR);
    assert_true(e->spec.symmetric);
    assert_string_equal(e->method, "minmax");
    assert_int_equal(pq_h5r_read_qtensor(r, e, &qt), PQ_OK);
    assert_memory_equal(qt.codes, t8_codes, sizeof t8_codes);
    assert_true(qt.scale[0] == 0.125f);
    assert_null(qt.zero_point);
    pq_qtensor_free(&qt);
    assert_int_equal(pq_h5r_read_f32(r, e, f), PQ_OK);
    assert_memory_equal(f, t8_deq, sizeof t8_deq);

    /* 4-bit group asymmetric. */
    e = pq_h5r_find(r, "e.q4_group_asym");
    assert_int_equal(e->stored_dtype, PQ_DT_U8);
    assert_int_equal(e->spec.bits, 4);
    assert_int_equal(e->spec.gran, PQ_GRAN_GROUP);
    assert_int_equal(e->spec.group_size, G4_GS);
    assert_int_equal(e->shape[1], G4_COLS);
    uint8_t g4[G4_ROWS * G4_RB];
    g4_pack(g4);
    assert_int_equal(g4[0], 0xF0); /* codes -8, 7 */
    assert_int_equal(pq_h5r_read_qtensor(r, e, &qt), PQ_OK);
    assert_int_equal(qt.code_row_bytes, G4_RB);
    assert_memory_equal(qt.codes, g4, sizeof g4);
    assert_memory_equal(qt.scale, g4_scale, sizeof g4_scale);
    assert_memory_equal(qt.zero_point, g4_zp, sizeof g4_zp);
    pq_qtensor_free(&qt);
    float d4[G4_ROWS * G4_COLS];
    assert_int_equal(pq_h5r_read_f32(r, e, d4), PQ_OK);
    /* A few by hand: (0,0): (-8 - -8) * 0.0625 = 0; (0,1): (7 + 8) * 0.0625 = 0.9375;
     * (0,38): code (114 % 16) - 8 = -6, group 1: (-6 - 7) * 1.5 = -19.5;
     * (1,33): code (104 % 16) - 8 = 0, group 1: (0 + 3) * 3 = 9. */
    assert_true(d4[0] == 0.0f);
    assert_true(d4[1] == 0.9375f);
    assert_true(d4[38] == -19.5f);
    assert_true(d4[G4_COLS + 33] == 9.0f);
    for (int rr = 0; rr < G4_ROWS; rr++)
        for (int c = 0; c < G4_COLS; c++)
            if (d4[rr * G4_COLS + c] != g4_deq(rr, c))
                fail_msg("q4 (%d,%d) = %g, expected %g", rr, c, d4[rr * G4_COLS + c],
                         g4_deq(rr, c));

    pq_qmetrics qm;
    assert_int_equal(pq_h5r_read_metrics(r, "e.q4_group_asym", &qm), PQ_OK);
    assert_true(qm.sqnr_db == 41.25 && qm.rel_l2 == 0.0086 && qm.max_abs_err == 0.03125 &&
                qm.sum_sq == 12.5 && qm.err_sq == 0.000925 && qm.n_nonfinite == 2);
    assert_int_equal(pq_h5r_read_metrics(r, "a.float32", &qm), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "/metrics/a.float32"));
    pq_err_clear();

    char *v = NULL;
    assert_int_equal(pq_h5r_provenance(r, "seed", &v), PQ_OK);
    assert_string_equal(v, "1234");
    free(v);
    assert_int_equal(pq_h5r_provenance(r, "nope", &v), PQ_OK);
    assert_null(v);
    pq_h5r_close(r);
}

static void test_row_blocks_equal_one_shot(void **state)
{
    (void)state;
    write_reference(tpath("oneshot.h5"), 2, false, false);
    write_reference(tpath("blocks.h5"), 2, true, false);
    assert_same_bytes(tpath("oneshot.h5"), tpath("blocks.h5"));
    /* codes written into the file by another descriptor: the same bytes */
    write_reference(tpath("placed.h5"), 2, true, true);
    assert_same_bytes(tpath("oneshot.h5"), tpath("placed.h5"));
}

/* Two tensors open at once, blocks interleaved: same content as one-shot. */
static void test_interleaved_tensors(void **state)
{
    (void)state;
    pq_h5_meta meta = test_meta(1);
    pq_h5w *w = NULL;
    const char *p = tpath("inter.h5");
    assert_int_equal(pq_h5w_create(p, &meta, &w), PQ_OK);
    assert_int_equal(pq_h5w_quant_begin(w, "c", &spec_c8, 3, 5, "w8a16", "rtn"), PQ_OK);
    assert_int_equal(pq_h5w_quant_begin(w, "d", &spec_t8, 2, 3, "w8a8", "rtn"), PQ_OK);
    assert_int_equal(pq_h5w_quant_rows(w, "d", 1, 1, t8_codes + 3, NULL, NULL), PQ_OK);
    assert_int_equal(pq_h5w_quant_rows(w, "c", 1, 2, c8_codes + 5, c8_scale + 1, c8_zp + 1),
                     PQ_OK);
    assert_int_equal(pq_h5w_quant_rows(w, "d", 0, 1, t8_codes, t8_scale, NULL), PQ_OK);
    assert_int_equal(pq_h5w_quant_end(w, "d", NULL), PQ_OK);
    assert_int_equal(pq_h5w_quant_rows(w, "c", 0, 1, c8_codes, c8_scale, c8_zp), PQ_OK);
    assert_int_equal(pq_h5w_quant_end(w, "c", NULL), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);

    pq_h5r *r = NULL;
    float f[16];
    assert_int_equal(pq_h5r_open(p, &r), PQ_OK);
    assert_false(pq_h5r_find(r, "c")->has_metrics);
    assert_int_equal(pq_h5r_read_f32(r, pq_h5r_find(r, "c"), f), PQ_OK);
    assert_memory_equal(f, c8_deq, sizeof c8_deq);
    assert_int_equal(pq_h5r_read_f32(r, pq_h5r_find(r, "d"), f), PQ_OK);
    assert_memory_equal(f, t8_deq, sizeof t8_deq);
    pq_h5r_close(r);
}

/* Enough tensors that HDF5 moves /tensors to dense link storage (> 8 links):
 * names still round-trip, sorted, and the bytes stay reproducible. */
static void write_many(const char *path, int perturb)
{
    pq_h5_meta meta = test_meta(1);
    pq_h5w *w = NULL;
    char name[64];
    float v[3];
    const int64_t shp[1] = {3};
    mallopt(M_PERTURB, perturb);
    assert_int_equal(pq_h5w_create(path, &meta, &w), PQ_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "esm.encoder.layer.%d.attention.output.dense.bias", i);
        for (int k = 0; k < 3; k++) v[k] = (float)i + 0.25f * (float)k; /* exact in fp16 */
        assert_int_equal(pq_h5w_put_float(w, name, 1, shp, v, i % 2 == 0), PQ_OK);
        assert_int_equal(pq_h5w_provenance(w, "progress", name), PQ_OK);
    }
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
    mallopt(M_PERTURB, 0);
}

static void test_many_tensors(void **state)
{
    (void)state;
    char a[256], b[256];
    snprintf(a, sizeof a, "%s", tpath("many1.h5"));
    snprintf(b, sizeof b, "%s", tpath("many2.h5"));
    write_many(a, 0x21);
    write_many(b, 0x5e);
    assert_same_bytes(a, b);

    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(a, &r), PQ_OK);
    assert_int_equal(pq_h5r_count(r), 40);
    for (int64_t i = 1; i < 40; i++)
        assert_true(strcmp(pq_h5r_get(r, i - 1)->name, pq_h5r_get(r, i)->name) < 0);
    char name[64];
    float v[3];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "esm.encoder.layer.%d.attention.output.dense.bias", i);
        const pq_h5r_entry *e = pq_h5r_find(r, name);
        assert_non_null(e);
        assert_int_equal(e->stored_dtype, i % 2 == 0 ? PQ_DT_F16 : PQ_DT_F32);
        assert_int_equal(pq_h5r_read_f32(r, e, v), PQ_OK);
        for (int k = 0; k < 3; k++) assert_true(v[k] == (float)i + 0.25f * (float)k);
    }
    /* A provenance key rewritten 40 times keeps the last value. */
    char *pv = NULL;
    assert_int_equal(pq_h5r_provenance(r, "progress", &pv), PQ_OK);
    assert_string_equal(pv, "esm.encoder.layer.39.attention.output.dense.bias");
    free(pv);
    pq_h5r_close(r);
}

static void test_deterministic_bytes(void **state)
{
    (void)state;
    /* Different malloc garbage and a different second: nothing of either may
     * reach the file. */
    mallopt(M_PERTURB, 0x11);
    write_reference(tpath("run1.h5"), 4, false, false);
    struct timespec ts = {1, 100000000};
    nanosleep(&ts, NULL);
    mallopt(M_PERTURB, 0x6c);
    write_reference(tpath("run2.h5"), 4, false, false);
    mallopt(M_PERTURB, 0);
    assert_same_bytes(tpath("run1.h5"), tpath("run2.h5"));
}

/* A float tensor of several chunks whose last chunk stops at the dataset's
 * end (300 rows of 4000 bytes: 262-row chunks), fp32 and fp16: the bytes
 * past the end in that chunk do not take malloc garbage, and the data reads
 * back through the checksums. */
static void write_edge_chunks(const char *path, const float *v)
{
    pq_h5_meta meta = test_meta(1);
    pq_h5w *w = NULL;
    const int64_t shp[2] = {300, 1000};
    assert_int_equal(pq_h5w_create(path, &meta, &w), PQ_OK);
    assert_int_equal(pq_h5w_put_float(w, "f32", 2, shp, v, false), PQ_OK);
    assert_int_equal(pq_h5w_put_float(w, "f16", 2, shp, v, true), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
}

static void test_edge_chunks_deterministic(void **state)
{
    (void)state;
    float *v = malloc(300 * 1000 * sizeof *v), *back = malloc(300 * 1000 * sizeof *back);
    for (int i = 0; i < 300 * 1000; i++) v[i] = (float)(i % 977) * 0.25f - 100.0f; /* exact in fp16 */
    mallopt(M_PERTURB, 0x23);
    write_edge_chunks(tpath("edge1.h5"), v);
    mallopt(M_PERTURB, 0x5a);
    write_edge_chunks(tpath("edge2.h5"), v);
    mallopt(M_PERTURB, 0);
    assert_same_bytes(tpath("edge1.h5"), tpath("edge2.h5"));
    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(tpath("edge1.h5"), &r), PQ_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(pq_h5r_read_f32(r, pq_h5r_find(r, k ? "f16" : "f32"), back), PQ_OK);
        assert_memory_equal(back, v, 300 * 1000 * sizeof *v);
    }
    pq_h5r_close(r);
    free(v);
    free(back);
}

static void test_commit_and_abort(void **state)
{
    (void)state;
    pq_h5_meta meta = test_meta(1);
    const char *fin = tpath("c.h5"), *part = tpath("c.h5.partial");
    const int64_t shp[1] = {6};
    pq_h5w *w = NULL;

    /* A stale .partial is truncated, not appended to. */
    FILE *f = fopen(part, "wb");
    assert_non_null(f);
    fputs("stale junk", f);
    fclose(f);
    assert_int_equal(pq_h5w_create(fin, &meta, &w), PQ_OK);
    assert_true(exists(part));
    assert_false(exists(fin));
    assert_int_equal(pq_h5w_put_float(w, "x", 1, shp, f32_vals, false), PQ_OK);
    assert_false(exists(fin));
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
    assert_true(exists(fin));
    assert_false(exists(part));

    /* Abort leaves neither file. */
    const char *fin2 = tpath("d.h5"), *part2 = tpath("d.h5.partial");
    assert_int_equal(pq_h5w_create(fin2, &meta, &w), PQ_OK);
    assert_int_equal(pq_h5w_put_float(w, "x", 1, shp, f32_vals, false), PQ_OK);
    pq_h5w_abort(w);
    assert_false(exists(fin2));
    assert_false(exists(part2));
    pq_h5w_abort(NULL);

    /* A tensor begun but never finished: commit refuses and cleans up. */
    assert_int_equal(pq_h5w_create(fin2, &meta, &w), PQ_OK);
    assert_int_equal(pq_h5w_quant_begin(w, "q", &spec_c8, 3, 5, "w8a16", "rtn"), PQ_OK);
    assert_int_equal(pq_h5w_quant_rows(w, "q", 0, 2, c8_codes, c8_scale, c8_zp), PQ_OK);
    /* Overlapping rows and a premature end are caller bugs. */
    assert_int_equal(pq_h5w_quant_rows(w, "q", 1, 2, c8_codes, c8_scale, c8_zp),
                     PQ_ERR_INTERNAL);
    pq_err_clear();
    assert_int_equal(pq_h5w_quant_end(w, "q", NULL), PQ_ERR_INTERNAL);
    assert_non_null(strstr(pq_err_detail(), "2 of 3 rows"));
    pq_err_clear();
    assert_int_equal(pq_h5w_put_float(w, "q", 1, shp, f32_vals, false), PQ_ERR_INTERNAL);
    pq_err_clear();
    assert_int_equal(pq_h5w_commit(w), PQ_ERR_INTERNAL);
    assert_non_null(strstr(pq_err_detail(), "begun but not ended"));
    pq_err_clear();
    assert_false(exists(fin2));
    assert_false(exists(part2));

    /* A directory that does not exist: I/O error naming the path. */
    assert_int_equal(pq_h5w_create(tpath("no/such/dir.h5"), &meta, &w), PQ_ERR_IO);
    assert_null(w);
    assert_non_null(strstr(pq_err_detail(), "no/such/dir.h5.partial"));
    pq_err_clear();
}

/* ---- corrupt inputs ---- */

static void expect_format_error(const char *path, const char *needle)
{
    pq_h5r *r = NULL;
    pq_err_clear();
    pq_status st = pq_h5r_open(path, &r);
    if (st != PQ_ERR_FORMAT)
        fail_msg("%s: status %d (%s), expected format error", path, st, pq_err_detail());
    assert_null(r);
    print_message("  %s\n", pq_err_detail());
    if (!strstr(pq_err_detail(), needle))
        fail_msg("detail '%s' does not mention '%s'", pq_err_detail(), needle);
    if (!strstr(pq_err_detail(), path))
        fail_msg("detail '%s' does not name the file", pq_err_detail());
    pq_err_clear();
}

static void copy_file(const char *from, const char *to, size_t keep)
{
    size_t n;
    unsigned char *b = slurp(from, &n);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, keep < n ? keep : n, f), keep < n ? keep : n);
    fclose(f);
    free(b);
}

/* Raw HDF5 edits of a good file, to make it bad in one precise way. */
static hid_t open_rw(const char *p)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* Adds a string attribute to object obj ("/" for the root): fixed-length
 * of size bytes (0: strlen + 1), or variable-length when vlen. */
static void put_str_attr(const char *p, const char *obj, const char *name, const char *val, size_t size,
                         bool vlen)
{
    hid_t f = open_rw(p);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    assert_true(o >= 0);
    if (H5Aexists(o, name) > 0) assert_true(H5Adelete(o, name) >= 0);
    H5Tset_size(t, vlen ? H5T_VARIABLE : size ? size : strlen(val) + 1);
    hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    char *buf = calloc(size + strlen(val) + 1, 1);
    memcpy(buf, val, strlen(val));
    assert_true(H5Awrite(a, t, vlen ? (const void *)&val : buf) >= 0);
    free(buf);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Oclose(o);
    H5Fclose(f);
}

static void set_root_str_new(const char *p, const char *name, const char *val)
{
    put_str_attr(p, "/", name, val, 0, false);
}

static void delete_root_attr(const char *p, const char *name)
{
    hid_t f = open_rw(p);
    assert_true(H5Adelete(f, name) >= 0);
    H5Fclose(f);
}

/* Replaces a root string attribute. */
static void set_root_str(const char *p, const char *name, const char *val)
{
    delete_root_attr(p, name);
    set_root_str_new(p, name, val);
}

/* Overwrites an integer root attribute (HDF5 converts to its stored type). */
static void set_root_i64(const char *p, const char *name, int64_t val)
{
    hid_t f = open_rw(p);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &val) >= 0);
    H5Aclose(a);
    H5Fclose(f);
}


static bool has_root_attr(const char *p, const char *name)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    htri_t e = H5Aexists(f, name);
    H5Fclose(f);
    return e > 0;
}

/* Replace <grp>/<ds> by a dataset of type t and dims (chunked with
 * Fletcher-32 when checked, as the writer makes them, else contiguous),
 * holding data (t's bytes) when not NULL. */
static void replace_ds_data(const char *p, const char *grp, const char *ds, hid_t t, int nd,
                            const hsize_t *dims, bool checked, const void *data)
{
    hid_t f = open_rw(p);
    hid_t g = H5Gopen2(f, grp, H5P_DEFAULT);
    assert_true(g >= 0);
    assert_true(H5Ldelete(g, ds, H5P_DEFAULT) >= 0);
    if (t >= 0) {
        hid_t sp = H5Screate_simple(nd, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        if (checked) {
            assert_true(H5Pset_chunk(dcpl, nd, dims) >= 0);
            assert_true(H5Pset_fletcher32(dcpl) >= 0);
        }
        hid_t d = H5Dcreate2(g, ds, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(d >= 0);
        if (data) assert_true(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
        H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(sp);
    }
    H5Gclose(g);
    H5Fclose(f);
}

static void replace_ds(const char *p, const char *grp, const char *ds, hid_t t, int nd,
                       const hsize_t *dims)
{
    replace_ds_data(p, grp, ds, t, nd, dims, true, NULL);
}

/* Overwrites an integer attribute of object obj. */
static void set_i64(const char *p, const char *obj, const char *name, int64_t val)
{
    hid_t f = open_rw(p);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &val) >= 0);
    H5Aclose(a);
    H5Oclose(o);
    H5Fclose(f);
}

static void delete_attr(const char *p, const char *obj, const char *name)
{
    hid_t f = open_rw(p);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    assert_true(H5Adelete(o, name) >= 0);
    H5Oclose(o);
    H5Fclose(f);
}

static void test_corrupt_inputs(void **state)
{
    (void)state;
    char good[256];
    snprintf(good, sizeof good, "%s", tpath("good.h5"));
    write_reference(good, 1, false, false);
    size_t n;
    free(slurp(good, &n));

    /* Truncated at several points, and a file that is not HDF5 at all. */
    const size_t cuts[] = {n / 2, n - 1, 700, 10, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *p = tpath("trunc.h5");
        copy_file(good, p, cuts[i]);
        pq_h5r *r = NULL;
        pq_err_clear();
        assert_int_equal(pq_h5r_open(p, &r), PQ_ERR_FORMAT);
        print_message("  %s\n", pq_err_detail());
        assert_non_null(strstr(pq_err_detail(), p));
        pq_err_clear();
    }
    expect_format_error(tpath("trunc.h5"), "not an HDF5 file");

    /* Object headers overwritten with junk after the superblock. */
    {
        const char *p = tpath("junk.h5");
        copy_file(good, p, (size_t)-1);
        FILE *f = fopen(p, "r+b");
        assert_non_null(f);
        fseek(f, 64, SEEK_SET);
        for (int i = 0; i < 512; i++) fputc((i * 37) & 0xff, f);
        fclose(f);
        pq_h5r *r = NULL;
        assert_int_equal(pq_h5r_open(p, &r), PQ_ERR_FORMAT);
        print_message("  %s\n", pq_err_detail());
        pq_err_clear();
    }

    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(tpath("missing.h5"), &r), PQ_ERR_IO);
    pq_err_clear();

    const char *p = tpath("bad.h5");
    copy_file(good, p, (size_t)-1);
    set_root_str(p, "format", "someone.else");
    expect_format_error(p, "someone.else");

    copy_file(good, p, (size_t)-1);
    set_root_i64(p, "format_version", PQ_FORMAT_VERSION + 1);
    expect_format_error(p, "format_version 6 is not supported (this build reads versions 3 to 5)");
    copy_file(good, p, (size_t)-1);
    set_root_i64(p, "format_version", 2);
    expect_format_error(p, "format_version 2 was written by an older Proteus");
    expect_format_error(p, "quantize the model again");
    copy_file(good, p, (size_t)-1);
    set_root_i64(p, "format_version", 0);
    expect_format_error(p, "format_version 0 is not supported");
    copy_file(good, p, (size_t)-1);
    set_root_i64(p, "source_hash_chunk_bytes", 0);
    expect_format_error(p, "source_hash_chunk_bytes is 0");
    copy_file(good, p, (size_t)-1);
    delete_root_attr(p, "source_digest_tree");
    expect_format_error(p, "source_sha256"); /* no digest at all */
    copy_file(good, p, (size_t)-1);
    set_root_str(p, "source_digest_algorithm", "md5");
    expect_format_error(p, "source_digest_algorithm is 'md5', expected sha256 or xxh3-128");

    /* qweight with the wrong shape / type, scale with the wrong shape. */
    const hsize_t d35[2] = {3, 4}, d3[1] = {3}, d22[2] = {2, 2}, d2x20[2] = {2, 20};
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/c.q8_channel_asym", "qweight", H5T_STD_I8LE, 2, d35);
    expect_format_error(p, "/tensors/c.q8_channel_asym/qweight: expected int8 [3, 5], "
                           "found int8 [3, 4]");
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/e.q4_group_asym", "qweight", H5T_STD_I8LE, 2, d2x20);
    expect_format_error(p, "/tensors/e.q4_group_asym/qweight: expected uint8 [2, 20]");
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/e.q4_group_asym", "scale", H5T_IEEE_F32LE, 1, d3);
    expect_format_error(p, "/tensors/e.q4_group_asym/scale: expected float32 [2, 2]");
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/e.q4_group_asym", "zero_point", H5T_IEEE_F32LE, 2, d22);
    expect_format_error(p, "/tensors/e.q4_group_asym/zero_point: expected int32");
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/c.q8_channel_asym", "zero_point", H5I_INVALID_HID, 0, NULL);
    expect_format_error(p, "/tensors/c.q8_channel_asym/zero_point: missing");
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/a.float32", "data", H5T_STD_I32LE, 1, d3);
    expect_format_error(p, "/tensors/a.float32/data: expected float32 or float16");
    copy_file(good, p, (size_t)-1);
    replace_ds(p, "/tensors/d.q8_tensor_sym", "qweight", H5I_INVALID_HID, 0, NULL);
    expect_format_error(p, "/tensors/d.q8_tensor_sym: has neither");
}

/* Open path (which must open) and read tensor name: the status and, for a
 * failure, the detail must contain needle. */
/* expect_read's check with the codes read (pread) or mapped. */
static void expect_read_as(const char *path, const char *name, bool verify, bool map, pq_status want,
                           const char *needle)
{
    pq_h5r *r = NULL;
    pq_qtensor qt;
    pq_err_clear();
    assert_int_equal(pq_h5r_open(path, &r), PQ_OK);
    assert_int_equal(pq_h5r_set_verify(r, verify), PQ_OK);
    const pq_h5r_entry *e = pq_h5r_find(r, name);
    pq_status st = map ? pq_h5r_map_qtensor(r, e, &qt) : pq_h5r_read_qtensor(r, e, &qt);
    if (st != want) fail_msg("%s: read of %s gave %d (%s), expected %d", path, name, st, pq_err_detail(), want);
    if (st == PQ_OK) {
        pq_qtensor_free(&qt);
    } else {
        print_message("  %s\n", pq_err_detail());
        if (!strstr(pq_err_detail(), needle)) fail_msg("detail '%s' does not mention '%s'", pq_err_detail(), needle);
    }
    pq_h5r_close(r);
    pq_err_clear();
}

static void expect_read(const char *path, const char *name, bool verify, pq_status want, const char *needle)
{
    expect_read_as(path, name, verify, false, want, needle);
    expect_read_as(path, name, verify, true, want, needle);
}

/* Each lie a file can tell gets its own error, found by Proteus before the
 * HDF5 library or the kernels meet it. */
static void test_hostile_values(void **state)
{
    (void)state;
    char good[256], p[256];
    snprintf(good, sizeof good, "%s", tpath("hostile_good.h5"));
    snprintf(p, sizeof p, "%s", tpath("hostile.h5"));
    write_reference(good, 1, true, true);
    const char *c8 = "/tensors/c.q8_channel_asym";

    /* attributes: missing, a bits value outside {4, 8}, strings too long,
     * variable-length (kept in HDF5's unchecked global heap) */
    copy_file(good, p, (size_t)-1);
    delete_attr(p, c8, "bits");
    expect_format_error(p, "/tensors/c.q8_channel_asym: missing attribute bits");
    copy_file(good, p, (size_t)-1);
    set_i64(p, c8, "bits", 6);
    expect_format_error(p, "/tensors/c.q8_channel_asym: bits = 6, expected 8 or 4");
    copy_file(good, p, (size_t)-1);
    put_str_attr(p, c8, "scheme", "w8a16-and-a-name-much-too-long-to-be-a-scheme", 0, false);
    expect_format_error(p, "/tensors/c.q8_channel_asym: attribute scheme longer than 31 characters");
    copy_file(good, p, (size_t)-1);
    put_str_attr(p, "/", "model_name", "m", PQ_H5_STR_MAX + 1, false);
    expect_format_error(p, "attribute model_name is a string of 1048577 bytes, expected 1 to 1048576");
    copy_file(good, p, (size_t)-1);
    put_str_attr(p, c8, "granularity", "channel", 0, true);
    expect_format_error(p, "attribute granularity is a variable-length string");

    /* /config that does not make a model, or is not the named architecture */
    copy_file(good, p, (size_t)-1);
    set_i64(p, "/config", "attention_heads", 7);
    expect_format_error(p, "embed_dim must be heads x head_dim");
    /* heads x head_dim beyond int: 65536 x 65537 = 2^32 + 65536 must not
     * wrap around to embed_dim = 65536 */
    copy_file(good, p, (size_t)-1);
    set_i64(p, "/config", "embed_dim", 65536);
    set_i64(p, "/config", "attention_heads", 65536);
    set_i64(p, "/config", "head_dim", 65537);
    expect_format_error(p, "embed_dim must be heads x head_dim");
    copy_file(good, p, (size_t)-1);
    set_i64(p, "/config", "num_layers", 5);
    expect_format_error(p, "is not the architecture esm2_t6_8M_UR50D the file names");

    /* extents HDF5 declares without storing them: 2^32 x 2^32 floats
     * (checksummed, chunks never written), and a quantized shape attribute
     * whose groups would overflow int64 */
    copy_file(good, p, (size_t)-1);
    {
        hid_t f = open_rw(p), g = H5Gopen2(f, "/tensors/a.float32", H5P_DEFAULT);
        assert_true(g >= 0 && H5Ldelete(g, "data", H5P_DEFAULT) >= 0);
        const hsize_t big[2] = {(hsize_t)1 << 32, (hsize_t)1 << 32}, chunk[2] = {1, 1};
        hid_t sp = H5Screate_simple(2, big, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        assert_true(H5Pset_chunk(dcpl, 2, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0);
        hid_t d = H5Dcreate2(g, "data", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(d >= 0);
        H5Dclose(d); H5Pclose(dcpl); H5Sclose(sp); H5Gclose(g); H5Fclose(f);
    }
    expect_format_error(p, "/tensors/a.float32: shape [4294967296, 4294967296] holds more than 2^40 elements");
    copy_file(good, p, (size_t)-1);
    {
        hid_t f = open_rw(p), o = H5Oopen(f, c8, H5P_DEFAULT), a = H5Aopen(o, "shape", H5P_DEFAULT);
        const int64_t huge[2] = {3, INT64_MAX};
        assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, huge) >= 0);
        H5Aclose(a); H5Oclose(o); H5Fclose(f);
    }
    expect_format_error(p, "/tensors/c.q8_channel_asym: shape [3, 9223372036854775807] holds more than 2^40");

    /* a dataset without the checksum */
    const hsize_t d3[1] = {3};
    copy_file(good, p, (size_t)-1);
    replace_ds_data(p, c8, "scale", H5T_NATIVE_FLOAT, 1, d3, false, c8_scale);
    expect_format_error(p, "/tensors/c.q8_channel_asym/scale: not chunked with the Fletcher-32 checksum");

    /* scales and zero points the dequantization rule cannot use */
    const float bad_scale[3] = {0.5f, NAN, 2.0f};
    copy_file(good, p, (size_t)-1);
    replace_ds_data(p, c8, "scale", H5T_NATIVE_FLOAT, 1, d3, true, bad_scale);
    expect_read(p, "c.q8_channel_asym", true, PQ_ERR_FORMAT, "scale[1] = nan is not a positive finite scale");
    const int32_t bad_zp[3] = {3, 200, 0};
    copy_file(good, p, (size_t)-1);
    replace_ds_data(p, c8, "zero_point", H5T_NATIVE_INT32, 1, d3, true, bad_zp);
    expect_read(p, "c.q8_channel_asym", true, PQ_ERR_FORMAT, "zero_point[1] = 200 is outside [-128, 127]");

    /* one code byte flipped: the open succeeds (metadata intact), the read
     * names the dataset; without verification it reads */
    expect_read(good, "c.q8_channel_asym", true, PQ_OK, NULL);
    copy_file(good, p, (size_t)-1);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "/tensors/c.q8_channel_asym/qweight", H5P_DEFAULT);
    const hsize_t origin[2] = {0, 0};
    haddr_t addr = HADDR_UNDEF;
    hsize_t csize = 0;
    unsigned mask = 1;
    assert_true(H5Dget_chunk_info_by_coord(d, origin, &mask, &addr, &csize) >= 0);
    assert_int_equal(csize, 15 + 4); /* the codes and their checksum */
    assert_int_equal(mask, 0);
    H5Dclose(d);
    H5Fclose(f);
    int fd = open(p, O_RDWR);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, (off_t)addr + 7), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)addr + 7), 1);
    close(fd);
    expect_read(p, "c.q8_channel_asym", true, PQ_ERR_FORMAT,
                "/tensors/c.q8_channel_asym/qweight: checksum mismatch, the data is corrupt");
    expect_read(p, "c.q8_channel_asym", false, PQ_OK, NULL);

    /* mapped codes are the bytes read, and are a mapping */
    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(good, &r), PQ_OK);
    for (int64_t i = 0; i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        if (!e->quantized) continue;
        pq_qtensor qa, qb;
        assert_int_equal(pq_h5r_read_qtensor(r, e, &qa), PQ_OK);
        assert_int_equal(pq_h5r_map_qtensor(r, e, &qb), PQ_OK);
        assert_null(qa.codes_map);
        assert_non_null(qb.codes_map);
        assert_memory_equal(qa.codes, qb.codes, (size_t)(qa.rows * qa.code_row_bytes));
        assert_memory_equal(qa.scale, qb.scale, (size_t)qa.n_scales * sizeof *qa.scale);
        pq_qtensor_free(&qa);
        pq_qtensor_free(&qb);
        assert_null(qb.codes_map);
    }
    pq_h5r_close(r);

    /* the file cut inside the codes after the open: both reads name the
     * truncation, the mapped one before it maps (no SIGBUS) */
    for (int map = 0; map < 2; map++) {
        copy_file(good, p, (size_t)-1);
        r = NULL;
        pq_qtensor qt;
        pq_err_clear();
        assert_int_equal(pq_h5r_open(p, &r), PQ_OK);
        assert_int_equal(truncate(p, (off_t)addr + 7), 0);
        const pq_h5r_entry *e = pq_h5r_find(r, "c.q8_channel_asym");
        pq_status st = map ? pq_h5r_map_qtensor(r, e, &qt) : pq_h5r_read_qtensor(r, e, &qt);
        print_message("  %s\n", pq_err_detail());
        assert_int_equal(st, PQ_ERR_FORMAT);
        assert_non_null(strstr(pq_err_detail(), "/tensors/c.q8_channel_asym/qweight: the file ends inside the data"));
        pq_h5r_close(r);
        pq_err_clear();
    }
}

/* /smoothquant: one attn_in and one ffn_in site per layer of /config; a
 * num_layers that is not the model's is refused before the factors of every
 * site it claims are allocated. */
static void test_smooth_layers(void **state)
{
    (void)state;
    char p[256];
    snprintf(p, sizeof p, "%s", tpath("smooth.h5"));
    pq_h5_meta meta = test_meta(1);
    pq_h5w *w = NULL;
    pq_smooth *sm = NULL, *back = NULL;
    assert_int_equal(pq_h5w_create(p, &meta, &w), PQ_OK);
    assert_int_equal(pq_smooth_create(6, 320, 0.5, &sm), PQ_OK);
    sm->sites[3].s[7] = 2.5f;
    assert_int_equal(pq_h5w_put_smooth(w, sm), PQ_OK);
    pq_smooth_free(sm);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
    assert_int_equal(pq_h5_read_smooth(p, &back), PQ_OK);
    assert_non_null(back);
    assert_int_equal(back->n_sites, 12);
    assert_true(back->sites[3].s[7] == 2.5f && back->sites[3].s[6] == 1.0f);
    pq_smooth_free(back);
    set_i64(p, "/smoothquant", "num_layers", 100000);
    assert_int_equal(pq_h5_read_smooth(p, &back), PQ_ERR_FORMAT);
    assert_null(back);
    assert_non_null(strstr(pq_err_detail(), "/smoothquant: num_layers 100000, /config says 6"));
    pq_err_clear();
}

/* A smoothing factor divides a channel's activations: 0 (or less, or not
 * finite) is refused, naming the dataset and the element; an absolute
 * maximum of 0 (a channel never active) is a valid statistic. */
static void test_smooth_factors(void **state)
{
    (void)state;
    char p[256];
    snprintf(p, sizeof p, "%s", tpath("smooth_factors.h5"));
    for (int zero_factor = 0; zero_factor < 2; zero_factor++) {
        pq_h5_meta meta = test_meta(1);
        pq_h5w *w = NULL;
        pq_smooth *sm = NULL, *back = NULL;
        assert_int_equal(pq_h5w_create(p, &meta, &w), PQ_OK);
        assert_int_equal(pq_smooth_create(6, 320, 0.5, &sm), PQ_OK);
        pq_smooth_site *ss = &sm->sites[1]; /* layer 0, ffn_in */
        ss->act_absmax = calloc(320, sizeof *ss->act_absmax);
        ss->w_absmax = calloc(320, sizeof *ss->w_absmax);
        assert_true(ss->act_absmax && ss->w_absmax);
        ss->w_absmax[5] = 0.5f;
        if (zero_factor) ss->s[2] = 0.0f;
        assert_int_equal(pq_h5w_put_smooth(w, sm), PQ_OK);
        pq_smooth_free(sm);
        assert_int_equal(pq_h5w_commit(w), PQ_OK);
        pq_err_clear();
        pq_status st = pq_h5_read_smooth(p, &back);
        if (!zero_factor) {
            assert_int_equal(st, PQ_OK);
            assert_true(back->sites[1].act_absmax[0] == 0.0f && back->sites[1].w_absmax[5] == 0.5f);
            pq_smooth_free(back);
            continue;
        }
        assert_int_equal(st, PQ_ERR_FORMAT);
        assert_null(back);
        print_message("  %s\n", pq_err_detail());
        assert_non_null(strstr(pq_err_detail(), "/smoothquant/layer.0.ffn_in/scale[2] = 0 is not a finite positive "
                                                 "smoothing factor"));
        assert_non_null(strstr(pq_err_detail(), p));
        pq_err_clear();
    }
}

/* A 0-D tensor: HDF5 cannot chunk a scalar dataspace, so no Fletcher-32;
 * the writer stores it compact, its value inside the object header that
 * HDF5's metadata checksum covers (a flipped bit in the value is refused
 * at open), and a scalar stored contiguous (its value outside any
 * checksum) is refused. */
static void test_scalar_dataset(void **state)
{
    (void)state;
    char good[256], p[256];
    snprintf(good, sizeof good, "%s", tpath("scalar_good.h5"));
    snprintf(p, sizeof p, "%s", tpath("scalar.h5"));
    const float v = 1234.5f; /* bytes 00 50 9a 44: found once in the file */
    pq_h5_meta meta = test_meta(1);
    pq_h5w *w = NULL;
    assert_int_equal(pq_h5w_create(good, &meta, &w), PQ_OK);
    assert_int_equal(pq_h5w_put_float(w, "s", 0, NULL, &v, false), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);

    hid_t f = H5Fopen(good, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "/tensors/s/data", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    assert_int_equal(H5Sget_simple_extent_type(sp), H5S_SCALAR);
    assert_int_equal(H5Pget_layout(dcpl), H5D_COMPACT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);

    pq_h5r *r = NULL;
    float back = 0;
    assert_int_equal(pq_h5r_open(good, &r), PQ_OK);
    const pq_h5r_entry *e = pq_h5r_find(r, "s");
    assert_non_null(e);
    assert_int_equal(e->ndim, 0);
    assert_int_equal(pq_h5r_read_f32(r, e, &back), PQ_OK);
    assert_true(back == v);
    assert_int_equal(pq_h5r_verify_data(r), PQ_OK);
    pq_h5r_close(r);

    size_t n;
    unsigned char *b = slurp(good, &n);
    const unsigned char want[4] = {0x00, 0x50, 0x9a, 0x44};
    size_t at = n, hits = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(b + i, want, 4)) at = i, hits++;
    assert_int_equal(hits, 1);
    b[at + 2] ^= 0x01;
    FILE *o = fopen(p, "wb");
    assert_non_null(o);
    assert_int_equal(fwrite(b, 1, n, o), n);
    fclose(o);
    free(b);
    expect_format_error(p, "/tensors/s/data: cannot open dataset");

    copy_file(good, p, (size_t)-1);
    replace_ds_data(p, "/tensors/s", "data", H5T_IEEE_F32LE, 0, NULL, false, &v);
    expect_format_error(p, "/tensors/s/data: a scalar dataset not stored compact");
}

/* HDF5's Fletcher-32 computed in pieces equals the one HDF5's filter
 * stores: a dataset written through HDF5 (odd length, several folds) has
 * our checksum after its bytes; all bytes 0xff too, the largest sums a
 * block can reach (close to 2^32). */
static void test_fletcher32_pieces(void **state)
{
    (void)state;
    const char *p = tpath("fl.h5");
    enum { N = 2 * 360 * 3 + 77 };
    uint8_t buf[N];
    for (int fill = 0; fill < 2; fill++) {
        for (int i = 0; i < N; i++) buf[i] = fill ? 0xff : (uint8_t)(i * 131 + 7);
        const hsize_t dims[1] = {N};
        hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        assert_true(H5Pset_chunk(dcpl, 1, dims) >= 0 && H5Pset_fletcher32(dcpl) >= 0);
        hid_t d = H5Dcreate2(f, "x", H5T_NATIVE_UINT8, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        H5Dflush(d);
        const hsize_t origin[1] = {0};
        haddr_t addr = HADDR_UNDEF;
        hsize_t csize = 0;
        unsigned mask = 0;
        assert_true(H5Dget_chunk_info_by_coord(d, origin, &mask, &addr, &csize) >= 0);
        H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(sp);
        H5Fclose(f);
        assert_int_equal(csize, N + 4);
        uint8_t stored[4];
        int fd = open(p, O_RDONLY);
        assert_int_equal(pread(fd, stored, 4, (off_t)(addr + N)), 4);
        close(fd);
        uint32_t want = (uint32_t)stored[0] | (uint32_t)stored[1] << 8 | (uint32_t)stored[2] << 16 |
                        (uint32_t)stored[3] << 24;
        const size_t cuts[][3] = {{N, 0, 0}, {2, 718, N - 720}, {720, 2, N - 722}, {1000, 400, N - 1400}};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            pq_fletcher32 fl;
            pq_fletcher32_init(&fl);
            size_t off = 0;
            for (int j = 0; j < 3; j++) {
                pq_fletcher32_update(&fl, buf + off, cuts[k][j]);
                off += cuts[k][j];
            }
            assert_int_equal(pq_fletcher32_final(&fl), want);
        }
    }
}

/* The checksum HDF5's own filter stores after n bytes of buf: a 1-D
 * uint8 dataset of one chunk written with H5Dwrite, its chunk read raw. */
static uint32_t hdf5_fletcher32(const uint8_t *buf, size_t n)
{
    const char *p = tpath("flref.h5");
    const hsize_t dims[1] = {n}, origin[1] = {0};
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(H5Pset_chunk(dcpl, 1, dims) >= 0 && H5Pset_fletcher32(dcpl) >= 0);
    hid_t d = H5Dcreate2(f, "x", H5T_NATIVE_UINT8, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    uint8_t *raw = malloc(n + 4);
    uint32_t filters = 0;
    assert_non_null(raw);
    assert_true(H5Dread_chunk(d, H5P_DEFAULT, origin, &filters, raw) >= 0);
    uint32_t sum = (uint32_t)raw[n] | (uint32_t)raw[n + 1] << 8 | (uint32_t)raw[n + 2] << 16 |
                   (uint32_t)raw[n + 3] << 24;
    assert_memory_equal(raw, buf, n);
    free(raw);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    return sum;
}

static uint64_t test_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The checksum from pieces added in any order (pq_fletcher32_add) equals
 * the one HDF5's filter stores: odd and even lengths, pieces at odd
 * offsets, in shuffled order; all bytes 0xff (sums that are multiples of
 * 65535, which HDF5 stores as 0xffff), a chunk whose s1 alone is such a
 * multiple, and all zeros (0). */
static void test_fletcher32_shares(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15u;
    const size_t sizes[] = {1, 2, 3, 719, 720, 721, 5000, 65537};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int fill = 0; fill < 3; fill++) {
            size_t n = sizes[si];
            uint8_t *buf = malloc(n);
            assert_non_null(buf);
            for (size_t i = 0; i < n; i++)
                buf[i] = fill == 0 ? (uint8_t)test_rng(&seed) : fill == 1 ? 0xff : 0;
            uint32_t want = hdf5_fletcher32(buf, n);
            if (fill == 2) assert_int_equal(want, 0);
            for (int trial = 0; trial < 4; trial++) {
                /* cut points, then the pieces added back to front or shuffled */
                size_t cuts[10], nc = 0;
                cuts[nc++] = 0;
                for (int k = 0; k < 8 && n > 1; k++) cuts[nc++] = 1 + test_rng(&seed) % (n - 1);
                cuts[nc++] = n;
                for (size_t a = 1; a < nc; a++)
                    for (size_t b = a; b > 0 && cuts[b] < cuts[b - 1]; b--) {
                        size_t t = cuts[b];
                        cuts[b] = cuts[b - 1];
                        cuts[b - 1] = t;
                    }
                size_t order[9];
                for (size_t k = 0; k + 1 < nc; k++) order[k] = trial == 0 ? nc - 2 - k : k;
                for (size_t k = nc - 2; trial > 0 && k > 0; k--) {
                    size_t j = test_rng(&seed) % (k + 1), t = order[k];
                    order[k] = order[j];
                    order[j] = t;
                }
                pq_fletcher32_sum sum = {0};
                for (size_t k = 0; k + 1 < nc; k++) {
                    size_t i = order[k];
                    pq_fletcher32_add(&sum, buf + cuts[i], cuts[i + 1] - cuts[i], cuts[i], n);
                }
                assert_int_equal(pq_fletcher32_sum_final(&sum), want);
            }
            free(buf);
        }
    /* words 0x0001 and 0xfffe: s1 = 65535, a multiple; s2 = 2 + 0xfffe */
    const uint8_t two[4] = {0x00, 0x01, 0xff, 0xfe};
    uint32_t want = hdf5_fletcher32(two, 4);
    assert_int_equal(want & 0xffff, 0xffff);
    pq_fletcher32_sum sum = {0};
    pq_fletcher32_add(&sum, two + 1, 3, 1, 4);
    pq_fletcher32_add(&sum, two, 1, 0, 4);
    assert_int_equal(pq_fletcher32_sum_final(&sum), want);
}

/* Whether the file system of path tells holes from data (SEEK_DATA). */
static bool reports_holes(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "x", 1, 1 << 20), 1);
    off_t data = lseek(fd, 0, SEEK_DATA);
    close(fd);
    unlink(path);
    return data > 0;
}

/* A tensor of many row blocks, odd row length, the blocks in shuffled
 * order and every other one placed by "another rank" (codes NULL): plain
 * HDF5 reads the codes back with its checksum check on, and the chunk's
 * bytes and checksum are those HDF5's own filter writes for them. Before
 * any codes come the chunk's space is a hole: the reservation wrote none of
 * its bytes (checked where the file system reports holes). */
static void test_codes_chunk_as_hdf5_writes_it(void **state)
{
    (void)state;
    enum { ROWS = 301, COLS = 1333, BLOCKS = 23 };
    char path[320];
    snprintf(path, sizeof path, "%s", tpath("blocks.h5"));
    pq_h5_meta meta = test_meta(1);
    pq_h5w *w = NULL;
    uint64_t seed = 12345;
    int8_t *codes = malloc((size_t)ROWS * COLS);
    float scale[ROWS];
    assert_non_null(codes);
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) codes[i] = (int8_t)test_rng(&seed);
    for (int r = 0; r < ROWS; r++) scale[r] = 0.01f * (float)(r + 1);
    const pq_qspec spec = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    assert_int_equal(pq_h5w_create(path, &meta, &w), PQ_OK);
    assert_int_equal(pq_h5w_quant_begin(w, "q", &spec, ROWS, COLS, "dynamic", "rtn"), PQ_OK);

    uint64_t off = 0;
    assert_int_equal(pq_h5w_codes_offset(w, "q", &off), PQ_OK);
    if (reports_holes(tpath("probe"))) {
        int fd = open(pq_h5w_partial_path(w), O_RDONLY);
        assert_true(fd >= 0);
        /* holes are whole blocks: those inside the codes' span */
        struct stat sb;
        assert_int_equal(fstat(fd, &sb), 0);
        off_t bs = sb.st_blksize, first = ((off_t)off + bs - 1) / bs * bs;
        off_t last = (off_t)(off + (uint64_t)ROWS * COLS) / bs * bs;
        assert_true(last - first >= 64 * bs);
        off_t data = lseek(fd, first, SEEK_DATA);
        close(fd);
        assert_true(data < 0 || data >= last);
    } else {
        print_message("note: %s does not report holes: the check that no code byte was written is skipped\n",
                      tmpdir);
    }

    int64_t row0[BLOCKS + 1];
    int order[BLOCKS];
    row0[0] = 0;
    for (int b = 1; b < BLOCKS; b++) row0[b] = (int64_t)b * ROWS / BLOCKS;
    row0[BLOCKS] = ROWS;
    for (int b = 0; b < BLOCKS; b++) order[b] = b;
    for (int b = BLOCKS - 1; b > 0; b--) {
        int j = (int)(test_rng(&seed) % (uint64_t)(b + 1)), t = order[b];
        order[b] = order[j];
        order[j] = t;
    }
    for (int k = 0; k < BLOCKS; k++) {
        int b = order[k];
        put_rows(w, "q", row0[b], row0[b + 1] - row0[b], COLS, codes + row0[b] * COLS, scale + row0[b], NULL,
                 k % 2 == 1);
    }
    assert_int_equal(pq_h5w_quant_end(w, "q", NULL), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/tensors/q/qweight", H5P_DEFAULT);
    assert_true(f >= 0 && d >= 0);
    int8_t *back = malloc((size_t)ROWS * COLS);
    uint8_t *raw = malloc((size_t)ROWS * COLS + 4);
    assert_true(back && raw);
    assert_true(H5Dread(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    assert_memory_equal(back, codes, (size_t)ROWS * COLS);
    const hsize_t origin[2] = {0, 0};
    uint32_t filters = 1;
    assert_true(H5Dread_chunk(d, H5P_DEFAULT, origin, &filters, raw) >= 0);
    assert_int_equal(filters, 0);
    uint32_t stored = (uint32_t)raw[ROWS * COLS] | (uint32_t)raw[ROWS * COLS + 1] << 8 |
                      (uint32_t)raw[ROWS * COLS + 2] << 16 | (uint32_t)raw[ROWS * COLS + 3] << 24;
    assert_int_equal(stored, hdf5_fletcher32((const uint8_t *)codes, (size_t)ROWS * COLS));
    H5Dclose(d);
    H5Fclose(f);
    free(back);
    free(raw);
    free(codes);
}

/* The tree digest (source_digest_tree, its algorithm and chunk size),
 * written at create or, gathered from ranks, just before the commit; a
 * version-4 file (SHA-256 under source_sha256_tree) is read; a version-1
 * file (plain source_sha256) is refused with the word to quantize again. */
static void test_source_digest(void **state)
{
    (void)state;
    const char *p = tpath("digest.h5");
    write_reference(p, 1, false, false);
    assert_true(has_root_attr(p, "source_digest_tree"));
    assert_true(has_root_attr(p, "source_digest_algorithm"));
    assert_true(has_root_attr(p, "source_hash_chunk_bytes"));
    assert_false(has_root_attr(p, "source_sha256"));
    assert_false(has_root_attr(p, "source_sha256_tree"));
    pq_h5r *r = NULL;
    assert_int_equal(pq_h5r_open(p, &r), PQ_OK);
    assert_int_equal(pq_h5r_meta(r)->source_digest_alg, PQ_DIGEST_SHA256); /* a zeroed meta's */
    pq_h5r_close(r);

    /* deferred: no digest at create, delivered before the commit */
    const char *q = tpath("deferred.h5");
    pq_h5_meta meta = test_meta(2);
    meta.source_sha256 = NULL;
    pq_h5w *w = NULL;
    assert_int_equal(pq_h5w_create(q, &meta, &w), PQ_OK);
    const int64_t s32[2] = {2, 3};
    assert_int_equal(pq_h5w_put_float(w, "a.float32", 2, s32, f32_vals, false), PQ_OK);
    assert_int_equal(pq_h5w_set_source_digest(w, PQ_DIGEST_XXH3, "abcdef0123456789", 1000), PQ_OK);
    assert_int_equal(pq_h5w_commit(w), PQ_OK);
    assert_int_equal(pq_h5r_open(q, &r), PQ_OK);
    assert_string_equal(pq_h5r_meta(r)->source_sha256, "abcdef0123456789");
    assert_int_equal(pq_h5r_meta(r)->source_digest_alg, PQ_DIGEST_XXH3);
    assert_int_equal(pq_h5r_meta(r)->source_hash_chunk_bytes, 1000);
    pq_h5r_close(r);

    /* version 4: SHA-256 under source_sha256_tree, no algorithm attribute */
    const char *v4 = tpath("v4.h5");
    copy_file(p, v4, (size_t)-1);
    set_root_i64(v4, "format_version", 4);
    delete_root_attr(v4, "source_digest_tree");
    delete_root_attr(v4, "source_digest_algorithm");
    set_root_str_new(v4, "source_sha256_tree", "5eed0042");
    assert_int_equal(pq_h5r_open(v4, &r), PQ_OK);
    assert_string_equal(pq_h5r_meta(r)->source_sha256, "5eed0042");
    assert_int_equal(pq_h5r_meta(r)->source_digest_alg, PQ_DIGEST_SHA256);
    assert_int_equal(pq_h5r_meta(r)->format_version, 4);
    pq_h5r_close(r);

    /* version 1: format_version 1 and a plain source_sha256 */
    set_root_i64(p, "format_version", 1);
    delete_root_attr(p, "source_digest_tree");
    delete_root_attr(p, "source_digest_algorithm");
    delete_root_attr(p, "source_hash_chunk_bytes");
    set_root_str_new(p, "source_sha256", "5eed00");
    expect_format_error(p, "format_version 1 was written by an older Proteus");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_smooth_layers),
        cmocka_unit_test(test_smooth_factors),
        cmocka_unit_test(test_scalar_dataset),
        cmocka_unit_test(test_fletcher32_pieces),
        cmocka_unit_test(test_fletcher32_shares),
        cmocka_unit_test(test_codes_chunk_as_hdf5_writes_it),
        cmocka_unit_test(test_edge_chunks_deterministic),
        cmocka_unit_test(test_row_blocks_equal_one_shot),
        cmocka_unit_test(test_interleaved_tensors),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_deterministic_bytes),
        cmocka_unit_test(test_commit_and_abort),
        cmocka_unit_test(test_corrupt_inputs),
        cmocka_unit_test(test_source_digest),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
