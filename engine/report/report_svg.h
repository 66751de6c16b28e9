/* SPDX-License-Identifier: Apache-2.0 */
/* report_svg.h - the pictures of `proteus report`, as inline SVG: the
 * layer x Linear heatmaps with their legends, the recipe grid, the size bar
 * and the Pareto front of `optimize`. */
#ifndef PQ_REPORT_SVG_H
#define PQ_REPORT_SVG_H

#include "report/html.h"
#include "report/report_inputs.h"
#include "report/report_model.h"

/* One heatmap: rows layers 0..rows-1, columns the six Linears. */
typedef struct pq_report_grid {
    const char *id;          /* unique in the page: names the legend's gradient */
    const char *kind;        /* the cells' class suffix: cells are class "cell cell-KIND" */
    const char *unit;        /* "dB" */
    int rows;
    const double *v;         /* [rows * 6]: row l, Linear k at l * 6 + k; NaN: no value */
    const char *const *note; /* [rows * 6] or NULL: a cell's text when it has no value
                              * ("fp16"; NULL entry: "n/a"); borrowed */
    const char *const *tip;  /* [rows * 6] or NULL: a cell's tooltip (the tensor), escaped here */
    pq_palette pal;
    int decimals;            /* of the values shown in the cells */
} pq_report_grid;

void pq_report_heatmap(pq_html *h, const pq_report_grid *g);

/* The recipe of each layer's Linears, one colour per precision, with its
 * legend; cells are class "cell cell-recipe". */
void pq_report_recipe_grid(pq_html *h, const pq_report_model *m);

/* Stored bytes per precision as one stacked bar, with its legend. */
void pq_report_size_bar(pq_html *h, const char *const *labels, const double *bytes, int n);

/* The candidates of `optimize`: bytes against masked-LM accuracy, each a
 * circle of class "front-point" (the chosen one also "chosen"), the
 * non-dominated ones joined by a line; the reference accuracy (ref_acc,
 * NaN: none) and the size budget (NaN: none) dashed. */
void pq_report_front_svg(pq_html *h, const pq_report_opt *o, double ref_acc);

/* The colour of a precision ("int4", "int8", "fp16", "fp32"; grey for any
 * other) as "#rrggbb" (static storage). */
const char *pq_report_precision_colour(const char *precision);

#endif
