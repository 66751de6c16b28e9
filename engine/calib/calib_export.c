/* SPDX-License-Identifier: Apache-2.0 */
/* calib_export.c - JSON, TensorRT cache and ONNX Runtime table exports. */
#include "calib/calib_export.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *np_scalar(float v)
{
    json_t *o = json_object();
    json_object_set_new(o, "data", json_real((double)v));
    json_object_set_new(o, "dtype", json_string("float32"));
    json_object_set_new(o, "CLS", json_string("numpy.array"));
    return o;
}

/* 17 digits: the double of each fp32 value round-trips exactly, as Python's
 * float repr that onnxruntime writes. */
static pq_status dump(json_t *root, FILE *out)
{
    char *s = json_dumps(root, JSON_PRESERVE_ORDER | JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!s) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    int bad = fputs(s, out) < 0 || fputc('\n', out) == EOF;
    free(s);
    return bad ? pq_err(PQ_ERR_IO, "export: write failed") : PQ_OK;
}

pq_status pq_calib_export(const pq_calib *c, const char *format, pq_calib_method m,
                          bool symmetric, double percentile, FILE *out)
{
    pq_status st;
    int f = !strcmp(format, "json") ? 0 : !strcmp(format, "tensorrt") ? 1
          : !strcmp(format, "onnxruntime") ? 2 : -1;
    if (f < 0)
        return pq_err(PQ_ERR_CONFIG, "export format '%s': expected json, tensorrt or onnxruntime", format);
    if ((st = pq_calib_check(c, false))) return st;
    json_t *root = json_object(), *sites = NULL;
    if (f == 2) {
        /* TensorsData.to_dict(): the tensors under "data", then the method */
        static const char *const ort_method[PQ_CALIB_N_METHODS] = {
            "CalibrationMethod.MinMax", "CalibrationMethod.Percentile", "CalibrationMethod.Entropy",
            "CalibrationMethod.MinMax"};
        json_t *cm = json_object();
        sites = json_object();
        json_object_set_new(root, "CLS", json_string("TensorsData"));
        json_object_set_new(root, "data", sites);
        json_object_set_new(cm, "CLS", json_string("CalibrationMethod"));
        json_object_set_new(cm, "value", json_string(ort_method[m]));
        json_object_set_new(root, "calibration_method", cm);
    }
    if (f == 0) {
        json_object_set_new(root, "format", json_string("proteus.calibration.ranges"));
        json_object_set_new(root, "method", json_string(pq_calib_method_name(m)));
        json_object_set_new(root, "symmetric", json_boolean(symmetric));
        if (m == PQ_CALIB_PERCENTILE) json_object_set_new(root, "percentile", json_real(percentile));
        json_object_set_new(root, "model_sha256_tree", json_string(c->model_sha256));
        json_object_set_new(root, "datasets", json_string(c->datasets ? c->datasets : ""));
        json_object_set_new(root, "n_sequences", json_integer((json_int_t)c->n_sequences));
        sites = json_object();
        json_object_set_new(root, "sites", sites);
    }
    if (f == 1)
        fprintf(out, "TRT-8601-%s\n", m == PQ_CALIB_ENTROPY ? "EntropyCalibration2" : "MinMaxCalibration");
    for (int i = 0; i < c->n_sites; i++) {
        const pq_calib_site *s = &c->sites[i];
        pq_calib_range r;
        if ((st = pq_calib_compute(s, m, symmetric, percentile, &r))) { json_decref(root); return st; }
        float scale;
        int32_t zp;
        pq_calib_qparams(&r, symmetric, &scale, &zp);
        if (f == 1) {
            float ts = r.amax / 127.0f;
            uint32_t u;
            memcpy(&u, &ts, sizeof u);
            fprintf(out, "%s: %08x\n", s->name, u);
        } else if (f == 2) {
            json_t *o = json_object();
            json_object_set_new(o, "lowest", np_scalar(symmetric ? -r.amax : r.lo));
            json_object_set_new(o, "highest", np_scalar(symmetric ? r.amax : r.hi));
            json_object_set_new(o, "CLS", json_string("TensorData"));
            json_object_set_new(sites, s->name, o);
        } else {
            json_t *o = json_object();
            json_object_set_new(o, "min", json_real(s->min));
            json_object_set_new(o, "max", json_real(s->max));
            json_object_set_new(o, "count", json_integer((json_int_t)s->count));
            json_object_set_new(o, "lo", json_real(r.lo));
            json_object_set_new(o, "hi", json_real(r.hi));
            json_object_set_new(o, "amax", json_real(r.amax));
            json_object_set_new(o, "scale", json_real(scale));
            if (!symmetric) json_object_set_new(o, "zero_point", json_integer(zp));
            json_object_set_new(o, "saturation", json_real(r.saturation));
            json_object_set_new(o, "mse", json_real(r.mse));
            if (m == PQ_CALIB_ENTROPY) json_object_set_new(o, "kl", isfinite(r.kl) ? json_real(r.kl) : json_null());
            json_object_set_new(sites, s->name, o);
        }
    }
    if (f == 1) {
        json_decref(root);
        return ferror(out) ? pq_err(PQ_ERR_IO, "export: write failed") : PQ_OK;
    }
    return dump(root, out);
}
