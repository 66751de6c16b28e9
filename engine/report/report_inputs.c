/* SPDX-License-Identifier: Apache-2.0 */
/* report_inputs.c - loading and checking the JSON of `proteus report`. */
#include "report/report_inputs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report/report_model.h"

/* ---- typed access that names the key on a mismatch ---- */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static pq_status bad(const char *file, const char *path, const char *want, const json_t *v)
{
    return pq_err(PQ_ERR_FORMAT, "%s: %s: expected %s, found %s", file, path, want, type_name(v));
}

/* A number, or "inf", "-inf", "nan" as evaluate writes them; *ok false
 * when v is anything else. */
static double as_num(const json_t *v, bool *ok)
{
    *ok = true;
    if (json_is_number(v)) return json_number_value(v);
    const char *s = json_string_value(v);
    if (s && !strcmp(s, "inf")) return INFINITY;
    if (s && !strcmp(s, "-inf")) return -INFINITY;
    if (s && !strcmp(s, "nan")) return NAN;
    *ok = false;
    return NAN;
}

/* obj[key], its path ("at.key", or "key" at the top level) into path[256];
 * NULL when absent or null. */
static json_t *field(const json_t *obj, const char *key, const char *at, char path[256])
{
    snprintf(path, 256, "%s%s%s", at, *at ? "." : "", key);
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

/* obj[key] as a number in [lo, hi] (NaN passes), NaN when absent or null.
 * `at` is obj's path ("" at the top level). */
static pq_status get_num(const json_t *obj, const char *key, const char *file, const char *at, double lo, double hi,
                         double *out)
{
    char path[256];
    const json_t *v = field(obj, key, at, path);
    bool ok;
    *out = NAN;
    if (!v) return PQ_OK;
    double x = as_num(v, &ok);
    if (!ok) return bad(file, path, "a number", v);
    if (x < lo || x > hi)
        return pq_err(PQ_ERR_FORMAT, "%s: %s: %g is outside [%g, %g]", file, path, x, lo, hi);
    *out = x;
    return PQ_OK;
}

static pq_status get_str(const json_t *obj, const char *key, const char *file, const char *at, const char **out)
{
    char path[256];
    const json_t *v = field(obj, key, at, path);
    *out = v ? json_string_value(v) : NULL;
    return v && !json_is_string(v) ? bad(file, path, "a string", v) : PQ_OK;
}

/* 1 or 0, -1 when absent or null. */
static pq_status get_bool(const json_t *obj, const char *key, const char *file, const char *at, int *out)
{
    char path[256];
    const json_t *v = field(obj, key, at, path);
    *out = v ? json_is_true(v) : -1;
    return v && !json_is_boolean(v) ? bad(file, path, "true or false", v) : PQ_OK;
}

/* obj[key] when it is an array (is_array) or an object; NULL when absent. */
static pq_status get_node(const json_t *obj, const char *key, const char *file, const char *at, bool is_array,
                          json_t **out)
{
    char path[256];
    json_t *v = field(obj, key, at, path);
    *out = v;
    if (v && (is_array ? !json_is_array(v) : !json_is_object(v))) {
        *out = NULL;
        return bad(file, path, is_array ? "an array" : "an object", v);
    }
    return PQ_OK;
}

static pq_status get_array(const json_t *obj, const char *key, const char *file, const char *at, json_t **out)
{
    return get_node(obj, key, file, at, true, out);
}

static pq_status get_object(const json_t *obj, const char *key, const char *file, const char *at, json_t **out)
{
    return get_node(obj, key, file, at, false, out);
}

/* The JSON object in the file at path: PQ_ERR_IO when it cannot be read,
 * PQ_ERR_FORMAT with the line and column when it does not parse. */
static pq_status load_file(const char *path, json_t **out)
{
    *out = NULL;
    if (access(path, R_OK) < 0) return pq_err(PQ_ERR_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line < 0) return pq_err(PQ_ERR_IO, "%s: cannot read: %s", path, je.text);
        return pq_err(PQ_ERR_FORMAT, "%s: not valid JSON: line %d column %d: %s", path, je.line, je.column, je.text);
    }
    if (!json_is_object(root)) {
        pq_status st = pq_err(PQ_ERR_FORMAT, "%s: expected a JSON object at the top level, found %s", path,
                              type_name(root));
        json_decref(root);
        return st;
    }
    *out = root;
    return PQ_OK;
}

