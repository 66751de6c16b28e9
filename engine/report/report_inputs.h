/* SPDX-License-Identifier: Apache-2.0 */
/* report_inputs.h - the JSON `proteus report` reads beside the model:
 * `evaluate --json`, `optimize --json` and the fallback trail of
 * /provenance, each checked whole when loaded (every key the page uses has
 * the type it should; absent keys and sections are fine), so that drawing
 * the page cannot fail.
 *
 * A number may be a JSON number, null (absent) or one of the strings "inf",
 * "-inf", "nan" (as evaluate writes non-finite values). Errors are
 * PQ_ERR_FORMAT naming the file and the key's path
 * ("O.json: front[2].accuracy: expected a number, found a string"), or
 * PQ_ERR_IO when the file cannot be read. */
#ifndef PQ_REPORT_INPUTS_H
#define PQ_REPORT_INPUTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"

/* ---- evaluate --json ---- */

typedef struct pq_report_eval {
    json_t *root;         /* owned; the numbers below are read from it */
    const char *path;     /* borrowed */
    double *sqnr;         /* owned: [num_layers * 6] output SQNR of Linear (layer, linear),
                           * NaN where linear_sqnr_db gives none; NULL without the array */
    double head_sqnr;     /* the LM head dense ("head": lm_dense), NaN when absent */
} pq_report_eval;

/* Load and check path; num_layers is the model's (a layer of
 * linear_sqnr_db beyond it is an error: the JSON is of another model). */
pq_status pq_report_eval_load(const char *path, int num_layers, pq_report_eval *e);
void pq_report_eval_free(pq_report_eval *e);
/* Top-level (or, with obj set, utilization's) number key; NaN when absent. */
double pq_report_eval_num(const pq_report_eval *e, const char *obj, const char *key);
/* Top-level (or obj's) string key; NULL when absent. Borrowed. */
const char *pq_report_eval_str(const pq_report_eval *e, const char *obj, const char *key);

/* ---- optimize --json ---- */

typedef struct pq_report_cand {
    char label[64];                 /* the recipe in short: "int4 g64 sym", "int8 channel" */
    double bytes, d_loss, kl, estimate;
} pq_report_cand;

typedef struct pq_report_sens {
    const char *tensor;             /* borrowed from root; NULL when absent */
    int layer, linear;              /* layer in [0, num_layers), linear 0..5 */
    int64_t n_cand;
    pq_report_cand *cand;           /* owned */
} pq_report_sens;

typedef struct pq_report_point {
    const char *label;              /* borrowed; NULL when absent */
    double bytes, accuracy, kl, tokens_per_s; /* accuracy a fraction; NaN when absent */
    bool chosen;
} pq_report_point;

typedef struct pq_report_opt {
    json_t *root;                   /* owned */
    const char *path, *model;       /* borrowed */
    double max_size, max_drop, min_speedup; /* the constraints; NaN when null or absent */
    double rank_corr;               /* estimate_rank_correlation, NaN when absent */
    int64_t n_sens;
    pq_report_sens *sens;           /* owned */
    int64_t n_front;
    pq_report_point *front;         /* owned */
    bool has_chosen;
    const char *recipe_file;        /* chosen.recipe_file, borrowed */
    double c_bytes, c_accuracy, c_reference_accuracy, c_drop_points, c_kl;
    int c_met;                      /* chosen.met: 1, 0, or -1 when absent */
    int64_t n_unmet;
    const char **unmet;             /* owned array of borrowed strings */
} pq_report_opt;

pq_status pq_report_opt_load(const char *path, int num_layers, pq_report_opt *o);
void pq_report_opt_free(pq_report_opt *o);

/* ---- the fallback trail (/provenance fallback_trail) ---- */

typedef struct pq_report_attempt {
    int64_t attempt;                /* -1 when absent */
    const char *what;               /* borrowed; NULL when absent */
    char recipe[64];                /* the recipe in short ("" when absent) */
    json_t *kept_float;             /* borrowed array of strings, NULL when absent */
    double accuracy, reference_accuracy, drop, kl, bytes; /* drop a fraction */
    int accepted;                   /* 1, 0, or -1 when absent */
} pq_report_attempt;

typedef struct pq_report_trail {
    json_t *root;                   /* owned */
    int64_t n;
    pq_report_attempt *a;           /* owned */
} pq_report_trail;

/* Parse the JSON text of the attribute; `where` names it in errors
 * ("Q.h5: /provenance fallback_trail"). */
pq_status pq_report_trail_parse(const char *text, const char *where, pq_report_trail *t);
void pq_report_trail_free(pq_report_trail *t);

/* The short label of a recipe object {"precision", "group_size",
 * "symmetric", "per_channel"} into buf: "int4 g64 sym", "int8 channel
 * asym", "int8 tensor sym", "fp16". */
void pq_report_recipe_label(const json_t *recipe, char *buf, size_t n);

#endif
