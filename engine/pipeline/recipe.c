/* SPDX-License-Identifier: Apache-2.0 */
/* recipe.c - recipe files: rules that give tensors their own precision
 * (recipe.h). */
#include "pipeline/recipe.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYER 4096

typedef struct rule {
    json_t *tensors;            /* borrowed: a string or an array of strings, or NULL */
    bool layer[MAX_LAYER];
    bool any_layer;
    bool linear[PQ_ESM2_FC2 + 1];
    bool any_linear;
    int precision;              /* -1 unset, else an index of k_precisions */
    int per_channel, symmetric; /* -1 unset, else 0/1 */
    int group_size;             /* -1 unset */
    char what[160];             /* "rule N (its JSON)" for messages */
} rule;

static const char *const k_precisions[] = {"int8", "int4", "fp16", "fp32", NULL};
static const char *const k_linears[] = {"q", "k", "v", "o", "fc1", "fc2", NULL};
static const pq_esm2_role k_linear_roles[] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2};

static int index_of(const char *v, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(v, list[i])) return i;
    return -1;
}

__attribute__((format(printf, 3, 4)))
static pq_status bad(const char *path, const rule *r, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return pq_err(PQ_ERR_CONFIG, "recipe %s: %s: %s", path, r->what, why);
}

/* "3", "0-2", "0-2,5" or a JSON integer into r->layer. */
static pq_status parse_layers(const char *path, rule *r, json_t *v)
{
    r->any_layer = true;
    if (json_is_integer(v)) {
        json_int_t l = json_integer_value(v);
        if (l < 0 || l >= MAX_LAYER) return bad(path, r, "layers: %lld is not a layer number", (long long)l);
        r->layer[l] = true;
        return PQ_OK;
    }
    if (!json_is_string(v)) return bad(path, r, "layers: expected a number or a string such as \"0-2,5\"");
    const char *s = json_string_value(v);
    while (*s) {
        char *end;
        errno = 0;
        long a = strtol(s, &end, 10), b = a;
        if (end == s || a < 0 || a >= MAX_LAYER) goto syntax;
        if (*end == '-') {
            const char *t = end + 1;
            b = strtol(t, &end, 10);
            if (end == t || b < a || b >= MAX_LAYER) goto syntax;
        }
        for (long l = a; l <= b; l++) r->layer[l] = true;
        if (*end == ',') end++;
        else if (*end) goto syntax;
        s = end;
    }
    return PQ_OK;
syntax:
    return bad(path, r, "layers: '%s' is not a list of layer numbers and ranges such as \"0-2,5\"",
               json_string_value(v));
}

static pq_status parse_strings(const char *path, rule *r, const char *key, json_t *v)
{
    if (json_is_string(v)) return PQ_OK;
    if (!json_is_array(v) || !json_array_size(v))
        return bad(path, r, "%s: expected a string or a non-empty list of strings", key);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) if (!json_is_string(e))
        return bad(path, r, "%s: expected a string or a non-empty list of strings", key);
    return PQ_OK;
}

static pq_status parse_linears(const char *path, rule *r, json_t *v)
{
    pq_status st = parse_strings(path, r, "linears", v);
    if (st) return st;
    r->any_linear = true;
    for (size_t i = 0; i < (json_is_array(v) ? json_array_size(v) : 1); i++) {
        const char *s = json_string_value(json_is_array(v) ? json_array_get(v, i) : v);
        int k = index_of(s, k_linears);
        if (k < 0) return bad(path, r, "linears: '%s' is not one of q, k, v, o, fc1, fc2", s);
        r->linear[k_linear_roles[k]] = true;
    }
    return PQ_OK;
}

static pq_status parse_bool(const char *path, rule *r, const char *key, json_t *v, int *out)
{
    if (!json_is_boolean(v)) return bad(path, r, "%s: expected true or false", key);
    *out = json_is_true(v);
    return PQ_OK;
}

static pq_status parse_rule(const char *path, json_t *o, rule *r)
{
    pq_status st = PQ_OK;
    const char *key;
    json_t *v;
    r->precision = r->per_channel = r->symmetric = r->group_size = -1;
    if (!json_is_object(o)) return bad(path, r, "expected an object");
    json_object_foreach(o, key, v) {
        if (!strcmp(key, "tensors")) {
            if (!(st = parse_strings(path, r, key, v))) r->tensors = v;
        } else if (!strcmp(key, "layers")) {
            st = parse_layers(path, r, v);
        } else if (!strcmp(key, "linears")) {
            st = parse_linears(path, r, v);
        } else if (!strcmp(key, "precision")) {
            if (!json_is_string(v) || (r->precision = index_of(json_string_value(v), k_precisions)) < 0)
                st = bad(path, r, "precision: %s is not one of int8, int4, fp16, fp32",
                         json_is_string(v) ? json_string_value(v) : "the value");
        } else if (!strcmp(key, "per_channel")) {
            st = parse_bool(path, r, key, v, &r->per_channel);
        } else if (!strcmp(key, "symmetric")) {
            st = parse_bool(path, r, key, v, &r->symmetric);
        } else if (!strcmp(key, "group_size")) {
            json_int_t g = json_is_integer(v) ? json_integer_value(v) : -1;
            if (g != 0 && (g < 32 || g > 256 || g % 2))
                st = bad(path, r, "group_size: must be 0 (off) or an even number in [32, 256]");
            r->group_size = (int)g;
        } else {
            st = bad(path, r, "unknown key '%s' (known: tensors, layers, linears, precision, per_channel, "
                     "group_size, symmetric)", key);
        }
        if (st) return st;
    }
    if (!r->tensors && !r->any_layer && !r->any_linear)
        return bad(path, r, "no selector: give tensors, layers or linears");
    if (r->precision >= 2 && (r->per_channel >= 0 || r->symmetric >= 0 || r->group_size >= 0))
        return bad(path, r, "precision %s keeps the tensor in float: per_channel, group_size and symmetric have "
                   "no meaning with it", k_precisions[r->precision]);
    if (r->per_channel == 1 && r->group_size > 0)
        return bad(path, r, "group_size %d and per_channel are exclusive", r->group_size);
    return PQ_OK;
}

