/* SPDX-License-Identifier: Apache-2.0 */
/* fallback.c - the fallback's order of attempts and their trail
 * (fallback.h). */
#include "pipeline/fallback.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The evaluation's Linear sites (eval/compare.h), by role. */
static const pq_esm2_role k_site_roles[PQ_EVAL_N_SITES] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT,
                                                           PQ_ESM2_FC1, PQ_ESM2_FC2, PQ_ESM2_LM_DENSE_W};

bool pq_fallback_wanted(const pq_config *c)
{
    return c->fallback_scheme[0] || !isnan(c->allow_accuracy_drop);
}

void pq_fallback_set_scheme(pq_config *c, const char *scheme)
{
    snprintf(c->scheme, sizeof c->scheme, "%s", scheme);
    /* the other schemes observe weights with minmax only */
    if (strcmp(c->scheme, "static")) snprintf(c->calibration_method, sizeof c->calibration_method, "minmax");
    if (!strcmp(c->scheme, "weight-only")) c->smoothquant_alpha = 0.0; /* activations stay fp32 */
}

static void free_attempt(pq_fb_attempt *a)
{
    for (int i = 0; i < a->n_kept; i++) free(a->kept[i]);
    free(a->kept);
    a->kept = NULL;
    a->n_kept = 0;
}

static void free_tensors(pq_fallback *fb)
{
    for (int i = 0; i < fb->n_tensors; i++) free(fb->tensors[i].name);
    free(fb->tensors);
    fb->tensors = NULL;
    fb->n_tensors = 0;
}

void pq_fallback_free(pq_fallback *fb)
{
    if (!fb) return;
    for (int i = 0; i < fb->n_attempts; i++) free_attempt(&fb->attempts[i]);
    free(fb->attempts);
    fb->attempts = NULL;
    fb->n_attempts = 0;
    free_tensors(fb);
}

pq_fb_attempt *pq_fallback_current(pq_fallback *fb)
{
    return fb->n_attempts ? &fb->attempts[fb->n_attempts - 1] : NULL;
}

/* A new attempt after the current one (its kept list copied, plus `keep`
 * when given), of configuration c. */
