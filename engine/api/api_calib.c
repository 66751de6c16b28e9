/* SPDX-License-Identifier: Apache-2.0 */
/* api_calib.c - the public calibration calls (proteus.h): collect
 * statistics on this process, add new data to them, load and save a store,
 * export the ranges in another tool's format. The same statistics as
 * `proteus calibrate` on any number of ranks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/proteus.h"
#include "base/pq_io.h"
#include "calib/calib_export.h"
#include "calib/calib_run.h"
#include "format/calib_h5.h"
#include "pq_config.h"

/* The data options of a collection: the config's kernels, the first
 * max_seqs usable sequences (0: all). */
static pq_status data_opts(const pq_config *cfg, int64_t max_seqs, pq_calib_data_opts *o)
{
    *o = (pq_calib_data_opts){.max_seqs = max_seqs};
    return pq_config_apply_hardware(cfg, &o->ops);
}

pq_status pq_calibrate(const pq_config *cfg, const char *model, const char *fasta, int64_t max_seqs,
                       pq_calib **out)
{
    pq_calib_data_opts o;
    pq_status st = data_opts(cfg, max_seqs, &o);
    if (st) return st;
    return pq_calib_collect_file(model, fasta, &o, cfg->threading ? cfg->threads : 1, out);
}

/* Append src's dataset entries to dst's (";"-joined). */
static pq_status join_datasets(pq_calib *dst, const pq_calib *src)
{
    if (!src->datasets) return PQ_OK;
    size_t a = dst->datasets ? strlen(dst->datasets) : 0, b = strlen(src->datasets);
    char *d = realloc(dst->datasets, a + b + 2);
    if (!d) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    snprintf(d + a, b + 2, "%s%s", a ? ";" : "", src->datasets);
    dst->datasets = d;
    return PQ_OK;
}

pq_status pq_calibration_merge(pq_calib *c, pq_calib *add, const char *what)
{
    if (strcmp(c->model_sha256, add->model_sha256))
        return pq_err(PQ_ERR_CALIBRATION, "%s was collected on model sha256 %.16s..., the new data on %.16s...: "
                      "statistics of different models cannot be merged", what, c->model_sha256,
                      add->model_sha256);
    pq_status st = pq_calib_merge(c, add);
    if (!st) st = join_datasets(c, add);
    return st;
}

pq_status pq_calibration_update(pq_calib *c, const pq_config *cfg, const char *model, const char *fasta,
                                int64_t max_seqs)
{
    if (!model) model = c->model_path;
    if (!model) return pq_err(PQ_ERR_CONFIG, "the calibration statistics record no model path: name the model");
    pq_calib *add = NULL;
    pq_status st = pq_calibrate(cfg, model, fasta, max_seqs, &add);
    if (!st) st = pq_calibration_merge(c, add, "the calibration statistics");
    pq_calib_free(add);
    return st;
}

pq_status pq_calibration_load(const char *path, pq_calib **out)
{
    return pq_calib_h5_load(path, out);
}

pq_status pq_calibration_save(const pq_calib *c, const char *path)
{
    pq_status st = pq_calib_check(c, false);
    return st ? st : pq_calib_h5_save(path, c, "proteus " PQ_VERSION);
}

pq_status pq_calibration_export(const pq_calib *c, const char *format, const char *method, bool symmetric,
                                double percentile, const char *path)
{
    if (!strcmp(format, "hdf5")) return pq_calibration_save(c, path);
    int m = pq_calib_method_parse(method);
    if (m < 0)
        return pq_err(PQ_ERR_CONFIG, "calibration method '%s' is unknown (minmax, percentile, entropy, mse)",
                      method);
    char partial[4200];
    if (pq_partial_name(partial, sizeof partial, path))
        return pq_err(PQ_ERR_CONFIG, "%.200s...: path too long", path);
    FILE *f = fopen(partial, "w");
    if (!f) return pq_err(PQ_ERR_IO, "%s: cannot create", partial);
    pq_status st = pq_calib_export(c, format, (pq_calib_method)m, symmetric, percentile, f);
    if (fclose(f) && !st) st = pq_err(PQ_ERR_IO, "%s: write failed", partial);
    if (!st) st = pq_publish(partial, path);
    if (st) remove(partial);
    return st;
}

pq_status pq_calibration_json(const pq_calib *c, const char *method, bool symmetric, char **out)
{
    int m = pq_calib_method_parse(method);
    if (m < 0)
        return pq_err(PQ_ERR_CONFIG, "calibration method '%s' is unknown (minmax, percentile, entropy, mse)",
                      method);
    size_t len = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_calib_export(c, "json", (pq_calib_method)m, symmetric, 99.99, f);
    if (fclose(f) && !st) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    return PQ_OK;
}

void pq_calibration_free(pq_calib *c)
{
    pq_calib_free(c);
}

void pq_free(void *p)
{
    free(p);
}
