/* SPDX-License-Identifier: Apache-2.0 */
/* config.c - quantization configuration from defaults, JSON and options. */
#include "pipeline/config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/h5model.h"
#include "kernels/pq_cuda.h"

static const char *const known_keys =
    "scheme, precision, per_channel, group_size, symmetric, calibration_method, "
    "hardware_target, optimize_memory, enable_fusion, threading, threads, nan_policy, "
    "float_dtype, include, exclude, smoothquant_alpha, method, gptq_damp, gptq_block_size, act_order, recipe, "
    "fallback_scheme, allow_accuracy_drop, digest";

void pq_config_defaults(pq_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->scheme, sizeof c->scheme, "dynamic");
    c->bits = 8;
    c->per_channel = false;
    c->symmetric = true;
    snprintf(c->calibration_method, sizeof c->calibration_method, "minmax");
    snprintf(c->hardware_target, sizeof c->hardware_target, "cpu");
    c->optimize_memory = true;
    c->enable_fusion = true;
    c->threading = true;
    c->nan_policy = PQ_NAN_ERROR;
    snprintf(c->method, sizeof c->method, "rtn");
    c->gptq_damp = 0.01;
    c->gptq_block_size = 128;
    c->allow_accuracy_drop = NAN;
    c->digest = pq_digest_default();
}

void pq_config_free(pq_config *c)
{
    for (int i = 0; i < c->n_include; i++) free(c->include[i]);
    for (int i = 0; i < c->n_exclude; i++) free(c->exclude[i]);
    c->n_include = c->n_exclude = 0;
    free(c->recipe);
    c->recipe = NULL;
    for (int i = 0; i < c->n_overrides; i++) free(c->overrides[i].name);
    free(c->overrides);
    c->overrides = NULL;
    c->n_overrides = 0;
}

pq_status pq_config_override(pq_config *c, const char *name, bool quantized, const pq_qspec *spec, bool float16)
{
    int i = 0;
    while (i < c->n_overrides && strcmp(c->overrides[i].name, name)) i++;
    if (i == c->n_overrides) {
        pq_tensor_override *o = realloc(c->overrides, (size_t)(i + 1) * sizeof *o);
        char *copy = strdup(name);
        if (o) c->overrides = o;
        if (!o || !copy) {
            free(copy);
            return pq_err(PQ_ERR_RESOURCE, "out of memory");
        }
        c->overrides[i] = (pq_tensor_override){.name = copy};
        c->n_overrides++;
    }
    pq_tensor_override *o = &c->overrides[i];
    o->quantized = quantized;
    o->spec = quantized && spec ? *spec : (pq_qspec){0};
    o->float16 = !quantized && float16;
    return PQ_OK;
}

static int one_of(const char *v, const char *const *allowed)
{
    for (int i = 0; allowed[i]; i++)
        if (!strcmp(v, allowed[i])) return i;
    return -1;
}

static void join(const char *const *allowed, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; allowed[i]; i++) {
        if (i) strncat(buf, ", ", n - strlen(buf) - 1);
        strncat(buf, allowed[i], n - strlen(buf) - 1);
    }
}

static pq_status bad_value(const char *key, const char *v, const char *const *allowed)
{
    char list[256];
    join(allowed, list, sizeof list);
    return pq_err(PQ_ERR_CONFIG, "config key '%s': '%s' is not one of %s", key, v, list);
}

static pq_status parse_bool(const char *key, const char *v, bool *out)
{
    static const char *const b[] = {"true", "false", "1", "0", "yes", "no", "on", "off", NULL};
    int i = one_of(v, b);
    if (i < 0) return bad_value(key, v, (const char *const[]){"true", "false", NULL});
    *out = (i % 2) == 0;
    return PQ_OK;
}

static pq_status parse_int(const char *key, const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return pq_err(PQ_ERR_CONFIG, "config key '%s': '%s' is not an integer in [%ld, %ld]",
                      key, v, lo, hi);
    *out = (int)x;
    return PQ_OK;
}

/* A number in (0, 1]; `hint` follows the range in the error. */
static pq_status parse_fraction(const char *key, const char *v, const char *hint, double *out)
{
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || *end || !(x > 0.0 && x <= 1.0))
        return pq_err(PQ_ERR_CONFIG, "config key '%s': '%s' is not a number in (0, 1] (%s)", key, v, hint);
    *out = x;
    return PQ_OK;
}

