/* SPDX-License-Identifier: Apache-2.0 */
/* report.h - `proteus report`: one self-contained HTML page (inline SVG and
 * CSS, no script, nothing fetched) about a quantized model: weight and
 * output SQNR and sensitivity per layer and Linear, the recipe of every
 * tensor, the size breakdown, accuracy against the reference, the Pareto
 * front of `optimize` and the fallback trail. */
#ifndef PQ_REPORT_H
#define PQ_REPORT_H

#include <stdbool.h>

#include "base/pq_err.h"
#include "report/html.h"
#include "report/report_inputs.h"
#include "report/report_model.h"

typedef struct pq_report_opts {
    const char *model;     /* the Proteus HDF5 model (required) */
    const char *evaluate;  /* `evaluate --json` output, or NULL */
    const char *optimize;  /* `optimize --json` output, or NULL */
    const char *out;       /* the page to write (required) */
    bool no_verify;        /* skip the data checksums (metadata still checked) */
} pq_report_opts;

/* Read and check every input, draw the page and write it as out.partial,
 * renamed to out when complete (out is never half-written; an existing out
 * is replaced only then). PQ_ERR_CONFIG for an --out that is a folder or an
 * input, PQ_ERR_IO for a file that cannot be read or written,
 * PQ_ERR_FORMAT naming the file and the item for a model or JSON that is
 * not what it should be. */
pq_status pq_report_run(const pq_report_opts *o);

/* Append the page for these inputs to h; e, opt and trail may be NULL (or
 * hold nothing). No I/O; PQ_ERR_RESOURCE when out of memory. */
pq_status pq_report_render(pq_html *h, const pq_report_model *m, const pq_report_eval *e, const pq_report_opt *opt,
                           const pq_report_trail *trail);

#endif
