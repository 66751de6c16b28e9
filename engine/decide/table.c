/* SPDX-License-Identifier: Apache-2.0 */
/* table.c - sensitivity tables: storage, JSON, rank correlation (table.h). */
#include "decide/table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_linear_names[] = {"q", "k", "v", "o", "fc1", "fc2"};

const char *pq_sens_linear_name(int linear)
{
    return linear >= 0 && linear < 6 ? k_linear_names[linear] : "?";
}

pq_status pq_sens_table_alloc(pq_sens_table *t, int n_linears, int n_cands)
{
    memset(t, 0, sizeof *t);
    if (n_linears < 1 || n_cands < 1 || n_cands > PQ_DECIDE_MAX_CANDS)
        return pq_err(PQ_ERR_CONFIG, "sensitivity table: %d Linears x %d candidates (1..%d candidates)", n_linears,
                      n_cands, PQ_DECIDE_MAX_CANDS);
    t->lin = calloc((size_t)n_linears, sizeof *t->lin);
    t->cell = calloc((size_t)n_linears * (size_t)n_cands, sizeof *t->cell);
    if (!t->lin || !t->cell) {
        pq_sens_table_free(t);
        return pq_err(PQ_ERR_RESOURCE, "out of memory for a sensitivity table");
    }
    t->n_linears = n_linears;
    t->n_cands = n_cands;
    return PQ_OK;
}

void pq_sens_table_free(pq_sens_table *t)
{
    if (!t) return;
    free(t->lin);
    free(t->cell);
    memset(t, 0, sizeof *t);
}

static json_t *cand_json(const pq_cand *c)
{
    return json_pack("{s:s, s:i, s:b, s:b}", "precision", pq_cand_precision_name(c), "group_size", c->group_size,
                     "symmetric", c->symmetric, "per_channel", c->per_channel);
}

json_t *pq_sens_table_to_json(const pq_sens_table *t)
{
    json_t *a = json_array();
    for (int i = 0; a && i < t->n_linears; i++) {
        const pq_sens_linear *l = &t->lin[i];
        json_t *cs = json_array();
        for (int j = 0; cs && j < t->n_cands; j++) {
            const pq_sens_cell *c = pq_sens_at(t, i, j);
            json_array_append_new(cs, json_pack("{s:o, s:I, s:f, s:f, s:f}", "recipe", cand_json(&t->cands[j]),
                                                "bytes", (json_int_t)c->bytes, "d_loss", c->d_loss, "kl", c->kl,
                                                "estimate", c->estimate));
        }
        json_array_append_new(a, json_pack("{s:s, s:i, s:s, s:I, s:I, s:o}", "tensor", l->tensor, "layer", l->layer,
                                           "linear", pq_sens_linear_name(l->linear), "rows", (json_int_t)l->rows,
                                           "cols", (json_int_t)l->cols, "candidates", cs));
    }
    return a;
}

static pq_status cand_from_json(const json_t *r, const char *what, int i, int j, pq_cand *c)
{
    const char *prec = NULL;
    int gs = 0, sym = 1, pc = 0;
    json_error_t e;
    if (json_unpack_ex((json_t *)r, &e, 0, "{s:s, s?:i, s?:b, s?:b}", "precision", &prec, "group_size", &gs,
                       "symmetric", &sym, "per_channel", &pc))
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d].candidates[%d].recipe: %s", what, i, j, e.text);
    int p = pq_cand_precision_parse(prec);
    if (p < 0)
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d].candidates[%d]: precision '%s' (known: int4, int8, fp16, "
                      "fp32)", what, i, j, prec);
    if (p < 16 && gs != 0 && (gs < 32 || gs > 256 || gs % 2))
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d].candidates[%d]: group_size %d (0 or an even number in "
                      "[32, 256])", what, i, j, gs);
    *c = (pq_cand){.precision = p, .group_size = p < 16 ? gs : 0, .symmetric = p < 16 ? sym : false,
                   .per_channel = p < 16 && !gs ? pc : false};
    return PQ_OK;
}

static int linear_index(const char *s)
{
    for (int i = 0; i < 6; i++)
        if (!strcmp(s, k_linear_names[i])) return i;
    return -1;
}