/* A layer number of the model: an integer in [0, num_layers). */
static pq_status get_layer(const json_t *v, const char *file, const char *path, int num_layers, int *layer)
{
    if (!json_is_integer(v)) return bad(file, path, "a layer number", v);
    json_int_t l = json_integer_value(v);
    if (l < 0 || l >= num_layers)
        return pq_err(PQ_ERR_FORMAT, "%s: %s: layer %lld is not a layer of the model (%d layers): the JSON is of "
                      "another model", file, path, (long long)l, num_layers);
    *layer = (int)l;
    return PQ_OK;
}

void pq_report_recipe_label(const json_t *recipe, char *buf, size_t n)
{
    const char *prec = json_string_value(json_object_get(recipe, "precision"));
    const json_t *gs = json_object_get(recipe, "group_size"), *sym = json_object_get(recipe, "symmetric");
    const json_t *pc = json_object_get(recipe, "per_channel");
    if (!prec) prec = "?";
    if (strncmp(prec, "int", 3)) {
        snprintf(buf, n, "%s", prec);
        return;
    }
    char gran[32] = "";
    if (json_is_integer(gs) && json_integer_value(gs) > 0)
        snprintf(gran, sizeof gran, " g%lld", (long long)json_integer_value(gs));
    else if (json_is_boolean(pc))
        snprintf(gran, sizeof gran, " %s", json_is_true(pc) ? "channel" : "tensor");
    snprintf(buf, n, "%s%s%s", prec, gran, json_is_boolean(sym) ? (json_is_true(sym) ? " sym" : " asym") : "");
}

/* A recipe object's keys have their types (precision a string, group_size
 * an integer, symmetric and per_channel booleans). */
static pq_status check_recipe(const json_t *r, const char *file, const char *at)
{
    char path[256];
    if (!json_is_object(r)) return bad(file, at, "an object", r);
    const char *s;
    int b;
    pq_status st = get_str(r, "precision", file, at, &s);
    if (!st) st = get_bool(r, "symmetric", file, at, &b);
    if (!st) st = get_bool(r, "per_channel", file, at, &b);
    const json_t *gs = json_object_get(r, "group_size");
    snprintf(path, sizeof path, "%s.group_size", at);
    if (!st && gs && !json_is_null(gs) && !json_is_integer(gs)) st = bad(file, path, "an integer", gs);
    return st;
}

/* ---- evaluate ---- */

static const char *const k_eval_nums[] = {
    "n_sequences", "n_tokens", "n_masked", "n_positions", "threads",
    "perplexity_reference", "perplexity_quantized", "logits_kl_mean", "logits_kl_max",
    "logits_cosine_mean", "embedding_cosine_mean", "file_bytes_reference", "file_bytes_quantized",
    "weight_bytes_reference", "weight_bytes_quantized", "linear_weight_bytes_reference",
    "linear_weight_bytes_quantized", "weight_bytes_reduction", "rss_load_mib_reference",
    "rss_load_mib_quantized", "peak_rss_mib", "tokens_per_s_reference", "tokens_per_s_quantized", "speedup",
    "accuracy_drop_points", "max_drop_points", "ece_reference", "ece_quantized", NULL};
/* fractions */
static const char *const k_eval_fracs[] = {
    "accuracy_reference", "accuracy_quantized", "confidence_reference", "confidence_quantized",
    "top1_error_reference", "top1_error_quantized", "top1_disagreement", NULL};
static const char *const k_eval_strs[] = {"model", "reference", "fasta", "accuracy_gate", NULL};
static const char *const k_util_nums[] = {"achieved_gops", "peak_gops", "fraction", "threads_busy",
                                          "memory_gbps", NULL};

static pq_status check_sqnr(pq_report_eval *e, const json_t *arr, int L)
{
    size_t i;
    const json_t *row;
    char at[64];
    json_array_foreach(arr, i, row) {
        snprintf(at, sizeof at, "linear_sqnr_db[%zu]", i);
        if (!json_is_object(row)) return bad(e->path, at, "an object", row);
        const json_t *lv = json_object_get(row, "layer");
        char lp[80];
        snprintf(lp, sizeof lp, "%s.layer", at);
        if (json_is_string(lv) && !strcmp(json_string_value(lv), "head")) {
            pq_status st = get_num(row, "lm_dense", e->path, at, -INFINITY, INFINITY, &e->head_sqnr);
            if (st) return st;
            continue;
        }
        if (!lv) return pq_err(PQ_ERR_FORMAT, "%s: %s: no \"layer\"", e->path, at);
        int layer = 0;
        pq_status st = get_layer(lv, e->path, lp, L, &layer);
        for (int k = 0; k < PQ_REPORT_N_LINEARS && !st; k++) {
            const char *name = k == 3 && json_object_get(row, "out") ? "out" : pq_report_linear_name(k);
            double *cell = &e->sqnr[(size_t)layer * PQ_REPORT_N_LINEARS + k];
            st = get_num(row, name, e->path, at, -INFINITY, INFINITY, cell);
        }
        if (st) return st;
    }
    return PQ_OK;
}