static pq_status push_attempt(pq_fallback *fb, pq_fb_kind kind, const pq_config *c, const char *keep)
{
    pq_fb_attempt *arr = realloc(fb->attempts, (size_t)(fb->n_attempts + 1) * sizeof *arr);
    if (!arr) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    fb->attempts = arr;
    const pq_fb_attempt *prev = fb->n_attempts ? &arr[fb->n_attempts - 1] : NULL;
    pq_fb_attempt *a = &arr[fb->n_attempts];
    memset(a, 0, sizeof *a);
    a->number = fb->n_attempts + 1;
    a->kind = kind;
    a->accuracy = a->reference_accuracy = a->drop = a->kl = NAN;
    a->bytes = -1;
    snprintf(a->scheme, sizeof a->scheme, "%s", c->scheme);
    a->global = pq_config_qspec(c);
    int n = (prev ? prev->n_kept : 0) + (keep ? 1 : 0);
    if (n && !(a->kept = calloc((size_t)n, sizeof *a->kept))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    fb->n_attempts++; /* owns a->kept from here */
    for (int i = 0; i < n; i++) {
        const char *s = prev && i < prev->n_kept ? prev->kept[i] : keep;
        if (!(a->kept[i] = strdup(s))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        a->n_kept++;
    }
    return PQ_OK;
}

pq_status pq_fallback_init(pq_fallback *fb, const pq_config *c, int max_attempts)
{
    memset(fb, 0, sizeof *fb);
    snprintf(fb->scheme, sizeof fb->scheme, "%s", c->fallback_scheme);
    fb->budget = c->allow_accuracy_drop;
    fb->max_attempts = max_attempts;
    fb->float16 = c->float16;
    pq_status st = push_attempt(fb, PQ_FB_REQUESTED, c, NULL);
    if (!st) snprintf(fb->attempts[0].what, sizeof fb->attempts[0].what, "requested");
    return st;
}

static int find_tensor(const pq_fallback *fb, const char *name)
{
    for (int i = 0; i < fb->n_tensors; i++)
        if (!strcmp(fb->tensors[i].name, name)) return i;
    return -1;
}

pq_status pq_fallback_snapshot(pq_fallback *fb, const pq_plan *p)
{
    pq_fb_tensor *t = calloc((size_t)(p->n_tensors ? p->n_tensors : 1), sizeof *t);
    if (!t) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *pt = &p->tensors[i];
        int old = find_tensor(fb, pt->st->name);
        t[i] = (pq_fb_tensor){.name = strdup(pt->st->name), .role = pt->role, .layer = pt->layer,
                              .action = pt->action, .spec = pt->spec, .sqnr_db = NAN};
        if (old >= 0) {
            t[i].sqnr_db = fb->tensors[old].sqnr_db;
            t[i].measured = fb->tensors[old].measured;
        }
        if (!t[i].name) {
            for (int k = 0; k < i; k++) free(t[k].name);
            free(t);
            return pq_err(PQ_ERR_RESOURCE, "out of memory");
        }
    }
    free_tensors(fb);
    fb->tensors = t;
    fb->n_tensors = p->n_tensors;
    return PQ_OK;
}

void pq_fallback_failed(pq_fallback *fb, pq_status st, const char *detail)
{
    pq_fb_attempt *a = pq_fallback_current(fb);
    a->status = st;
    snprintf(a->error, sizeof a->error, "%s: %s", pq_strerror(st), detail ? detail : "");
}

bool pq_fallback_within(double budget, int64_t drop_count, int64_t n_masked)
{
    if (isnan(budget)) return true;
    /* budget x n in double may land a hair under the whole count it means
     * (0.01 x 300 = 2.9999...): a relative margin far below one position */
    return (double)drop_count <= budget * (double)n_masked * (1.0 + 1e-9);
}

/* The evaluation's site (row, column) of tensor t, or false when it has none. */
static bool site_of(const pq_fb_tensor *t, int num_layers, int *row, int *col)
{
    for (int i = 0; i < PQ_EVAL_N_SITES; i++) {
        if (k_site_roles[i] != t->role) continue;
        bool head = i == PQ_EVAL_N_SITES - 1;
        if (head ? t->layer >= 0 : (t->layer < 0 || t->layer >= num_layers)) return false;
        *row = head ? num_layers : t->layer;
        *col = i;
        return true;
    }
    return false;
}

pq_status pq_fallback_measured(pq_fallback *fb, const pq_eval_report *r, int64_t bytes)
{
    pq_fb_attempt *a = pq_fallback_current(fb);
    const pq_eval_mlm *R = &r->ref.mlm, *Q = &r->q.mlm;
    if (R->n_masked <= 0)
        return pq_err(PQ_ERR_CONFIG, "the evaluation masked no position in its %lld sequences: give more or "
                      "longer sequences (--eval-data, --eval-max-seqs)", (long long)r->n_sequences);
    a->evaluated = true;
    a->n_masked = R->n_masked;
    a->correct_reference = R->n_correct;
    a->correct = Q->n_correct;
    a->reference_accuracy = (double)R->n_correct / (double)R->n_masked;
    a->accuracy = (double)Q->n_correct / (double)R->n_masked;
    a->drop = a->reference_accuracy - a->accuracy;
    a->kl = r->kl_mean;
    a->bytes = bytes;
    a->met = pq_fallback_within(fb->budget, R->n_correct - Q->n_correct, R->n_masked);
    pq_fallback_measured_sqnr(fb, r);
    return PQ_OK;
}

void pq_fallback_measured_sqnr(pq_fallback *fb, const pq_eval_report *r)
{
    for (int i = 0; i < fb->n_tensors; i++) {
        pq_fb_tensor *t = &fb->tensors[i];
        int row, col;
        if (t->action != PQ_ACT_QUANT || !r->sqnr || !site_of(t, r->num_layers, &row, &col)) continue;
        t->sqnr_db = pq_eval_report_sqnr_db(r, row, col);
        t->measured = true;
    }
}

/* Whether SQNR a ranks before b as more sensitive (NaN first). */
static bool more_sensitive(double a, double b)
{
    if (isnan(a)) return !isnan(b);
    return !isnan(b) && a < b;
}

pq_fb_step pq_fallback_next(const pq_fallback *fb)
{
    pq_fb_step s = {.kind = PQ_FB_NONE, .tensor = -1};
    const pq_fb_attempt *a = &fb->attempts[fb->n_attempts - 1];
    if (fb->max_attempts && fb->n_attempts >= fb->max_attempts) return s;
    if (a->status != PQ_OK && !fb->scheme[0]) return s;
    if (fb->scheme[0] && !fb->scheme_tried && strcmp(fb->scheme, a->scheme)) {
        s.kind = PQ_FB_SCHEME;
        return s;
    }
    if (!fb->int8_tried)
        for (int i = 0; i < fb->n_tensors; i++)
            if (fb->tensors[i].action == PQ_ACT_QUANT && fb->tensors[i].spec.bits == 4) {
                s.kind = PQ_FB_INT8;
                return s;
            }
    for (int i = 0; i < fb->n_tensors; i++) {
        const pq_fb_tensor *t = &fb->tensors[i];
        if (t->action != PQ_ACT_QUANT || !t->measured) continue;
        if (s.tensor < 0 || more_sensitive(t->sqnr_db, fb->tensors[s.tensor].sqnr_db)) s.tensor = i;
    }
    if (s.tensor >= 0) s.kind = PQ_FB_KEEP_FLOAT;
    return s;
}

pq_status pq_fallback_apply(pq_fallback *fb, pq_fb_step s, pq_config *c)
{
    pq_status st = PQ_OK;
    const char *keep = NULL;
    char what[320];
    switch (s.kind) {
    case PQ_FB_SCHEME:
        if (!fb->scheme[0]) break;
        pq_fallback_set_scheme(c, fb->scheme);
        fb->scheme_tried = true;
        snprintf(what, sizeof what, "fallback scheme %s", fb->scheme);
        goto push;
    case PQ_FB_INT8:
        if (c->bits == 4) c->bits = 8;
        for (int i = 0; i < fb->n_tensors && !st; i++) {
            const pq_fb_tensor *t = &fb->tensors[i];
            if (t->action != PQ_ACT_QUANT || t->spec.bits != 4) continue;
            pq_qspec q = t->spec;
            q.bits = 8;
            st = pq_config_override(c, t->name, true, &q, false);
        }
        if (st) return st;
        fb->int8_tried = true;
        snprintf(what, sizeof what, "int4 -> int8");
        goto push;
    case PQ_FB_KEEP_FLOAT:
        if (s.tensor < 0 || s.tensor >= fb->n_tensors || fb->tensors[s.tensor].action != PQ_ACT_QUANT) break;
        keep = fb->tensors[s.tensor].name;
        if ((st = pq_config_override(c, keep, false, NULL, fb->float16))) return st;
        snprintf(what, sizeof what, "keep %s %s", keep, fb->float16 ? "fp16" : "fp32");
        goto push;
    default:
        break;
    }
    return pq_err(PQ_ERR_INTERNAL, "fallback step %d (tensor %d) does not apply to attempt %d", s.kind, s.tensor,
                  fb->n_attempts);
push:
    if ((st = push_attempt(fb, (pq_fb_kind)s.kind, c, keep))) return st;
    snprintf(pq_fallback_current(fb)->what, sizeof what, "%s", what);
    return PQ_OK;
}

int pq_fallback_best(const pq_fallback *fb)
{
    int best = -1;
    for (int i = 0; i < fb->n_attempts; i++) {
        const pq_fb_attempt *a = &fb->attempts[i];
        if (!a->evaluated) continue;
        if (best < 0) { best = i; continue; }
        const pq_fb_attempt *b = &fb->attempts[best];
        int64_t da = a->correct_reference - a->correct, db = b->correct_reference - b->correct;
        if (da < db || (da == db && a->kl < b->kl)) best = i;
    }
    return best;
}

static json_t *num_or_null(bool have, double v)
{
    return have && isfinite(v) ? json_real(v) : json_null();
}

static json_t *attempt_json(const pq_fb_attempt *a)
{
    static const char *const k_prec[] = {[4] = "int4", [8] = "int8"};
    const pq_qspec *g = &a->global;
    json_t *kept = json_array();
    for (int i = 0; i < a->n_kept; i++) json_array_append_new(kept, json_string(a->kept[i]));
    json_t *recipe = json_pack("{s:s, s:I, s:b, s:b}", "precision", g->bits == 4 || g->bits == 8 ?
                               k_prec[g->bits] : "int8", "group_size", (json_int_t)g->group_size,
                               "symmetric", g->symmetric, "per_channel", g->gran == PQ_GRAN_CHANNEL);
    json_t *o = json_pack("{s:i, s:s, s:s, s:o, s:o}", "attempt", a->number, "what", a->what, "scheme", a->scheme,
                          "recipe", recipe, "kept_float", kept);
    if (!o) return NULL;
    json_object_set_new(o, "accuracy", num_or_null(a->evaluated, a->accuracy));
    json_object_set_new(o, "reference_accuracy", num_or_null(a->evaluated, a->reference_accuracy));
    json_object_set_new(o, "drop", num_or_null(a->evaluated, a->drop));
    json_object_set_new(o, "kl", num_or_null(a->evaluated, a->kl));
    json_object_set_new(o, "bytes", a->evaluated ? json_integer(a->bytes) : json_null());
    json_object_set_new(o, "accepted", json_boolean(a->evaluated && a->met));
    json_object_set_new(o, "written", json_boolean(a->written));
    if (a->status != PQ_OK) json_object_set_new(o, "error", json_string(a->error));
    return o;
}

char *pq_fallback_trail_json(const pq_fallback *fb)
{
    json_t *arr = json_array();
    char *text = NULL;
    for (int i = 0; arr && i < fb->n_attempts; i++) {
        json_t *o = attempt_json(&fb->attempts[i]);
        if (!o || json_array_append_new(arr, o)) goto done;
    }
    if (arr) text = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(17));
done:
    json_decref(arr);
    return text;
}

pq_status pq_plan_apply_overrides(const pq_config *c, pq_plan *p)
{
    for (int k = 0; k < c->n_overrides; k++) {
        const pq_tensor_override *o = &c->overrides[k];
        int i = 0;
        while (i < p->n_tensors && strcmp(p->tensors[i].st->name, o->name)) i++;
        if (i == p->n_tensors || p->tensors[i].action == PQ_ACT_DROP)
            return pq_err(PQ_ERR_CONFIG, "tensor override %s: the checkpoint has no such stored tensor", o->name);
        pq_plan_tensor *pt = &p->tensors[i];
        if (o->quantized && pt->st->ndim != 2)
            return pq_err(PQ_ERR_CONFIG, "tensor override %s: only 2-D tensors are quantized", o->name);
        pt->action = o->quantized ? PQ_ACT_QUANT : PQ_ACT_FLOAT;
        if (o->quantized) pt->spec = o->spec;
        else pt->float16 = o->float16;
    }
    return PQ_OK;
}