pq_status pq_config_set(pq_config *c, const char *key, const char *v)
{
    static const char *const schemes[] = {"dynamic", "static", "weight-only", NULL};
    static const char *const precisions[] = {"int8", "int4", NULL};
    static const char *const methods[] = {"minmax", "entropy", "percentile", "mse", NULL};
    static const char *const targets[] = {"cpu", "ref", "avx2", "avx512", "cuda", NULL};
    static const char *const policies[] = {"error", "zero", "keep", NULL};
    static const char *const fdtypes[] = {"fp32", "fp16", NULL};
    int i;
    if (!strcmp(key, "scheme")) {
        if (one_of(v, schemes) < 0) return bad_value(key, v, schemes);
        snprintf(c->scheme, sizeof c->scheme, "%s", v);
    } else if (!strcmp(key, "precision")) {
        if ((i = one_of(v, precisions)) < 0) return bad_value(key, v, precisions);
        c->bits = i == 0 ? 8 : 4;
    } else if (!strcmp(key, "per_channel")) {
        return parse_bool(key, v, &c->per_channel);
    } else if (!strcmp(key, "symmetric")) {
        return parse_bool(key, v, &c->symmetric);
    } else if (!strcmp(key, "optimize_memory")) {
        return parse_bool(key, v, &c->optimize_memory);
    } else if (!strcmp(key, "enable_fusion")) {
        return parse_bool(key, v, &c->enable_fusion);
    } else if (!strcmp(key, "threading")) {
        return parse_bool(key, v, &c->threading);
    } else if (!strcmp(key, "group_size")) {
        int g = 0;
        pq_status st = parse_int(key, v, 0, 256, &g);
        if (st) return st;
        if (g != 0 && (g < 32 || g % 2))
            return pq_err(PQ_ERR_CONFIG, "config key 'group_size': %d must be 0 (off) or an even "
                          "number in [32, 256]", g);
        c->group_size = g;
    } else if (!strcmp(key, "threads")) {
        return parse_int(key, v, 0, 4096, &c->threads);
    } else if (!strcmp(key, "calibration_method")) {
        if (one_of(v, methods) < 0) return bad_value(key, v, methods);
        snprintf(c->calibration_method, sizeof c->calibration_method, "%s", v);
    } else if (!strcmp(key, "hardware_target")) {
        if (one_of(v, targets) < 0) return bad_value(key, v, targets);
        snprintf(c->hardware_target, sizeof c->hardware_target, "%s", v);
    } else if (!strcmp(key, "nan_policy")) {
        if ((i = one_of(v, policies)) < 0) return bad_value(key, v, policies);
        c->nan_policy = i == 0 ? PQ_NAN_ERROR : i == 1 ? PQ_NAN_ZERO : PQ_NAN_KEEP_FLOAT;
    } else if (!strcmp(key, "float_dtype")) {
        if ((i = one_of(v, fdtypes)) < 0) return bad_value(key, v, fdtypes);
        c->float16 = i == 1;
    } else if (!strcmp(key, "include") || !strcmp(key, "exclude")) {
        return pq_config_add_pattern(c, key[0] == 'i', v);
    } else if (!strcmp(key, "recipe")) {
        char *r = strdup(v);
        if (!r) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        free(c->recipe);
        c->recipe = r;
    } else if (!strcmp(key, "method")) {
        static const char *const rounders[] = {"rtn", "gptq", NULL};
        if (one_of(v, rounders) < 0) return bad_value(key, v, rounders);
        snprintf(c->method, sizeof c->method, "%s", v);
    } else if (!strcmp(key, "gptq_damp")) {
        return parse_fraction(key, v, "a fraction of the mean Hessian diagonal; 0.01 is the paper's default",
                              &c->gptq_damp);
    } else if (!strcmp(key, "gptq_block_size")) {
        return parse_int(key, v, 1, 4096, &c->gptq_block_size);
    } else if (!strcmp(key, "act_order")) {
        return parse_bool(key, v, &c->act_order);
    } else if (!strcmp(key, "digest")) {
        static const char *const digests[] = {"xxh3", "sha256", NULL};
        pq_digest_alg a;
        if (!pq_digest_parse(v, &a)) return bad_value(key, v, digests);
        if (!pq_digest_available(a))
            return pq_err(PQ_ERR_CONFIG, "config key 'digest': '%s' is not in this build (built without "
                          "libxxhash); use sha256", v);
        c->digest = a;
    } else if (!strcmp(key, "fallback_scheme")) {
        if (!strcmp(v, "none") || !strcmp(v, "null")) {
            c->fallback_scheme[0] = '\0';
            return PQ_OK;
        }
        if (one_of(v, schemes) < 0) return bad_value(key, v, schemes);
        snprintf(c->fallback_scheme, sizeof c->fallback_scheme, "%s", v);
    } else if (!strcmp(key, "allow_accuracy_drop")) {
        char *end = NULL;
        double x = strtod(v, &end);
        if (!strcmp(v, "null")) {
            c->allow_accuracy_drop = NAN;
            return PQ_OK;
        }
        if (end == v || *end || !(x >= 0.0 && x <= 1.0))
            return pq_err(PQ_ERR_CONFIG, "config key 'allow_accuracy_drop': '%s' is not a number in [0, 1] (a "
                          "fraction of masked-LM accuracy: 0.01 allows one percentage point)", v);
        c->allow_accuracy_drop = x;
    } else if (!strcmp(key, "smoothquant_alpha")) {
        if (!strcmp(v, "off") || !strcmp(v, "null")) {
            c->smoothquant_alpha = 0.0;
            return PQ_OK;
        }
        return parse_fraction(key, v, "0.5 is the paper's default; off: leave the key out", &c->smoothquant_alpha);
    } else {
        return pq_err(PQ_ERR_CONFIG, "unknown config key '%s' (allowed: %s)", key, known_keys);
    }
    return PQ_OK;
}

