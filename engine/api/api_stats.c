/* SPDX-License-Identifier: Apache-2.0 */
/* api_stats.c - a quantization's statistics as JSON (proteus.h), for
 * callers that would rather not mirror pq_job_stats's layout (bindings). */
#include <jansson.h>
#include <math.h>

#include "api/proteus.h"

static const char *const k_actions[] = {"float", "quantized", "dropped"};

/* A double as JSON; infinities and NaN (an exact tensor's SQNR) as strings. */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_string(v > 0 ? "inf" : v < 0 ? "-inf" : "nan");
}

static json_t *tensor_json(const pq_tensor_stats *t)
{
    json_t *shape = json_array();
    for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
    json_t *o = json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "action", k_actions[t->action], "shape",
                          shape, "bytes_before", (json_int_t)t->bytes_before, "bytes_after",
                          (json_int_t)t->bytes_after);
    if (o && t->action == PQ_ACT_QUANT) {
        json_object_set_new(o, "sqnr_db", num(t->metrics.sqnr_db));
        json_object_set_new(o, "rel_l2", num(t->metrics.rel_l2));
        json_object_set_new(o, "max_abs_err", num(t->metrics.max_abs_err));
        json_object_set_new(o, "n_nonfinite", json_integer(t->metrics.n_nonfinite));
    }
    return o;
}

pq_status pq_stats_json(const pq_job_stats *s, char **out)
{
    json_t *tensors = json_array();
    for (int i = 0; tensors && i < s->n_tensors; i++) json_array_append_new(tensors, tensor_json(&s->tensors[i]));
    json_t *root = json_pack("{s:i, s:i, s:i, s:i, s:I, s:I, s:o, s:o, s:f, s:f, s:o}", "n_tensors", s->n_tensors,
                             "n_quantized", s->n_quantized, "n_float", s->n_float, "n_dropped", s->n_dropped,
                             "bytes_before", (json_int_t)s->bytes_before, "bytes_after",
                             (json_int_t)s->bytes_after, "min_sqnr_db", num(s->min_sqnr_db), "mean_sqnr_db",
                             num(s->mean_sqnr_db), "seconds_total", s->seconds_total, "seconds_quantize",
                             s->seconds_quantize, "tensors", tensors);
    char *txt = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!txt) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    *out = txt;
    return PQ_OK;
}