pq_status pq_report_eval_load(const char *path, int num_layers, pq_report_eval *e)
{
    *e = (pq_report_eval){.path = path, .head_sqnr = NAN};
    double x;
    const char *s;
    json_t *util = NULL, *arr = NULL;
    pq_status st = load_file(path, &e->root);
    for (int i = 0; !st && k_eval_nums[i]; i++)
        st = get_num(e->root, k_eval_nums[i], path, "", -INFINITY, INFINITY, &x);
    for (int i = 0; !st && k_eval_fracs[i]; i++) st = get_num(e->root, k_eval_fracs[i], path, "", 0, 1, &x);
    for (int i = 0; !st && k_eval_strs[i]; i++) st = get_str(e->root, k_eval_strs[i], path, "", &s);
    if (!st) st = get_object(e->root, "utilization", path, "", &util);
    if (!st && util) st = get_str(util, "kernel", path, "utilization", &s);
    for (int i = 0; !st && util && k_util_nums[i]; i++)
        st = get_num(util, k_util_nums[i], path, "utilization", -INFINITY, INFINITY, &x);
    if (!st) st = get_array(e->root, "linear_sqnr_db", path, "", &arr);
    if (!st && arr) {
        size_t n = (size_t)(num_layers > 0 ? num_layers : 1) * PQ_REPORT_N_LINEARS;
        if ((e->sqnr = malloc(n * sizeof *e->sqnr)) == NULL) st = pq_err(PQ_ERR_RESOURCE, "%s: out of memory", path);
        for (size_t i = 0; !st && i < n; i++) e->sqnr[i] = NAN;
        if (!st) st = check_sqnr(e, arr, num_layers);
    }
    if (st) pq_report_eval_free(e);
    return st;
}

void pq_report_eval_free(pq_report_eval *e)
{
    if (!e) return;
    json_decref(e->root);
    free(e->sqnr);
    *e = (pq_report_eval){.head_sqnr = NAN};
}

static const json_t *eval_obj(const pq_report_eval *e, const char *obj)
{
    return obj ? json_object_get(e->root, obj) : e->root;
}

double pq_report_eval_num(const pq_report_eval *e, const char *obj, const char *key)
{
    bool ok;
    const json_t *v = e->root ? json_object_get(eval_obj(e, obj), key) : NULL;
    double x = v ? as_num(v, &ok) : NAN;
    return x;
}

const char *pq_report_eval_str(const pq_report_eval *e, const char *obj, const char *key)
{
    return e->root ? json_string_value(json_object_get(eval_obj(e, obj), key)) : NULL;
}

/* ---- optimize ---- */

static pq_status opt_sens(pq_report_opt *o, const json_t *arr, int L)
{
    size_t i;
    const json_t *row;
    char at[64], p[128];
    if ((o->sens = calloc(json_array_size(arr) + 1, sizeof *o->sens)) == NULL)
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", o->path);
    json_array_foreach(arr, i, row) {
        snprintf(at, sizeof at, "sensitivity[%zu]", i);
        if (!json_is_object(row)) return bad(o->path, at, "an object", row);
        pq_report_sens *s = &o->sens[o->n_sens++];
        const char *lin = NULL;
        json_t *cands = NULL;
        pq_status st = get_str(row, "tensor", o->path, at, &s->tensor);
        if (!st) st = get_str(row, "linear", o->path, at, &lin);
        snprintf(p, sizeof p, "%s.layer", at);
        const json_t *lv = json_object_get(row, "layer");
        if (!st && !lv) st = pq_err(PQ_ERR_FORMAT, "%s: %s: no \"layer\"", o->path, at);
        if (!st) st = get_layer(lv, o->path, p, L, &s->layer);
        if (!st && (s->linear = pq_report_linear_index(lin)) < 0)
            st = pq_err(PQ_ERR_FORMAT, "%s: %s.linear: %s%s%s is not one of q, k, v, o, fc1, fc2", o->path, at,
                        lin ? "'" : "", lin ? lin : "absent", lin ? "'" : "");
        if (!st) st = get_array(row, "candidates", o->path, at, &cands);
        if (st) return st;
        if (!cands) continue;
        if ((s->cand = calloc(json_array_size(cands) + 1, sizeof *s->cand)) == NULL)
            return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", o->path);
        size_t k;
        const json_t *c;
        json_array_foreach(cands, k, c) {
            snprintf(p, sizeof p, "%s.candidates[%zu]", at, k);
            if (!json_is_object(c)) return bad(o->path, p, "an object", c);
            pq_report_cand *d = &s->cand[s->n_cand++];
            const json_t *rec = json_object_get(c, "recipe");
            char rp[160];
            snprintf(rp, sizeof rp, "%s.recipe", p);
            if (rec && (st = check_recipe(rec, o->path, rp))) return st;
            if (rec) pq_report_recipe_label(rec, d->label, sizeof d->label);
            else snprintf(d->label, sizeof d->label, "?");
            if ((st = get_num(c, "bytes", o->path, p, 0, INFINITY, &d->bytes)) ||
                (st = get_num(c, "d_loss", o->path, p, -INFINITY, INFINITY, &d->d_loss)) ||
                (st = get_num(c, "kl", o->path, p, -INFINITY, INFINITY, &d->kl)) ||
                (st = get_num(c, "estimate", o->path, p, -INFINITY, INFINITY, &d->estimate)))
                return st;
        }
    }
    return PQ_OK;
}