pq_status pq_config_add_pattern(pq_config *c, bool include, const char *pattern)
{
    int *n = include ? &c->n_include : &c->n_exclude;
    char **list = include ? c->include : c->exclude;
    if (!*pattern) return pq_err(PQ_ERR_CONFIG, "empty %s pattern", include ? "include" : "exclude");
    if (*n >= PQ_MAX_PATTERNS)
        return pq_err(PQ_ERR_CONFIG, "too many %s patterns (at most %d)",
                      include ? "include" : "exclude", PQ_MAX_PATTERNS);
    if (!(list[*n] = strdup(pattern))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    (*n)++;
    return PQ_OK;
}

/* A JSON value as the string pq_config_set expects, or an error naming the
 * key when its JSON type is wrong. */
static pq_status json_scalar(const char *file, const char *key, json_t *v, char *buf, size_t n)
{
    if (json_is_string(v)) snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_true(v)) snprintf(buf, n, "true");
    else if (json_is_false(v)) snprintf(buf, n, "false");
    else if (json_is_integer(v)) snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(buf, n, "%.17g", json_real_value(v));
    else if (json_is_null(v)) snprintf(buf, n, "null");
    else
        return pq_err(PQ_ERR_CONFIG, "config %s: key '%s' has a value of the wrong type", file, key);
    return PQ_OK;
}

pq_status pq_config_load_json(pq_config *c, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    pq_status st = PQ_OK;
    if (!root) {
        FILE *f = fopen(path, "r");
        if (!f) return pq_err(PQ_ERR_IO, "config %s: %s", path, strerror(errno));
        fclose(f);
        return pq_err(PQ_ERR_CONFIG, "config %s: line %d: %s", path, jerr.line, jerr.text);
    }
    if (!json_is_object(root)) {
        st = pq_err(PQ_ERR_CONFIG, "config %s: top level must be a JSON object", path);
        goto cleanup;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        char buf[512];
        if (json_is_array(v) && (!strcmp(key, "include") || !strcmp(key, "exclude"))) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (!json_is_string(e)) {
                    st = pq_err(PQ_ERR_CONFIG, "config %s: '%s' must be a list of strings", path, key);
                    goto cleanup;
                }
                if ((st = pq_config_add_pattern(c, key[0] == 'i', json_string_value(e)))) goto cleanup;
            }
            continue;
        }
        /* strings as they are (a long include pattern must not be cut to
         * the buffer), other scalars as their text */
        if (!json_is_string(v) && (st = json_scalar(path, key, v, buf, sizeof buf))) goto cleanup;
        if ((st = pq_config_set(c, key, json_is_string(v) ? json_string_value(v) : buf))) {
            char why[512];
            snprintf(why, sizeof why, "%s", pq_err_detail());
            pq_err_replace(st, "config %s: %s", path, why);
            goto cleanup;
        }
    }