static bool name_matches(json_t *pats, const char *name)
{
    if (json_is_string(pats)) return fnmatch(json_string_value(pats), name, 0) == 0;
    size_t i;
    json_t *e;
    json_array_foreach(pats, i, e) if (fnmatch(json_string_value(e), name, 0) == 0) return true;
    return false;
}

/* Whether rule r selects tensor pt (its selectors, and what its precision
 * can apply to). */
static bool selects(const rule *r, const pq_plan_tensor *pt)
{
    if (pt->action == PQ_ACT_DROP) return false;
    if (r->tensors && !name_matches(r->tensors, pt->st->name)) return false;
    if (r->any_layer && (pt->layer < 0 || pt->layer >= MAX_LAYER || !r->layer[pt->layer])) return false;
    if (r->any_linear && (!pq_esm2_role_is_linear(pt->role) || !r->linear[pt->role])) return false;
    if (r->precision < 2 && pt->st->ndim != 2) return false; /* int: 2-D tensors only */
    return true;
}

/* Give pt rule r's recipe over the config's defaults. */
static pq_status apply(const char *path, const pq_config *c, const rule *r, pq_plan_tensor *pt)
{
    if (r->precision >= 2) {
        pt->action = PQ_ACT_FLOAT;
        pt->float16 = r->precision == 2;
        return PQ_OK;
    }
    pq_qspec s = pq_config_qspec(c);
    if (r->precision >= 0) s.bits = r->precision == 0 ? 8 : 4;
    if (r->symmetric >= 0) s.symmetric = r->symmetric;
    if (r->group_size > 0) {
        s.gran = PQ_GRAN_GROUP;
        s.group_size = r->group_size;
    } else if (r->group_size == 0 || r->per_channel >= 0) {
        bool ch = r->per_channel >= 0 ? r->per_channel : c->per_channel;
        s.gran = ch ? PQ_GRAN_CHANNEL : PQ_GRAN_TENSOR;
        s.group_size = 0;
    }
    const int64_t cols = pt->st->shape[1];
    if (s.gran == PQ_GRAN_GROUP && cols % s.group_size)
        return bad(path, r, "group_size %d does not divide the %lld columns of %s", s.group_size, (long long)cols,
                   pt->st->name);
    if (!strcmp(c->method, "gptq") && pq_esm2_role_is_linear(pt->role) && s.gran == PQ_GRAN_TENSOR)
        return bad(path, r, "%s: method gptq needs per-channel or group scales, not one per tensor",
                   pt->st->name);
    pt->action = PQ_ACT_QUANT;
    pt->spec = s;
    return PQ_OK;
}

pq_status pq_recipe_apply(const char *path, const pq_config *c, pq_plan *p)
{
    json_error_t jerr;
    pq_status st = PQ_OK;
    rule *rules = NULL;
    int *won = NULL;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f) return pq_err(PQ_ERR_IO, "recipe %s: cannot read it: %s", path, strerror(errno));
        fclose(f);
        return pq_err(PQ_ERR_CONFIG, "recipe %s: line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
    }
    if (c->smoothquant_alpha > 0.0) {
        st = pq_err(PQ_ERR_CONFIG, "recipe %s: a recipe and smoothquant_alpha together are not supported", path);
        goto cleanup;
    }
    json_t *list = json_object_get(root, "rules");
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(list) || !json_array_size(list)) {
        st = pq_err(PQ_ERR_CONFIG, "recipe %s: expected an object with one key, \"rules\": a non-empty list of "
                    "rules", path);
        goto cleanup;
    }
    const size_t n = json_array_size(list);
    if (!(rules = calloc(n, sizeof *rules)) || !(won = calloc(n, sizeof *won))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory reading recipe %s", path);
        goto cleanup;
    }
    for (size_t i = 0; i < n && !st; i++) {
        char *text = json_dumps(json_array_get(list, i), JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(rules[i].what, sizeof rules[i].what, "rule %zu (%.120s)", i + 1, text ? text : "?");
        free(text);
        st = parse_rule(path, json_array_get(list, i), &rules[i]);
    }
    for (int t = 0; t < p->n_tensors && !st; t++) {
        pq_plan_tensor *pt = &p->tensors[t];
        for (size_t i = 0; i < n; i++) {
            if (!selects(&rules[i], pt)) continue;
            won[i]++;
            st = apply(path, c, &rules[i], pt);
            break;
        }
    }
    for (size_t i = 0; i < n && !st; i++)
        if (!won[i])
            st = bad(path, &rules[i], "matches no tensor that an earlier rule has not taken (int8/int4 apply to "
                     "2-D tensors only)");
cleanup:
    free(rules);
    free(won);
    json_decref(root);
    return st;
}