static pq_status opt_front(pq_report_opt *o, const json_t *arr)
{
    size_t i;
    const json_t *row;
    char at[64];
    if ((o->front = calloc(json_array_size(arr) + 1, sizeof *o->front)) == NULL)
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", o->path);
    json_array_foreach(arr, i, row) {
        snprintf(at, sizeof at, "front[%zu]", i);
        if (!json_is_object(row)) return bad(o->path, at, "an object", row);
        pq_report_point *pt = &o->front[o->n_front++];
        int chosen;
        pq_status st;
        if ((st = get_str(row, "label", o->path, at, &pt->label)) ||
            (st = get_num(row, "bytes", o->path, at, 0, INFINITY, &pt->bytes)) ||
            (st = get_num(row, "accuracy", o->path, at, 0, 1, &pt->accuracy)) ||
            (st = get_num(row, "kl", o->path, at, -INFINITY, INFINITY, &pt->kl)) ||
            (st = get_num(row, "tokens_per_s", o->path, at, 0, INFINITY, &pt->tokens_per_s)) ||
            (st = get_bool(row, "chosen", o->path, at, &chosen)))
            return st;
        pt->chosen = chosen == 1;
    }
    return PQ_OK;
}

static pq_status opt_rest(pq_report_opt *o)
{
    json_t *cons = NULL, *ch = NULL, *unmet = NULL;
    pq_status st;
    if ((st = get_str(o->root, "model", o->path, "", &o->model)) ||
        (st = get_num(o->root, "estimate_rank_correlation", o->path, "", -1, 1, &o->rank_corr)) ||
        (st = get_object(o->root, "constraints", o->path, "", &cons)) ||
        (cons && (st = get_num(cons, "max_size_bytes", o->path, "constraints", 0, INFINITY, &o->max_size))) ||
        (cons && (st = get_num(cons, "max_drop_points", o->path, "constraints", -INFINITY, INFINITY, &o->max_drop))) ||
        (cons && (st = get_num(cons, "min_speedup", o->path, "constraints", 0, INFINITY, &o->min_speedup))) ||
        (st = get_object(o->root, "chosen", o->path, "", &ch)))
        return st;
    if (ch) {
        o->has_chosen = true;
        if ((st = get_str(ch, "recipe_file", o->path, "chosen", &o->recipe_file)) ||
            (st = get_num(ch, "bytes", o->path, "chosen", 0, INFINITY, &o->c_bytes)) ||
            (st = get_num(ch, "accuracy", o->path, "chosen", 0, 1, &o->c_accuracy)) ||
            (st = get_num(ch, "reference_accuracy", o->path, "chosen", 0, 1, &o->c_reference_accuracy)) ||
            (st = get_num(ch, "drop_points", o->path, "chosen", -INFINITY, INFINITY, &o->c_drop_points)) ||
            (st = get_num(ch, "kl", o->path, "chosen", -INFINITY, INFINITY, &o->c_kl)) ||
            (st = get_bool(ch, "met", o->path, "chosen", &o->c_met)))
            return st;
    }
    if ((st = get_array(o->root, "unmet", o->path, "", &unmet)) || !unmet) return st;
    if ((o->unmet = calloc(json_array_size(unmet) + 1, sizeof *o->unmet)) == NULL)
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", o->path);
    size_t i;
    const json_t *v;
    json_array_foreach(unmet, i, v) {
        char at[48];
        snprintf(at, sizeof at, "unmet[%zu]", i);
        if (!json_is_string(v)) return bad(o->path, at, "a string", v);
        o->unmet[o->n_unmet++] = json_string_value(v);
    }
    return PQ_OK;
}

