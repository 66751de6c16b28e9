/* SPDX-License-Identifier: Apache-2.0 */
/* write_fixture.c - writes a small Proteus HDF5 model whose contents follow
 * simple formulas, so that test_h5py_read.py can check it with h5py + numpy
 * without Proteus. Usage: write_fixture OUT.h5. The formulas here and in the
 * Python test are written independently; keep them in step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/h5model.h"

#define CHECK(call)                                                                  \
    do {                                                                             \
        pq_status st_ = (call);                                                      \
        if (st_ != PQ_OK) {                                                          \
            fprintf(stderr, "write_fixture: %s: %s\n", pq_strerror(st_), pq_err_detail()); \
            return 1;                                                                \
        }                                                                            \
    } while (0)

/* One quantized tensor whose code at (r, c) is code(r, c), scale for scale
 * index i (row-major over [rows, groups]) is 0.0123f * (i + 1) and zero point
 * is zp(i). */
static int put_formula(pq_h5w *w, const char *name, const pq_qspec *spec, int rows, int cols,
                       int (*code)(int, int), int (*zp)(int), const char *scheme)
{
    pq_qtensor qt;
    CHECK(pq_qtensor_alloc(&qt, spec, rows, cols));
    for (int r = 0; r < rows; r++) {
        if (spec->bits == 8) {
            int8_t *row = (int8_t *)qt.codes + (int64_t)r * qt.code_row_bytes;
            for (int c = 0; c < cols; c++) row[c] = (int8_t)code(r, c);
        } else {
            uint8_t *row = (uint8_t *)qt.codes + (int64_t)r * qt.code_row_bytes;
            for (int j = 0; j < qt.code_row_bytes; j++) {
                int lo = code(r, 2 * j) + 8;
                int hi = 2 * j + 1 < cols ? code(r, 2 * j + 1) + 8 : 8;
                row[j] = (uint8_t)(lo | hi << 4);
            }
        }
    }
    for (int64_t i = 0; i < qt.n_scales; i++) {
        qt.scale[i] = 0.0123f * (float)(i + 1);
        if (qt.zero_point) qt.zero_point[i] = zp((int)i);
    }
    qt.metrics.sqnr_db = 40.5;
    qt.metrics.rel_l2 = 0.01;
    qt.metrics.max_abs_err = 0.25;
    CHECK(pq_h5w_put_qtensor(w, name, &qt, scheme, "rtn"));
    pq_qtensor_free(&qt);
    return 0;
}

static int code_c8(int r, int c) { return ((r * 31 + c * 17) % 256) - 128; }
static int zp_c8(int i) { return ((i * 37) % 256) - 128; }
static int code_t8(int r, int c) { return ((r * 13 + c * 7) % 255) - 127; }
static int code_g4(int r, int c) { return ((r * 5 + c * 3) % 16) - 8; }
static int zp_g4(int i) { return (i % 16) - 8; }
static int code_c4(int r, int c) { return ((r * 3 + c) % 15) - 7; }
static int zp_none(int i) { (void)i; return 0; }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: write_fixture OUT.h5\n");
        return 2;
    }
    pq_h5_meta meta = {
        .architecture = "esm2_t6_8M_UR50D",
        .model_name = "fixture.safetensors",
        .source_sha256 = "abc123",
        .source_hash_chunk_bytes = (int64_t)64 << 20,
        .created_by = "proteus test fixture",
        .config_json = "{\"scheme\": \"mixed\"}",
        .num_ranks = 2,
    };
    meta.cfg.num_layers = 6;
    meta.cfg.embed_dim = 320;
    meta.cfg.attention_heads = 20;
    meta.cfg.head_dim = 16;
    meta.cfg.ffn_dim = 1280;
    meta.cfg.vocab_size = 33;
    meta.cfg.layer_norm_eps = 1e-5f;
    meta.cfg.token_dropout = true;
    meta.cfg.has_contact_head = true;
    meta.cfg.has_decoder = false;

    pq_h5w *w = NULL;
    CHECK(pq_h5w_create(argv[1], &meta, &w));

    /* float: value(i) = (i - 7) * 0.37f + i * i * 1e-3f, 4 x 6. */
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)(i - 7) * 0.37f + (float)(i * i) * 1e-3f;
    v[23] = 70000.0f; /* overflows binary16 */
    v[22] = 1e-7f;    /* binary16 subnormal */
    const int64_t s46[2] = {4, 6}, s24[1] = {24};
    CHECK(pq_h5w_put_float(w, "float32.weight", 2, s46, v, false));
    CHECK(pq_h5w_put_float(w, "float16.bias", 1, s24, v, true));

    const pq_qspec c8 = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = false};
    const pq_qspec t8 = {.bits = 8, .gran = PQ_GRAN_TENSOR, .symmetric = true};
    const pq_qspec g4 = {.bits = 4, .gran = PQ_GRAN_GROUP, .group_size = 32,
                         .symmetric = false};
    const pq_qspec c4 = {.bits = 4, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    if (put_formula(w, "q8.channel.asym", &c8, 5, 9, code_c8, zp_c8, "w8a16") ||
        put_formula(w, "q8.tensor.sym", &t8, 4, 7, code_t8, zp_none, "w8a8") ||
        put_formula(w, "q4.group.asym", &g4, 3, 71, code_g4, zp_g4, "w4a16") ||
        put_formula(w, "q4.channel.sym", &c4, 4, 10, code_c4, zp_none, "w4a16"))
        return 1;
    CHECK(pq_h5w_provenance(w, "seed", "7"));
    CHECK(pq_h5w_commit(w));
    return 0;
}
