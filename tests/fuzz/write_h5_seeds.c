/* SPDX-License-Identifier: Apache-2.0 */
/* write_h5_seeds.c - writes the seed corpus of fuzz_h5 with the current
 * writers: a tiny quantized model (every kind of entry the readers know:
 * float32, float16, int8 per channel and per tensor with static activation
 * parameters, int4 per group and per channel, metrics, provenance, the
 * /recipe, /calibration and /smoothquant groups, the latter with its
 * statistics) and a standalone calibration store, each a few KB so that
 * the fuzzer's mutations land in the structures rather than in bulk data.
 * Usage: write_h5_seeds DIR (writes DIR/model_q.h5, DIR/calib.h5). */
#include <stdio.h>
#include <stdlib.h>

#include "calib/calib_stats.h"
#include "format/calib_h5.h"
#include "format/h5model.h"
#include "format/h5smooth.h"
#include "kernels/pq_kernels.h"
#include "quant/qtensor.h"
#include "quant/smooth.h"

#define CHECK(call)                                                                         \
    do {                                                                                    \
        pq_status st_ = (call);                                                             \
        if (st_ != PQ_OK) {                                                                 \
            fprintf(stderr, "write_h5_seeds: %s: %s\n", pq_strerror(st_), pq_err_detail()); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

enum { LAYERS = 1, D = 4, F = 8 };

static void put_q(pq_h5w *w, const char *name, const pq_qspec *spec, int rows, int cols,
                  const char *scheme)
{
    pq_qtensor qt;
    CHECK(pq_qtensor_alloc(&qt, spec, rows, cols));
    for (int64_t i = 0; i < (int64_t)rows * qt.code_row_bytes; i++)
        ((uint8_t *)qt.codes)[i] = (uint8_t)(i * 37 + 11);
    for (int64_t i = 0; i < qt.n_scales; i++) {
        qt.scale[i] = 0.01f * (float)(i + 1);
        if (qt.zero_point) qt.zero_point[i] = spec->bits == 8 ? (int32_t)(i % 5) - 2 : (int32_t)(i % 3);
    }
    qt.metrics.sqnr_db = 38.0;
    qt.metrics.rel_l2 = 0.02;
    qt.metrics.max_abs_err = 0.1;
    CHECK(pq_h5w_put_qtensor(w, name, &qt, scheme, "rtn"));
    pq_qtensor_free(&qt);
}

static pq_calib *make_calib(void)
{
    pq_ops ops;
    if (pq_ops_select("ref", &ops) != PQ_KOK) pq_ops_init_ref(&ops);
    pq_calib *c = NULL;
    CHECK(pq_calib_create(LAYERS, D, F, &c));
    float x[3 * F];
    for (int i = 0; i < 3 * F; i++) x[i] = (float)(i % 7) * 0.5f - 1.25f;
    for (int i = 0; i < c->n_sites; i++)
        CHECK(pq_calib_site_add(&ops, &c->sites[i], x, 3, c->sites[i].dim));
    CHECK(pq_calib_flush(c));
    snprintf(c->model_sha256, sizeof c->model_sha256, "%s", "0123abcd");
    c->n_sequences = 3;
    return c;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: write_h5_seeds DIR\n");
        return 2;
    }
    char path[4096];
    pq_calib *c = make_calib();

    pq_h5_meta meta = {
        .architecture = "esm2_custom",
        .model_name = "seed.safetensors",
        .source_sha256 = "0123abcd",
        .source_hash_chunk_bytes = (int64_t)64 << 20,
        .created_by = "proteus seed",
        .config_json = "{\"scheme\": \"mixed\"}",
        .num_ranks = 1,
    };
    meta.cfg.num_layers = LAYERS;
    meta.cfg.embed_dim = D;
    meta.cfg.attention_heads = 2;
    meta.cfg.head_dim = D / 2;
    meta.cfg.ffn_dim = F;
    meta.cfg.vocab_size = 33;
    meta.cfg.layer_norm_eps = 1e-5f;
    meta.cfg.token_dropout = true;
    meta.cfg.has_contact_head = false;
    meta.cfg.has_decoder = false;

    snprintf(path, sizeof path, "%s/model_q.h5", argv[1]);
    pq_h5w *w = NULL;
    CHECK(pq_h5w_create(path, &meta, &w));
    const float v[6] = {-1.5f, -0.25f, 0.0f, 0.5f, 1e-7f, 70000.0f};
    const int64_t s23[2] = {2, 3}, s6[1] = {6};
    CHECK(pq_h5w_put_float(w, "f32", 2, s23, v, false));
    CHECK(pq_h5w_put_float(w, "f16", 1, s6, v, true));
    const pq_qspec c8 = {.bits = 8, .gran = PQ_GRAN_CHANNEL, .symmetric = false};
    const pq_qspec t8 = {.bits = 8, .gran = PQ_GRAN_TENSOR, .symmetric = true};
    const pq_qspec g4 = {.bits = 4, .gran = PQ_GRAN_GROUP, .group_size = 32, .symmetric = false};
    const pq_qspec c4 = {.bits = 4, .gran = PQ_GRAN_CHANNEL, .symmetric = true};
    put_q(w, "q8c", &c8, 3, 5, "w8a8");
    put_q(w, "q8t", &t8, 2, 4, "w8a8");
    put_q(w, "q4g", &g4, 2, 40, "w4a16");
    put_q(w, "q4c", &c4, 2, 6, "w4a16");
    const int32_t zp = 3;
    CHECK(pq_h5w_put_act_qparams(w, "q8c", 0.05f, &zp));
    CHECK(pq_h5w_put_act_qparams(w, "q8t", 0.04f, NULL));
    CHECK(pq_h5w_provenance(w, "command", "proteus quantize"));
    CHECK(pq_calib_h5_put(w, c));
    pq_smooth *sm = NULL;
    CHECK(pq_smooth_create(LAYERS, D, 0.5, &sm));
    for (int i = 0; i < sm->n_sites; i++) {
        pq_smooth_site *ss = &sm->sites[i];
        ss->act_absmax = malloc(D * sizeof *ss->act_absmax);
        ss->w_absmax = malloc(D * sizeof *ss->w_absmax);
        if (!ss->act_absmax || !ss->w_absmax) return 1;
        for (int j = 0; j < D; j++) {
            ss->s[j] = 0.5f + 0.25f * (float)j;
            ss->act_absmax[j] = 2.0f * (float)j; /* a channel never active: 0 */
            ss->w_absmax[j] = 0.75f + (float)j;
        }
    }
    CHECK(pq_h5w_put_smooth(w, sm));
    pq_smooth_free(sm);
    CHECK(pq_h5w_commit(w));

    snprintf(path, sizeof path, "%s/calib.h5", argv[1]);
    CHECK(pq_calib_h5_save(path, c, "proteus seed"));
    pq_calib_free(c);
    return 0;
}