pq_status pq_report_opt_load(const char *path, int num_layers, pq_report_opt *o)
{
    *o = (pq_report_opt){.path = path, .max_size = NAN, .max_drop = NAN, .min_speedup = NAN, .rank_corr = NAN,
                         .c_met = -1};
    json_t *sens = NULL, *front = NULL;
    pq_status st = load_file(path, &o->root);
    if (!st) st = opt_rest(o);
    if (!st) st = get_array(o->root, "sensitivity", path, "", &sens);
    if (!st && sens) st = opt_sens(o, sens, num_layers);
    if (!st) st = get_array(o->root, "front", path, "", &front);
    if (!st && front) st = opt_front(o, front);
    if (st) pq_report_opt_free(o);
    return st;
}

void pq_report_opt_free(pq_report_opt *o)
{
    if (!o) return;
    for (int64_t i = 0; i < o->n_sens; i++) free(o->sens[i].cand);
    free(o->sens);
    free(o->front);
    free(o->unmet);
    json_decref(o->root);
    *o = (pq_report_opt){0};
}

/* ---- the fallback trail ---- */

pq_status pq_report_trail_parse(const char *text, const char *where, pq_report_trail *t)
{
    *t = (pq_report_trail){0};
    json_error_t je;
    pq_status st = PQ_OK;
    if ((t->root = json_loads(text, JSON_REJECT_DUPLICATES, &je)) == NULL)
        return pq_err(PQ_ERR_FORMAT, "%s: not valid JSON: line %d column %d: %s", where, je.line, je.column, je.text);
    if (!json_is_array(t->root)) {
        st = bad(where, "the trail", "an array of attempts", t->root);
        goto fail;
    }
    if ((t->a = calloc(json_array_size(t->root) + 1, sizeof *t->a)) == NULL) {
        st = pq_err(PQ_ERR_RESOURCE, "%s: out of memory", where);
        goto fail;
    }
    size_t i;
    const json_t *row;
    json_array_foreach(t->root, i, row) {
        char at[48], p[96];
        snprintf(at, sizeof at, "[%zu]", i);
        if (!json_is_object(row)) {
            st = bad(where, at, "an object", row);
            goto fail;
        }
        pq_report_attempt *a = &t->a[t->n++];
        a->attempt = -1;
        const json_t *n = json_object_get(row, "attempt"), *rec = json_object_get(row, "recipe");
        snprintf(p, sizeof p, "%s.attempt", at);
        if (n && !json_is_null(n) && !json_is_integer(n)) st = bad(where, p, "an integer", n);
        else if (n) a->attempt = json_integer_value(n);
        snprintf(p, sizeof p, "%s.recipe", at);
        if (!st && rec && !(st = check_recipe(rec, where, p))) pq_report_recipe_label(rec, a->recipe, sizeof a->recipe);
        if (!st) st = get_str(row, "what", where, at, &a->what);
        if (!st) st = get_array(row, "kept_float", where, at, &a->kept_float);
        if (!st && a->kept_float) {
            size_t k;
            const json_t *v;
            json_array_foreach(a->kept_float, k, v)
                if (!st && !json_is_string(v)) {
                    snprintf(p, sizeof p, "%s.kept_float[%zu]", at, k);
                    st = bad(where, p, "a tensor name", v);
                }
        }
        if (st || (st = get_num(row, "accuracy", where, at, 0, 1, &a->accuracy)) ||
            (st = get_num(row, "reference_accuracy", where, at, 0, 1, &a->reference_accuracy)) ||
            (st = get_num(row, "drop", where, at, -1, 1, &a->drop)) ||
            (st = get_num(row, "kl", where, at, -INFINITY, INFINITY, &a->kl)) ||
            (st = get_num(row, "bytes", where, at, 0, INFINITY, &a->bytes)) ||
            (st = get_bool(row, "accepted", where, at, &a->accepted)))
            goto fail;
    }
    return PQ_OK;
fail:
    pq_report_trail_free(t);
    return st;
}

void pq_report_trail_free(pq_report_trail *t)
{
    if (!t) return;
    free(t->a);
    json_decref(t->root);
    *t = (pq_report_trail){0};
}
