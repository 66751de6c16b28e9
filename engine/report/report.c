/* SPDX-License-Identifier: Apache-2.0 */
/* report.c - `proteus report` end to end: read and check the inputs, draw
 * the page, write it as OUT.partial and rename it. */
#include "report/report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"
#include "pipeline/outpath.h"

/* Write the page to out through out.partial (removed on failure). */
static pq_status write_page(const pq_html *h, const char *out)
{
    pq_status st = PQ_OK;
    char *partial = pq_partial_dup(out);
    if (!partial) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", out);
    FILE *f = fopen(partial, "wb");
    if (!f) {
        st = pq_err(PQ_ERR_IO, "%s: cannot create: %s", partial, strerror(errno));
        free(partial);
        return st;
    }
    bool ok = fwrite(h->buf, 1, h->len, f) == h->len;
    int err = errno;
    if (fclose(f) != 0 && ok) ok = false, err = errno;
    if (!ok) st = pq_err(PQ_ERR_IO, "%s: write failed: %s", partial, strerror(err));
    if (!st) st = pq_publish(partial, out);
    if (st) unlink(partial);
    free(partial);
    return st;
}

pq_status pq_report_run(const pq_report_opts *o)
{
    pq_report_model m = {0};
    pq_report_eval e = {0};
    pq_report_opt opt = {0};
    pq_report_trail trail = {0};
    pq_html h;
    pq_html_init(&h);
    const char *inputs[3];
    int n = 0;
    inputs[n++] = o->model;
    if (o->evaluate) inputs[n++] = o->evaluate;
    if (o->optimize) inputs[n++] = o->optimize;
    pq_status st = pq_out_check("--out", o->out, inputs, n);
    if (!st) st = pq_report_model_read(o->model, !o->no_verify, &m);
    if (!st && o->evaluate) st = pq_report_eval_load(o->evaluate, m.num_layers, &e);
    if (!st && o->optimize) st = pq_report_opt_load(o->optimize, m.num_layers, &opt);
    const char *text = st ? NULL : pq_report_model_prov(&m, "fallback_trail");
    if (text) {
        char where[600];
        snprintf(where, sizeof where, "%s: /provenance fallback_trail", o->model);
        st = pq_report_trail_parse(text, where, &trail);
    }
    if (!st) st = pq_report_render(&h, &m, &e, &opt, &trail);
    if (!st) st = write_page(&h, o->out);
    pq_html_free(&h);
    pq_report_trail_free(&trail);
    pq_report_opt_free(&opt);
    pq_report_eval_free(&e);
    pq_report_model_free(&m);
    return st;
}
