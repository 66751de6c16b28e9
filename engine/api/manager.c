/* SPDX-License-Identifier: Apache-2.0 */
/* manager.c - the public API: a config-holding manager over pq_job. */
#include <stdlib.h>
#include <string.h>

#include "calib/calib_run.h"
#include "calib/calib_static.h"
#include "export/export.h"
#include "format/h5model.h"
#include "quant/smooth.h"
#include "api/proteus.h"
#include "worker/gptq_run.h"
#include "worker/runner.h"

/* Units above this size are split into row blocks (bounded memory per unit). */
#define PQ_UNIT_BYTES (64ll << 20)

struct pq_manager {
    pq_config cfg;
    pq_job *last;
    pq_smooth *smooth;         /* the last job's SmoothQuant factors (it borrows them) */
    pq_progress_fn progress;
    void *progress_user;
    char *calib_store, *calib_data; /* owned; NULL: the bundled sample */
};

pq_status pq_manager_create(const pq_config *cfg, pq_manager **out)
{
    pq_manager *m = calloc(1, sizeof *m);
    if (!m) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    m->cfg = *cfg;
    m->cfg.n_include = m->cfg.n_exclude = 0;
    m->cfg.recipe = NULL;
    pq_status st = cfg->recipe ? pq_config_set(&m->cfg, "recipe", cfg->recipe) : PQ_OK;
    for (int i = 0; i < cfg->n_include && !st; i++) st = pq_config_add_pattern(&m->cfg, true, cfg->include[i]);
    for (int i = 0; i < cfg->n_exclude && !st; i++) st = pq_config_add_pattern(&m->cfg, false, cfg->exclude[i]);
    if (st) { pq_manager_destroy(m); return st; }
    *out = m;
    return PQ_OK;
}

void pq_manager_destroy(pq_manager *m)
{
    if (!m) return;
    pq_job_destroy(m->last);
    pq_smooth_free(m->smooth);
    pq_config_free(&m->cfg);
    free(m->calib_store);
    free(m->calib_data);
    free(m);
}

void pq_manager_set_progress(pq_manager *m, pq_progress_fn fn, void *user)
{
    m->progress = fn;
    m->progress_user = user;
}

pq_status pq_manager_set_calibration(pq_manager *m, const char *store, const char *data)
{
    if (store && data)
        return pq_err(PQ_ERR_CONFIG, "calibration: a store (%s) or data (%s), not both", store, data);
    char *s = store ? strdup(store) : NULL, *d = data ? strdup(data) : NULL;
    if ((store && !s) || (data && !d)) {
        free(s);
        free(d);
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    }
    free(m->calib_store);
    free(m->calib_data);
    m->calib_store = s;
    m->calib_data = d;
    return PQ_OK;
}

/* SmoothQuant on this process: the factors from the static scheme's
 * statistics, or from statistics collected on the bundled sample, armed in
 * the job (and the static act scales) before anything is written. */
static pq_status smooth_setup(pq_job *j, const char *model, const char *data, pq_calib_static_run *calib,
                              pq_smooth **out)
{
    pq_calib *own = NULL;
    const pq_calib *c = calib ? pq_calib_static_stats(calib) : NULL;
    pq_status st = PQ_OK;
    if (!c) {
        char def[4096];
        pq_calib_data_opts o = {.ops = *pq_job_ops(j)};
        st = pq_calib_static_default(NULL, &data, def, sizeof def, &o);
        if (!st) st = pq_calib_collect_file(model, data, &o, pq_job_threads(j), &own);
        c = own;
    }
    if (!st) st = pq_smooth_compute(pq_job_model(j), c, pq_job_config(j)->smoothquant_alpha, out);
    if (!st) {
        pq_job_set_smooth(j, *out);
        if (calib) pq_calib_static_set_smooth(calib, *out);
    }
    pq_calib_free(own);
    return st;
}

pq_status pq_quantize_model(pq_manager *m, const char *model_path, const char *out_path)
{
    pq_job *j = NULL;
    pq_smooth *smooth = NULL;
    pq_calib_static_run *calib = NULL;
    if (m->calib_store && !strcmp(m->cfg.method, "gptq"))
        return pq_err(PQ_ERR_CONFIG, "calibration store %s: GPTQ's Hessians need calibration data (a FASTA), "
                      "not a store", m->calib_store);
    pq_status st = pq_job_open(&m->cfg, model_path, PQ_UNIT_BYTES, &j);
    if (st) return st;
    pq_job_set_progress(j, m->progress, m->progress_user);
    /* static: activation scales need statistics before anything is written */
    if (!strcmp(m->cfg.scheme, "static")) st = pq_calib_static_setup(j, model_path, m->calib_store, m->calib_data, &calib);
    if (!st && m->cfg.smoothquant_alpha > 0.0) st = smooth_setup(j, model_path, m->calib_data, calib, &smooth);
    /* GPTQ: layer by layer on the bundled sample (worker/gptq_run.h) */
    const pq_gptq_run_opts go = {.calib_data = m->calib_data, .data = {.ops = *pq_job_ops(j)}};
    if (!st && !(st = pq_job_begin_output(j, out_path, 1, NULL)) &&
        !(st = strcmp(m->cfg.method, "gptq") ? pq_run_local(j) : pq_gptq_run(j, &go, &pq_gptq_comm_local)))
        st = pq_job_finish_output(j);
    pq_calib_static_done(calib);
    if (st) {
        pq_job_destroy(j);
        pq_smooth_free(smooth);
        return st;
    }
    pq_job_destroy(m->last);
    pq_smooth_free(m->smooth);
    m->last = j;
    m->smooth = smooth;
    return PQ_OK;
}

pq_status pq_get_quantization_stats(const pq_manager *m, const pq_job_stats **out)
{
    if (!m->last) return pq_err(PQ_ERR_CONFIG, "no quantization has run on this manager yet");
    *out = pq_job_stats_of(m->last);
    return PQ_OK;
}

pq_status pq_export(pq_manager *m, const char *in_path, const char *out_path, const char *format)
{
    pq_export_opts o = {.fp16 = m && m->cfg.float16};
    pq_status st = pq_export_format_parse(format, &o.format);
    return st ? st : pq_export_run(in_path, out_path, &o);
}