cleanup:
    json_decref(root);
    return st;
}

pq_status pq_config_validate(const pq_config *c)
{
    if (c->group_size && c->per_channel)
        return pq_err(PQ_ERR_CONFIG, "group_size %d and per_channel are exclusive: group-wise "
                      "scales are already per output row", c->group_size);
    if (strcmp(c->calibration_method, "minmax") && strcmp(c->scheme, "static"))
        return pq_err(PQ_ERR_CONFIG, "calibration_method '%s' needs calibration data: the %s "
                      "scheme observes weights with minmax only", c->calibration_method, c->scheme);
    if (c->smoothquant_alpha > 0.0 && !strcmp(c->scheme, "weight-only"))
        return pq_err(PQ_ERR_CONFIG, "smoothquant_alpha: SmoothQuant is for int8 activations; the "
                      "weight-only scheme keeps them in fp32");
    if (!strcmp(c->method, "gptq") && !c->per_channel && !c->group_size)
        return pq_err(PQ_ERR_CONFIG, "method gptq needs per-channel or group scales (--per-channel or "
                      "--group-size): GPTQ updates a row's remaining weights as it quantizes them, which "
                      "one scale for the whole tensor cannot follow");
    if (c->smoothquant_alpha > 0.0 && !strcmp(c->method, "gptq"))
        return pq_err(PQ_ERR_CONFIG, "smoothquant_alpha and method gptq together are not supported: "
                      "GPTQ reads the Linears' weights outside the smoothing transform");
    if (c->smoothquant_alpha > 0.0 && (c->bits != 8 || c->group_size))
        return pq_err(PQ_ERR_CONFIG, "smoothquant_alpha: SmoothQuant is supported for W8A8 (int8 weights "
                      "with tensor or channel scales, activations quantized), not with %s",
                      c->bits != 8 ? "int4" : "group_size");
    if (c->smoothquant_alpha > 0.0 && !strcmp(c->scheme, "static") && strcmp(c->calibration_method, "minmax"))
        return pq_err(PQ_ERR_CONFIG, "smoothquant_alpha with the static scheme takes the smoothed "
                      "sites' act scales from the rescaled per-channel maxima: calibration_method must "
                      "be minmax, not '%s'", c->calibration_method);
    return PQ_OK;
}

pq_qspec pq_config_qspec(const pq_config *c)
{
    pq_qspec s = {.bits = c->bits, .symmetric = c->symmetric, .group_size = c->group_size};
    s.gran = c->group_size ? PQ_GRAN_GROUP : c->per_channel ? PQ_GRAN_CHANNEL : PQ_GRAN_TENSOR;
    return s;
}