static pq_status linear_from_json(const json_t *e, const char *what, int i, pq_sens_table *t)
{
    const char *tensor, *lin;
    json_int_t rows = 0, cols = 0;
    json_t *cs;
    json_error_t err;
    pq_sens_linear *l = &t->lin[i];
    if (json_unpack_ex((json_t *)e, &err, 0, "{s:s, s:i, s:s, s?:I, s?:I, s:o}", "tensor", &tensor, "layer",
                       &l->layer, "linear", &lin, "rows", &rows, "cols", &cols, "candidates", &cs))
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d]: %s", what, i, err.text);
    if (strlen(tensor) >= PQ_DECIDE_NAME || (l->linear = linear_index(lin)) < 0 || l->layer < 0)
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d]: tensor '%s', layer %d, linear '%s' (q, k, v, o, fc1, "
                      "fc2)", what, i, tensor, l->layer, lin);
    strcpy(l->tensor, tensor);
    l->rows = rows;
    l->cols = cols;
    if (!json_is_array(cs) || (int)json_array_size(cs) != t->n_cands)
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d]: candidates must be an array of %d (as the first entry)",
                      what, i, t->n_cands);
    for (int j = 0; j < t->n_cands; j++) {
        const json_t *c = json_array_get(cs, (size_t)j), *r;
        pq_cand cd;
        json_int_t bytes;
        pq_sens_cell *cell = pq_sens_at(t, i, j);
        if (json_unpack_ex((json_t *)c, &err, 0, "{s:o, s:I, s:F, s:F, s?:F}", "recipe", &r, "bytes", &bytes,
                           "d_loss", &cell->d_loss, "kl", &cell->kl, "estimate", &cell->estimate))
            return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d].candidates[%d]: %s", what, i, j, err.text);
        pq_status st = cand_from_json(r, what, i, j, &cd);
        if (st) return st;
        if (i == 0) t->cands[j] = cd;
        else if (memcmp(&cd, &t->cands[j], sizeof cd))
            return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d].candidates[%d]: another recipe than sensitivity[0]'s "
                          "candidate %d (every Linear lists the same candidates)", what, i, j, j);
        if (bytes < 0 || !isfinite(cell->d_loss) || !isfinite(cell->kl) || cell->kl < 0 || !isfinite(cell->estimate))
            return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[%d].candidates[%d]: bytes must be >= 0 and d_loss, kl "
                          "(>= 0), estimate finite numbers", what, i, j);
        cell->bytes = bytes;
    }
    return PQ_OK;
}

pq_status pq_sens_table_from_json(const json_t *a, const char *what, pq_sens_table *t)
{
    memset(t, 0, sizeof *t);
    if (!json_is_array(a) || !json_array_size(a))
        return pq_err(PQ_ERR_CONFIG, "%s: \"sensitivity\" must be a non-empty array", what);
    const json_t *c0 = json_object_get(json_array_get(a, 0), "candidates");
    if (!json_is_array(c0) || !json_array_size(c0) || json_array_size(c0) > PQ_DECIDE_MAX_CANDS)
        return pq_err(PQ_ERR_CONFIG, "%s: sensitivity[0].candidates must be an array of 1 to %d", what,
                      PQ_DECIDE_MAX_CANDS);
    pq_status st = pq_sens_table_alloc(t, (int)json_array_size(a), (int)json_array_size(c0));
    for (int i = 0; !st && i < t->n_linears; i++) st = linear_from_json(json_array_get(a, (size_t)i), what, i, t);
    if (st) pq_sens_table_free(t);
    return st;
}

typedef struct ranked {
    double v;
    int i;
} ranked;

static int by_value(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v ? 1 : x->i - y->i;
}

/* Mean ranks (1-based) of v into r. */
static int ranks(const double *v, int n, double *r)
{
    ranked *s = malloc((size_t)n * sizeof *s);
    if (!s) return -1;
    for (int i = 0; i < n; i++) s[i] = (ranked){v[i], i};
    qsort(s, (size_t)n, sizeof *s, by_value);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && s[j + 1].v == s[i].v) j++;
        for (int k = i; k <= j; k++) r[s[k].i] = (i + j) / 2.0 + 1.0;
        i = j + 1;
    }
    free(s);
    return 0;
}

double pq_spearman(const double *x, const double *y, int n)
{
    if (n < 2) return NAN;
    double *rx = malloc((size_t)n * sizeof *rx), *ry = malloc((size_t)n * sizeof *ry), out = NAN;
    if (rx && ry && !ranks(x, n, rx) && !ranks(y, n, ry)) {
        double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++) mx += rx[i], my += ry[i];
        mx /= n;
        my /= n;
        for (int i = 0; i < n; i++) {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }
        if (sxx > 0 && syy > 0) out = sxy / sqrt(sxx * syy);
    }
    free(rx);
    free(ry);
    return out;
}

double pq_sens_table_rank_correlation(const pq_sens_table *t)
{
    int n = 0, cap = t->n_linears * t->n_cands;
    double *x = malloc((size_t)cap * sizeof *x), *y = malloc((size_t)cap * sizeof *y), r = NAN;
    if (x && y) {
        for (int i = 0; i < t->n_linears; i++)
            for (int j = 0; j < t->n_cands; j++)
                if (t->cands[j].precision < 32) {
                    x[n] = pq_sens_at(t, i, j)->estimate;
                    y[n++] = pq_sens_at(t, i, j)->kl;
                }
        r = pq_spearman(x, y, n);
    }
    free(x);
    free(y);
    return r;
}
