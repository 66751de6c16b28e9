/* SPDX-License-Identifier: Apache-2.0 */
/* calib_static.c - act qparams + /calibration for the static scheme, where
 * its statistics come from, and the job hook that writes them. */
#include "calib/calib_static.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bundled.h"
#include "base/log.h"
#include "format/calib_h5.h"
#include "format/st_hash.h"
#include "quant/smooth.h"

pq_status pq_calib_static_write(pq_h5w *w, const pq_plan *p, const pq_calib_static *s)
{
    pq_status st;
    const pq_calib *c = s->calib;
    if ((st = pq_calib_check(c, false))) return st;
    float *scale = calloc((size_t)c->n_sites, sizeof *scale);
    int32_t *zp = calloc((size_t)c->n_sites, sizeof *zp);
    bool *done = calloc((size_t)c->n_sites, sizeof *done);
    if (!scale || !zp || !done) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *pt = &p->tensors[i];
        char site[64];
        if (pt->action != PQ_ACT_QUANT || !pq_calib_site_of_weight(pt->st->name, site, sizeof site))
            continue;
        const pq_calib_site *cs = pq_calib_find(c, site);
        if (!cs) {
            st = pq_err(PQ_ERR_CALIBRATION, "tensor '%s': calibration site %s is not in the "
                        "statistics (architecture mismatch?)", pt->st->name, site);
            goto cleanup;
        }
        int k = (int)(cs - c->sites);
        if (!done[k]) {
            pq_calib_range r;
            if (!pq_smooth_site_range(s->smooth, cs, &r) &&
                (st = pq_calib_compute(cs, s->method, s->symmetric, s->percentile, &r)))
                goto cleanup;
            pq_calib_qparams(&r, s->symmetric, &scale[k], &zp[k]);
            done[k] = true;
        }
        if ((st = pq_h5w_put_act_qparams(w, pt->st->name, scale[k], s->symmetric ? NULL : &zp[k])))
            goto cleanup;
    }
    st = pq_calib_h5_put(w, c);
cleanup:
    free(scale);
    free(zp);
    free(done);
    return st;
}

pq_status pq_calib_default_data(char *buf, size_t n)
{
    char tried[2048];
    if (pq_bundled_find("proteins/calib_sample.fasta", buf, n, tried, sizeof tried)) {
        PQ_LOG_INFO("calibration data: the bundled %s", buf);
        return PQ_OK;
    }
    return pq_err(PQ_ERR_CALIBRATION, "no calibration data given and the bundled "
                  "proteins/calib_sample.fasta was not found (tried %s; $PROTEUS_DATA_DIR "
                  "names the folder that holds proteins/): pass --calibration-data "
                  "FILE.fasta or --calibration calib.h5", tried);
}

pq_status pq_calib_static_default(const char *store, const char **data, char *buf, size_t n,
                                  pq_calib_data_opts *o)
{
    if (store || *data) return PQ_OK;
    pq_status st = pq_calib_default_data(buf, n);
    if (st) return st;
    *data = buf;
    o->max_seqs = PQ_CALIB_DEFAULT_SEQS;
    return PQ_OK;
}

pq_status pq_calib_static_load_store(const char *store, const pq_job *j, pq_calib **out)
{
    char sha[65];
    pq_calib *c = NULL;
    *out = NULL;
    pq_status st = pq_calib_h5_load(store, &c);
    if (!st) st = pq_st_hash_tree(pq_job_model(j), PQ_HASH_CHUNK_BYTES, pq_job_threads(j), sha);
    if (!st && strcmp(sha, c->model_sha256))
        st = pq_err(PQ_ERR_CALIBRATION, "%s was collected on model sha256 %.16s..., the "
                    "model to quantize is %.16s...", store, c->model_sha256, sha);
    if (st) {
        pq_calib_free(c);
        return st;
    }
    *out = c;
    return PQ_OK;
}

struct pq_calib_static_run {
    pq_calib *calib;
    pq_calib_static spec;
};

static pq_status static_hook(void *user, pq_h5w *w, const pq_plan *p)
{
    pq_calib_static_run *r = user;
    return pq_calib_static_write(w, p, &r->spec);
}

pq_status pq_calib_static_arm(pq_job *j, pq_calib *calib, pq_calib_static_run **out)
{
    pq_calib_static_run *r = NULL;
    *out = NULL;
    pq_status st = pq_calib_check(calib, false);
    if (!st && !(r = calloc(1, sizeof *r))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (st) {
        pq_calib_free(calib);
        return st;
    }
    const pq_config *cfg = pq_job_config(j);
    int m = pq_calib_method_parse(cfg->calibration_method);
    r->calib = calib;
    r->spec = (pq_calib_static){.calib = calib, .method = m < 0 ? PQ_CALIB_MINMAX : m,
                                .symmetric = cfg->symmetric, .percentile = 99.99};
    pq_job_set_before_commit(j, static_hook, r);
    *out = r;
    return PQ_OK;
}

const pq_calib *pq_calib_static_stats(const pq_calib_static_run *r) { return r ? r->calib : NULL; }
void pq_calib_static_set_smooth(pq_calib_static_run *r, const struct pq_smooth *sm) { r->spec.smooth = sm; }

void pq_calib_static_done(pq_calib_static_run *r)
{
    if (!r) return;
    pq_calib_free(r->calib);
    free(r);
}

pq_status pq_calib_static_setup(pq_job *j, const char *model, const char *store, const char *data,
                                pq_calib_static_run **out)
{
    char def[4096];
    pq_calib_data_opts o = {.ops = *pq_job_ops(j)}; /* the job's kernels */
    pq_calib *c = NULL;
    *out = NULL;
    pq_status st = pq_calib_static_default(store, &data, def, sizeof def, &o);
    if (!st && store) st = pq_calib_static_load_store(store, j, &c);
    else if (!st) st = pq_calib_collect_file(model, data, &o, pq_job_threads(j), &c);
    if (st) return st;
    return pq_calib_static_arm(j, c, out);
}