char *pq_config_to_json(const pq_config *c)
{
    static const char *const policies[] = {"error", "zero", "keep"};
    json_t *o = json_object(), *inc = json_array(), *exc = json_array();
    json_object_set_new(o, "scheme", json_string(c->scheme));
    json_object_set_new(o, "precision", json_string(c->bits == 8 ? "int8" : "int4"));
    json_object_set_new(o, "per_channel", json_boolean(c->per_channel));
    json_object_set_new(o, "group_size", json_integer(c->group_size));
    json_object_set_new(o, "symmetric", json_boolean(c->symmetric));
    json_object_set_new(o, "calibration_method", json_string(c->calibration_method));
    json_object_set_new(o, "hardware_target", json_string(c->hardware_target));
    json_object_set_new(o, "optimize_memory", json_boolean(c->optimize_memory));
    json_object_set_new(o, "enable_fusion", json_boolean(c->enable_fusion));
    json_object_set_new(o, "threading", json_boolean(c->threading));
    json_object_set_new(o, "nan_policy", json_string(policies[c->nan_policy]));
    json_object_set_new(o, "float_dtype", json_string(c->float16 ? "fp16" : "fp32"));
    json_object_set_new(o, "method", json_string(c->method));
    json_object_set_new(o, "digest", json_string(c->digest == PQ_DIGEST_XXH3 ? "xxh3" : "sha256"));
    if (!strcmp(c->method, "gptq")) {
        json_object_set_new(o, "gptq_damp", json_real(c->gptq_damp));
        json_object_set_new(o, "gptq_block_size", json_integer(c->gptq_block_size));
        json_object_set_new(o, "act_order", json_boolean(c->act_order));
    }
    if (c->smoothquant_alpha > 0.0) json_object_set_new(o, "smoothquant_alpha", json_real(c->smoothquant_alpha));
    if (c->fallback_scheme[0]) json_object_set_new(o, "fallback_scheme", json_string(c->fallback_scheme));
    if (!isnan(c->allow_accuracy_drop))
        json_object_set_new(o, "allow_accuracy_drop", json_real(c->allow_accuracy_drop));
    if (c->n_overrides) {
        /* the fallback's per-tensor steps: part of what the file is */
        json_t *ov = json_object();
        for (int i = 0; i < c->n_overrides; i++) {
            const pq_tensor_override *t = &c->overrides[i];
            char text[96];
            pq_h5_recipe_text(text, sizeof text, t->quantized, &t->spec, c->method, t->float16);
            json_object_set_new(ov, t->name, json_string(text));
        }
        json_object_set_new(o, "tensor_overrides", ov);
    }
    for (int i = 0; i < c->n_include; i++) json_array_append_new(inc, json_string(c->include[i]));
    for (int i = 0; i < c->n_exclude; i++) json_array_append_new(exc, json_string(c->exclude[i]));
    json_object_set_new(o, "include", inc);
    json_object_set_new(o, "exclude", exc);
    /* threads is deliberately left out: output must not depend on it */
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return s;
}

/* A CPU context by name, or PQ_ERR_HARDWARE saying what is available; `what`
 * names where the name came from ("hardware_target", "PQ_KERNELS"), `cuda`
 * whether cuda is one of its choices. */
static pq_status select_cpu_ops(const char *what, const char *name, bool cuda, pq_ops *ops)
{
    char avail[64];
    pq_kstatus k = pq_ops_select(name, ops);
    if (k == PQ_KOK) return PQ_OK;
    pq_ops_available(avail, sizeof avail);
    if (k == PQ_KNOCPU)
        return pq_err(PQ_ERR_HARDWARE, "%s '%s': this CPU lacks %s (available: %s)", what, name,
                      pq_ops_needs(name), avail);
    if (k == PQ_KNOTBUILT)
        return pq_err(PQ_ERR_HARDWARE, "%s '%s': not compiled into this build (available: %s)",
                      what, name, avail);
    return pq_err(PQ_ERR_CONFIG, "%s '%s' is not one of %s%s (available here: %s)", what, name,
                  pq_ops_names(), cuda ? ", cuda" : "", avail);
}

pq_status pq_hardware_select(const char *target, pq_ops *ops)
{
    char avail[64];
    const char *env = getenv("PQ_KERNELS");
    pq_ops forced;
    pq_status st;
    if (env && *env && (st = select_cpu_ops("PQ_KERNELS", env, false, &forced))) return st;
    if (!strcmp(target, "cuda")) {
        pq_ops_available(avail, sizeof avail);
        if (!pq_cuda_compiled())
            return pq_err(PQ_ERR_HARDWARE, "hardware_target 'cuda': this build has no CUDA support "
                          "(available: cpu with kernels %s)", avail);
        if (pq_cuda_device_count() == 0)
            return pq_err(PQ_ERR_HARDWARE, "hardware_target 'cuda': no CUDA device is visible on "
                          "this machine (available: cpu with kernels %s)", avail);
        return pq_err(PQ_ERR_HARDWARE, "hardware_target 'cuda': %d CUDA device(s) found, but weight "
                      "quantization and inference run on CPU kernels in this version (available: "
                      "cpu with kernels %s)", pq_cuda_device_count(), avail);
    }
    /* PQ_KERNELS narrows the default only; an explicit target wins */
    if (!strcmp(target, "cpu") && env && *env) {
        *ops = forced;
        return PQ_OK;
    }
    return select_cpu_ops("hardware_target", target, true, ops);
}

pq_status pq_config_apply_hardware(const pq_config *c, pq_ops *ops)
{
    return pq_hardware_select(c->hardware_target, ops);
}
