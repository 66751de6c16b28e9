/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_recipe.c - a recipe file (quantize --recipe, pipeline/recipe.h) of
 * any bytes, applied as quantize applies it (pq_plan_build) to a tiny
 * synthetic ESM-2 of 3 layers written once per process, under two configs:
 * int8 per-channel RTN, and GPTQ with one scale per tensor (whose rules must
 * give scales per channel or group). A plan that builds must be one quantize
 * can run: every quantized tensor 2-D and non-empty, 8 or 4 bits, a group
 * size in [32, 256] that divides its columns, its units covering its rows.
 * Seeds: tests/fuzz/corpus/recipe. */
#include <stdio.h>
#include <stdlib.h>

#include "format/safetensors.h"
#include "format/synth.h"
#include "fuzz_file.h"
#include "pipeline/plan.h"

static pq_st_model *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    /* 3 layers of width 64 (4 heads of 16), FFN 128: names and shapes as a
     * published ESM-2 has them, small enough to plan in microseconds */
    const pq_esm2_arch arch = {.name = "fuzz", .num_layers = 3, .embed_dim = 64, .attention_heads = 4,
                               .ffn_dim = 128, .vocab_size = 33};
    char path[400];
    snprintf(path, sizeof path, "%s/model.safetensors", pq_fuzz_dir());
    if (pq_synth_write(&arch, 1, PQ_DT_F32, path) != PQ_OK || pq_st_open(path, &g_model) != PQ_OK) {
        fprintf(stderr, "fuzz_recipe: cannot make the model: %s\n", pq_err_detail());
        abort();
    }
    return 0;
}

static void check_plan(const pq_plan *p)
{
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *t = &p->tensors[i];
        if (t->action != PQ_ACT_QUANT) continue;
        const pq_qspec *s = &t->spec;
        int64_t rows = 0;
        for (int u = t->first_unit; u < t->first_unit + t->n_units && u < p->n_units; u++) rows += p->units[u].n_rows;
        if (t->st->ndim != 2 || t->rows != t->st->shape[0] || t->cols != t->st->shape[1] || t->rows <= 0 ||
            t->cols <= 0 || (s->bits != 8 && s->bits != 4) || t->n_units < 1 ||
            t->first_unit + t->n_units > p->n_units || rows != t->rows ||
            (s->gran == PQ_GRAN_GROUP &&
             (s->group_size < 32 || s->group_size > 256 || s->group_size % 2 || t->cols % s->group_size))) {
            fprintf(stderr, "fuzz: plan of '%s': %d-D, %lld x %lld, %d bits, granularity %d, group %d, %d units "
                    "covering %lld rows\n", t->st->name, t->st->ndim, (long long)t->rows, (long long)t->cols,
                    s->bits, (int)s->gran, s->group_size, t->n_units, (long long)rows);
            abort();
        }
    }
}

static void plan_with(const char *recipe, const char *method, bool per_channel)
{
    pq_config c;
    pq_config_defaults(&c);
    c.per_channel = per_channel;
    if (pq_config_set(&c, "method", method) != PQ_OK || pq_config_set(&c, "recipe", recipe) != PQ_OK) abort();
    pq_plan *p = NULL;
    pq_status st = pq_plan_build(g_model, &c, 16 << 10, &p);
    pq_fuzz_check_status(st);
    if (st == PQ_OK) check_plan(p);
    pq_plan_destroy(p);
    pq_config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_err_clear();
    const char *p = pq_fuzz_write(0, "recipe.json", data, size);
    plan_with(p, "rtn", true);
    plan_with(p, "gptq", false);
    return 0;
}
