/* SPDX-License-Identifier: Apache-2.0 */
/* report_page.c - the sections of the `proteus report` page: summary,
 * heatmaps, recipes, sizes, accuracy, optimize, fallback trail and
 * provenance. Every string from a file is escaped (pq_html_text). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "report/report_svg.h"

static const char k_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1d1d1f;"
    "background:#f4f5f7;margin:0;padding:24px}\n"
    "main{max-width:1080px;margin:0 auto}\n"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}\n"
    ".sub{color:#555;margin:0 0 18px}\n"
    "section{background:#fff;border:1px solid #dcdfe4;border-radius:8px;padding:16px 20px;margin:0 0 18px}\n"
    ".cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 18px}\n"
    ".card{background:#fff;border:1px solid #dcdfe4;border-radius:8px;padding:10px 16px;min-width:150px}\n"
    ".card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}\n"
    "table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}\n"
    "th,td{border-bottom:1px solid #e4e6ea;padding:4px 10px;text-align:right;vertical-align:top;"
    "white-space:nowrap}\n"
    "th{background:#eef0f3;font-weight:600}th:first-child,td:first-child,th.txt{text-align:left}\n"
    "td.txt{text-align:left;white-space:normal;max-width:560px;overflow-wrap:anywhere}\n"
    "tr:nth-child(even) td{background:#fafbfc}\n"
    "tr.accepted td{background:#e8f5e9}tr.rejected td{background:#fdecea}\n"
    ".ok{color:#1b7a35;font-weight:600}.bad{color:#b3261e;font-weight:600}\n"
    ".none{color:#666;font-style:italic}\n"
    "svg text{font:11px system-ui,'DejaVu Sans',sans-serif}\n"
    ".maps{display:flex;flex-wrap:wrap;gap:18px}\n"
    "code{background:#eef0f3;padding:1px 4px;border-radius:3px}\n"
    "details{margin:6px 0}summary{cursor:pointer;color:#2c5d8f}\n";

/* ---- small formatting helpers ---- */

static void fmt_bytes(double n, char *buf, size_t len)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    if (!isfinite(n)) {
        snprintf(buf, len, "n/a");
        return;
    }
    while (fabs(n) >= 1000 && u < 4) n /= 1000, u++;
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", n, unit[u]);
}

static void fmt_num(double v, int sig, char *buf, size_t n)
{
    if (isnan(v)) snprintf(buf, n, "n/a");
    else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
    else snprintf(buf, n, "%.*g", sig, v);
}

static void fmt_pct(double frac, char *buf, size_t n)
{
    if (isnan(frac)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%.2f %%", 100 * frac);
}

/* <td> with escaped text; cls "txt" for left-aligned text. */
static void td(pq_html *h, const char *text, bool txt)
{
    pq_html_raw(h, txt ? "<td class=\"txt\">" : "<td>");
    pq_html_text(h, text, 0);
    pq_html_raw(h, "</td>");
}

static void kv_row(pq_html *h, const char *k, const char *v, size_t max)
{
    pq_html_raw(h, "<tr><td>");
    pq_html_text(h, k, 0);
    pq_html_raw(h, "</td><td class=\"txt\">");
    pq_html_text(h, v, max);
    pq_html_raw(h, "</td></tr>\n");
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Open section id with its title; when the input it draws was not given
 * (have false), say how to get it (`missing`, our own markup), close the
 * section and return false. */
static bool section_open(pq_html *h, const char *id, const char *title, bool have, const char *missing)
{
    pq_html_printf(h, "<section id=\"%s\"><h2>%s</h2>\n", id, title);
    if (have) return true;
    pq_html_printf(h, "<p class=\"none\">%s</p></section>\n", missing);
    return false;
}

/* ---- sizes ---- */

static const char *const k_precs[] = {"int4", "int8", "fp16", "fp32"};
#define N_PRECS 4

typedef struct size_sums {
    int64_t tensors[N_PRECS], elems[N_PRECS];
    double bytes[N_PRECS];
    int64_t lin_elems, other_elems;
    double lin_bytes, other_bytes, total_bytes, total_elems;
} size_sums;

static void sum_sizes(const pq_report_model *m, size_sums *s)
{
    *s = (size_sums){0};
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const pq_report_tensor *t = &m->t[i];
        for (int p = 0; p < N_PRECS; p++)
            if (!strcmp(t->precision, k_precs[p])) {
                s->tensors[p]++;
                s->elems[p] += t->n_elems;
                s->bytes[p] += (double)t->bytes;
            }
        if (t->linear >= 0) s->lin_elems += t->n_elems, s->lin_bytes += (double)t->bytes;
        else s->other_elems += t->n_elems, s->other_bytes += (double)t->bytes;
        s->total_bytes += (double)t->bytes;
        s->total_elems += (double)t->n_elems;
    }
}

static void size_row(pq_html *h, const char *what, double tensors, double elems, double bytes)
{
    char b[32], f[32], r[32], e[32], n[32];
    fmt_bytes(bytes, b, sizeof b);
    fmt_bytes(4 * elems, f, sizeof f);
    snprintf(r, sizeof r, bytes > 0 ? "%.2fx" : "n/a", 4 * elems / bytes);
    snprintf(e, sizeof e, "%.0f", elems);
    snprintf(n, sizeof n, "%.0f", tensors);
    pq_html_raw(h, "<tr>");
    td(h, what, true);
    td(h, n, false);
    td(h, e, false);
    td(h, b, false);
    td(h, f, false);
    td(h, r, false);
    pq_html_raw(h, "</tr>\n");
}

static void section_size(pq_html *h, const pq_report_model *m)
{
    size_sums s;
    sum_sizes(m, &s);
    char fb[32], fe[32];
    pq_html_raw(h, "<section id=\"size\"><h2>Size</h2>\n<p>Bytes of the stored tensors (codes, scales and zero "
                "points; float data), against the same tensors in fp32.</p>\n<table id=\"size-table\"><thead><tr>"
                "<th>stored as</th><th>tensors</th><th>parameters</th><th>bytes</th><th>fp32 bytes</th>"
                "<th>reduction</th></tr></thead><tbody>\n");
    const char *labels[N_PRECS];
    double bytes[N_PRECS];
    int n = 0;
    for (int p = 0; p < N_PRECS; p++) {
        if (!s.tensors[p]) continue;
        size_row(h, k_precs[p], (double)s.tensors[p], (double)s.elems[p], s.bytes[p]);
        labels[n] = k_precs[p];
        bytes[n++] = s.bytes[p];
    }
    int64_t n_lin = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) n_lin += m->t[i].linear >= 0;
    size_row(h, "Linear weights (q k v o fc1 fc2)", (double)n_lin, (double)s.lin_elems, s.lin_bytes);
    size_row(h, "other tensors", (double)(m->n_tensors - n_lin), (double)s.other_elems, s.other_bytes);
    pq_html_raw(h, "</tbody><tfoot>");
    size_row(h, "all tensors", (double)m->n_tensors, s.total_elems, s.total_bytes);
    pq_html_raw(h, "</tfoot></table>\n");
    fmt_bytes((double)m->file_bytes, fb, sizeof fb);
    fmt_bytes(4 * s.total_elems, fe, sizeof fe);
    pq_html_printf(h, "<p>The file: <b>%s</b> on disk, %.2fx smaller than its tensors in fp32 (%s).</p>\n", fb,
                   m->file_bytes > 0 ? 4 * s.total_elems / (double)m->file_bytes : NAN, fe);
    pq_report_size_bar(h, labels, bytes, n);
    pq_html_raw(h, "</section>\n");
}

/* ---- heatmaps ---- */

static void section_sqnr(pq_html *h, const pq_report_model *m, const pq_report_eval *e)
{
    int L = m->num_layers, n = L * PQ_REPORT_N_LINEARS;
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    const char **note = calloc((size_t)(n > 0 ? n : 1), sizeof *note);
    const char **tip = calloc((size_t)(n > 0 ? n : 1), sizeof *tip);
    if (!v || !note || !tip) {
        h->oom = true;
        goto done;
    }
    for (int i = 0; i < n; i++) v[i] = NAN, note[i] = "absent";
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const pq_report_tensor *t = &m->t[i];
        if (t->linear < 0) continue;
        int k = t->layer * PQ_REPORT_N_LINEARS + t->linear;
        v[k] = t->sqnr_db;
        note[k] = t->quantized ? "no metrics" : t->precision;
        tip[k] = t->name;
    }
    pq_html_raw(h, "<section id=\"sqnr\"><h2>SQNR per layer and Linear</h2>\n<div class=\"maps\"><div><h3>Weight "
                "SQNR (dB)</h3>\n<p>10 log<sub>10</sub>(&Sigma;w&sup2; / &Sigma;(w &minus; &#373;)&sup2;) of each "
                "quantized weight, from the file's <code>/metrics</code>; higher is closer.</p>\n");
    pq_report_grid g = {.id = "wsqnr", .kind = "weight-sqnr", .unit = "dB", .rows = L, .v = v, .note = note,
                        .tip = tip, .pal = PQ_PAL_QUALITY, .decimals = 1};
    pq_report_heatmap(h, &g);
    pq_html_raw(h, "</div>\n");
    if (e && e->sqnr) {
        pq_html_raw(h, "<div><h3>Output SQNR (dB)</h3>\n<p>Each quantized Linear applied to the input its "
                    "reference Linear sees, against the reference output (<code>evaluate</code>).</p>\n");
        g = (pq_report_grid){.id = "osqnr", .kind = "output-sqnr", .unit = "dB", .rows = L, .v = e->sqnr,
                             .tip = tip, .pal = PQ_PAL_QUALITY, .decimals = 1};
        pq_report_heatmap(h, &g);
        char b[32];
        fmt_num(e->head_sqnr, 4, b, sizeof b);
        if (!isnan(e->head_sqnr)) pq_html_printf(h, "<p>LM head dense: %s dB</p>\n", b);
        pq_html_raw(h, "</div>\n");
    }
    pq_html_raw(h, "</div>\n");
    if (!e || !e->sqnr)
        pq_html_raw(h, "<p class=\"none\">Output SQNR: give <code>--evaluate E.json</code> (from <code>proteus "
                    "evaluate --json</code>).</p>\n");
    pq_html_raw(h, "</section>\n");
done:
    free(v);
    free(note);
    free(tip);
}

/* Distinct candidate recipes of the sensitivity table, in order of first
 * appearance, at most max. */
static int cand_labels(const pq_report_opt *o, const char **out, int max)
{
    int n = 0;
    for (int64_t i = 0; i < o->n_sens; i++)
        for (int64_t c = 0; c < o->sens[i].n_cand; c++) {
            const char *l = o->sens[i].cand[c].label;
            bool seen = false;
            for (int k = 0; k < n && !seen; k++) seen = !strcmp(out[k], l);
            if (!seen && n < max) out[n++] = l;
        }
    return n;
}

static void section_sensitivity(pq_html *h, const pq_report_model *m, const pq_report_opt *o)
{
    if (!section_open(h, "sensitivity", "Sensitivity per layer and Linear", o && o->n_sens,
                      "Give <code>--optimize O.json</code> (from <code>proteus optimize --json</code>) to see "
                      "how much each Linear costs when quantized alone."))
        return;
    pq_html_raw(h, "<p>Increase of the masked-LM loss when only that Linear is quantized with the recipe named "
                "above each map (<code>optimize</code>, measured on calibration data); higher is more "
                "sensitive.");
    if (!isnan(o->rank_corr))
        pq_html_printf(h, " The second-order estimate ranks the Linears with a rank correlation of %.3f to the "
                       "measured loss.", o->rank_corr);
    pq_html_raw(h, "</p>\n<div class=\"maps\">\n");
    const char *labels[6];
    int nl = cand_labels(o, labels, 6), L = m->num_layers, n = L * PQ_REPORT_N_LINEARS;
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    const char **note = calloc((size_t)(n > 0 ? n : 1), sizeof *note);
    const char **tip = calloc((size_t)(n > 0 ? n : 1), sizeof *tip);
    if (!v || !note || !tip) h->oom = true;
    for (int li = 0; li < nl && !h->oom; li++) {
        for (int i = 0; i < n; i++) v[i] = NAN, note[i] = "not measured", tip[i] = NULL;
        for (int64_t i = 0; i < o->n_sens; i++)
            for (int64_t c = 0; c < o->sens[i].n_cand; c++)
                if (!strcmp(o->sens[i].cand[c].label, labels[li])) {
                    int k = o->sens[i].layer * PQ_REPORT_N_LINEARS + o->sens[i].linear;
                    v[k] = o->sens[i].cand[c].d_loss;
                    tip[k] = o->sens[i].tensor;
                }
        char id[16];
        snprintf(id, sizeof id, "sens%d", li);
        pq_html_raw(h, "<div><h3>&Delta; loss at ");
        pq_html_text(h, labels[li], 0);
        pq_html_raw(h, "</h3>\n");
        pq_report_grid g = {.id = id, .kind = "sensitivity", .unit = "", .rows = L, .v = v, .note = note,
                            .tip = tip, .pal = PQ_PAL_HARM, .decimals = 4};
        pq_report_heatmap(h, &g);
        pq_html_raw(h, "</div>\n");
    }
    pq_html_raw(h, "</div></section>\n");
    free(v);
    free(note);
    free(tip);
}

/* ---- recipes ---- */

static void section_recipe(pq_html *h, const pq_report_model *m)
{
    pq_html_raw(h, "<section id=\"recipe\"><h2>Recipe per tensor</h2>\n<p>What each tensor is stored as, from the "
                "file's <code>/recipe</code> table.</p>\n");
    pq_report_recipe_grid(h, m);
    pq_html_raw(h, "<table id=\"recipe-table\"><thead><tr><th>recipe</th><th>tensors</th><th>parameters</th>"
                "<th>bytes</th></tr></thead><tbody>\n");
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const char *r = m->t[i].recipe;
        bool seen = false;
        for (int64_t k = 0; k < i && !seen; k++) seen = !strcmp(m->t[k].recipe, r);
        if (seen) continue;
        int64_t cnt = 0, el = 0, by = 0;
        for (int64_t k = i; k < m->n_tensors; k++)
            if (!strcmp(m->t[k].recipe, r)) cnt++, el += m->t[k].n_elems, by += m->t[k].bytes;
        char c[32], e[32], b[32];
        snprintf(c, sizeof c, "%lld", (long long)cnt);
        snprintf(e, sizeof e, "%lld", (long long)el);
        fmt_bytes((double)by, b, sizeof b);
        pq_html_raw(h, "<tr class=\"recipe-row\">");
        td(h, r, true);
        td(h, c, false);
        td(h, e, false);
        td(h, b, false);
        pq_html_raw(h, "</tr>\n");
    }
    pq_html_printf(h, "</tbody></table>\n<details><summary>All %lld tensors</summary>\n<table id=\"tensor-table\">"
                   "<thead><tr><th>tensor</th><th>recipe</th><th>parameters</th><th>bytes</th>"
                   "<th>weight SQNR (dB)</th></tr></thead><tbody>\n", (long long)m->n_tensors);
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const pq_report_tensor *t = &m->t[i];
        char e[32], b[32], q[32];
        snprintf(e, sizeof e, "%lld", (long long)t->n_elems);
        fmt_bytes((double)t->bytes, b, sizeof b);
        fmt_num(t->sqnr_db, 4, q, sizeof q);
        pq_html_raw(h, "<tr class=\"tensor-row\">");
        td(h, t->name, true);
        td(h, t->recipe, true);
        td(h, e, false);
        td(h, b, false);
        td(h, isnan(t->sqnr_db) ? "" : q, false);
        pq_html_raw(h, "</tr>\n");
    }
    pq_html_raw(h, "</tbody></table></details></section>\n");
}

/* ---- accuracy ---- */

typedef enum { V_PCT, V_NUM, V_BYTES, V_RATE } vkind;

static void fmt_v(double v, vkind k, char *b, size_t n)
{
    if (k == V_PCT) fmt_pct(v, b, n);
    else if (k == V_BYTES) fmt_bytes(v, b, n);
    else if (k == V_RATE && isfinite(v)) snprintf(b, n, "%.0f", v);
    else fmt_num(v, 5, b, n);
}

static void pair_row(pq_html *h, const pq_report_eval *e, const char *label, const char *key, vkind k)
{
    char kr[64], kq[64], a[32], b[32], d[32] = "";
    snprintf(kr, sizeof kr, "%s_reference", key);
    snprintf(kq, sizeof kq, "%s_quantized", key);
    double r = pq_report_eval_num(e, NULL, kr), q = pq_report_eval_num(e, NULL, kq);
    if (isnan(r) && isnan(q)) return;
    fmt_v(r, k, a, sizeof a);
    fmt_v(q, k, b, sizeof b);
    if (k == V_PCT && isfinite(r) && isfinite(q)) snprintf(d, sizeof d, "%+.2f pt", 100 * (q - r));
    else if (isfinite(r) && isfinite(q) && r != 0) snprintf(d, sizeof d, "%.3fx", q / r);
    pq_html_printf(h, "<tr class=\"metric-row\" data-key=\"%s\">", key);
    td(h, label, true);
    td(h, a, false);
    td(h, b, false);
    td(h, d, false);
    pq_html_raw(h, "</tr>\n");
}

static void one_row(pq_html *h, const char *label, double v, vkind k, const char *key)
{
    if (isnan(v)) return;
    char b[32];
    fmt_v(v, k, b, sizeof b);
    pq_html_printf(h, "<tr class=\"metric-row\" data-key=\"%s\">", key);
    td(h, label, true);
    pq_html_raw(h, "<td colspan=\"3\">");
    pq_html_text(h, b, 0);
    pq_html_raw(h, "</td></tr>\n");
}

static void section_accuracy(pq_html *h, const pq_report_model *m, const pq_report_eval *e)
{
    if (!section_open(h, "accuracy", "Accuracy against the reference", e && e->root,
                      "Give <code>--evaluate E.json</code> (from <code>proteus evaluate --json</code>)."))
        return;
    const char *model = pq_report_eval_str(e, NULL, "model"), *ref = pq_report_eval_str(e, NULL, "reference");
    const char *fasta = pq_report_eval_str(e, NULL, "fasta");
    pq_html_raw(h, "<p>");
    if (model) pq_html_raw(h, "Model <code>"), pq_html_text(h, model, 200), pq_html_raw(h, "</code> ");
    if (ref) pq_html_raw(h, "against <code>"), pq_html_text(h, ref, 200), pq_html_raw(h, "</code> ");
    if (fasta) pq_html_raw(h, "on <code>"), pq_html_text(h, fasta, 200), pq_html_raw(h, "</code>");
    char n[3][32];
    fmt_num(pq_report_eval_num(e, NULL, "n_sequences"), 10, n[0], 32);
    fmt_num(pq_report_eval_num(e, NULL, "n_tokens"), 12, n[1], 32);
    fmt_num(pq_report_eval_num(e, NULL, "n_masked"), 12, n[2], 32);
    pq_html_printf(h, " (%s sequences, %s tokens, %s masked positions).</p>\n", n[0], n[1], n[2]);
    if (model && strcmp(base_name(model), base_name(m->path))) {
        pq_html_raw(h, "<p class=\"bad\">This JSON evaluated <code>");
        pq_html_text(h, base_name(model), 200);
        pq_html_raw(h, "</code>, not <code>");
        pq_html_text(h, base_name(m->path), 200);
        pq_html_raw(h, "</code>: check that it is of this file.</p>\n");
    }
    pq_html_raw(h, "<table id=\"accuracy-table\"><thead><tr><th>metric</th><th>reference</th><th>quantized</th>"
                "<th>difference</th></tr></thead><tbody>\n");
    pair_row(h, e, "masked-LM accuracy", "accuracy", V_PCT);
    pair_row(h, e, "masked-LM top-1 error", "top1_error", V_PCT);
    pair_row(h, e, "pseudo-perplexity", "perplexity", V_NUM);
    pair_row(h, e, "confidence (mean top probability, masked)", "confidence", V_PCT);
    pair_row(h, e, "expected calibration error (15 bins)", "ece", V_NUM);
    pair_row(h, e, "file bytes", "file_bytes", V_BYTES);
    pair_row(h, e, "weight bytes in memory", "weight_bytes", V_BYTES);
    pair_row(h, e, "Linear weight bytes", "linear_weight_bytes", V_BYTES);
    pair_row(h, e, "RSS growth at load (MiB)", "rss_load_mib", V_NUM);
    pair_row(h, e, "tokens/s (masked pass)", "tokens_per_s", V_RATE);
    one_row(h, "accuracy lost (points)", pq_report_eval_num(e, NULL, "accuracy_drop_points"), V_NUM,
            "accuracy_drop_points");
    one_row(h, "logits KL(reference || quantized), mean", pq_report_eval_num(e, NULL, "logits_kl_mean"), V_NUM,
            "logits_kl_mean");
    one_row(h, "logits KL, max", pq_report_eval_num(e, NULL, "logits_kl_max"), V_NUM, "logits_kl_max");
    one_row(h, "logits cosine, mean", pq_report_eval_num(e, NULL, "logits_cosine_mean"), V_NUM,
            "logits_cosine_mean");
    one_row(h, "embedding cosine, mean", pq_report_eval_num(e, NULL, "embedding_cosine_mean"), V_NUM,
            "embedding_cosine_mean");
    one_row(h, "top prediction differs from the reference's (all positions)",
            pq_report_eval_num(e, NULL, "top1_disagreement"), V_PCT, "top1_disagreement");
    one_row(h, "speed-up", pq_report_eval_num(e, NULL, "speedup"), V_NUM, "speedup");
    one_row(h, "threads", pq_report_eval_num(e, NULL, "threads"), V_NUM, "threads");
    const char *gate = pq_report_eval_str(e, NULL, "accuracy_gate");
    if (gate) {
        pq_html_raw(h, "<tr class=\"metric-row\" data-key=\"accuracy_gate\"><td class=\"txt\">accuracy gate");
        double md = pq_report_eval_num(e, NULL, "max_drop_points");
        if (!isnan(md)) pq_html_printf(h, " (at most %g points)", md);
        pq_html_printf(h, "</td><td colspan=\"3\" class=\"%s\">", strcmp(gate, "pass") ? "bad" : "ok");
        pq_html_text(h, gate, 40);
        pq_html_raw(h, "</td></tr>\n");
    }
    pq_html_raw(h, "</tbody></table>\n");
    if (json_object_get(e->root, "utilization")) {
        const char *kernel = pq_report_eval_str(e, "utilization", "kernel");
        char b[5][32];
        fmt_num(pq_report_eval_num(e, "utilization", "achieved_gops"), 4, b[0], 32);
        fmt_num(pq_report_eval_num(e, "utilization", "peak_gops"), 4, b[1], 32);
        fmt_pct(pq_report_eval_num(e, "utilization", "fraction"), b[2], 32);
        fmt_num(pq_report_eval_num(e, "utilization", "threads_busy"), 3, b[3], 32);
        fmt_num(pq_report_eval_num(e, "utilization", "memory_gbps"), 4, b[4], 32);
        pq_html_raw(h, "<h3>Hardware utilization (quantized model)</h3>\n<table id=\"utilization-table\"><tbody>\n");
        kv_row(h, "kernel", kernel ? kernel : "n/a", 120);
        kv_row(h, "achieved GOPS", b[0], 0);
        kv_row(h, "peak GOPS of the kernel", b[1], 0);
        kv_row(h, "fraction of peak", b[2], 0);
        kv_row(h, "threads busy", b[3], 0);
        kv_row(h, "memory bandwidth (GB/s)", b[4], 0);
        pq_html_raw(h, "</tbody></table>\n");
    }
    pq_html_raw(h, "</section>\n");
}

/* ---- optimize ---- */

static void section_optimize(pq_html *h, const pq_report_opt *o, const pq_report_eval *e)
{
    if (!section_open(h, "optimize", "Optimize: the Pareto front", o && o->root,
                      "Give <code>--optimize O.json</code> (from <code>proteus optimize --json</code>)."))
        return;
    char b[4][32];
    pq_html_raw(h, "<table id=\"constraints-table\"><tbody>\n");
    if (o->model) kv_row(h, "model", o->model, 300);
    fmt_bytes(o->max_size, b[0], 32);
    kv_row(h, "size at most", isnan(o->max_size) ? "(none)" : b[0], 0);
    snprintf(b[1], 32, isnan(o->max_drop) ? "(none)" : "%g points", o->max_drop);
    kv_row(h, "accuracy drop at most", b[1], 0);
    snprintf(b[2], 32, isnan(o->min_speedup) ? "(none)" : "%gx", o->min_speedup);
    kv_row(h, "speed-up at least", b[2], 0);
    if (o->has_chosen) {
        if (o->recipe_file) kv_row(h, "chosen recipe file", o->recipe_file, 300);
        fmt_bytes(o->c_bytes, b[0], 32);
        kv_row(h, "chosen size", b[0], 0);
        fmt_pct(o->c_accuracy, b[1], 32);
        fmt_pct(o->c_reference_accuracy, b[2], 32);
        pq_html_raw(h, "<tr><td>chosen accuracy (reference)</td><td class=\"txt\">");
        pq_html_printf(h, "%s (%s)</td></tr>\n", b[1], b[2]);
        fmt_num(o->c_drop_points, 4, b[3], 32);
        kv_row(h, "points lost", b[3], 0);
        fmt_num(o->c_kl, 4, b[3], 32);
        kv_row(h, "logits KL", b[3], 0);
        if (o->c_met >= 0)
            pq_html_printf(h, "<tr><td>constraints met</td><td class=\"txt %s\">%s</td></tr>\n",
                           o->c_met ? "ok" : "bad", o->c_met ? "yes" : "no");
    }
    pq_html_raw(h, "</tbody></table>\n");
    if (o->n_unmet) {
        pq_html_raw(h, "<p class=\"bad\">Not met:</p><ul id=\"unmet\">\n");
        for (int64_t i = 0; i < o->n_unmet; i++) {
            pq_html_raw(h, "<li>");
            pq_html_text(h, o->unmet[i], 500);
            pq_html_raw(h, "</li>\n");
        }
        pq_html_raw(h, "</ul>\n");
    }
    double ref = o->has_chosen ? o->c_reference_accuracy : NAN;
    if (isnan(ref) && e && e->root) ref = pq_report_eval_num(e, NULL, "accuracy_reference");
    if (o->n_front) {
        pq_report_front_svg(h, o, ref);
        pq_html_raw(h, "<table id=\"front-table\"><thead><tr><th>candidate</th><th>bytes</th><th>accuracy</th>"
                    "<th>logits KL</th><th>tokens/s</th></tr></thead><tbody>\n");
        for (int64_t i = 0; i < o->n_front; i++) {
            const pq_report_point *p = &o->front[i];
            fmt_bytes(p->bytes, b[0], 32);
            fmt_pct(p->accuracy, b[1], 32);
            fmt_num(p->kl, 4, b[2], 32);
            if (isfinite(p->tokens_per_s)) snprintf(b[3], 32, "%.0f", p->tokens_per_s);
            else snprintf(b[3], 32, "n/a");
            pq_html_printf(h, "<tr class=\"front-row%s\">", p->chosen ? " accepted" : "");
            pq_html_raw(h, "<td class=\"txt\">");
            pq_html_text(h, p->label ? p->label : "(no label)", 200);
            if (p->chosen) pq_html_raw(h, " <b>(chosen)</b>");
            pq_html_raw(h, "</td>");
            for (int k = 0; k < 4; k++) td(h, b[k], false);
            pq_html_raw(h, "</tr>\n");
        }
        pq_html_raw(h, "</tbody></table>\n");
    } else {
        pq_html_raw(h, "<p class=\"none\">The JSON holds no front.</p>\n");
    }
    pq_html_raw(h, "</section>\n");
}

/* ---- fallback trail ---- */

static void section_trail(pq_html *h, const pq_report_trail *t)
{
    if (!section_open(h, "fallback", "Fallback trail", t && t->root,
                      "The file records no fallback (<code>quantize --fallback-scheme</code> with "
                      "<code>--allow-accuracy-drop</code> records one)."))
        return;
    pq_html_raw(h, "<p>Every attempt the quantizer made, in order, from <code>/provenance</code> "
                "<code>fallback_trail</code>; the accepted one is green.</p>\n<table id=\"trail-table\"><thead><tr>"
                "<th>#</th><th class=\"txt\">what</th><th class=\"txt\">recipe</th><th class=\"txt\">kept float</th>"
                "<th>accuracy</th><th>reference</th>"
                "<th>drop (points)</th><th>logits KL</th><th>size</th><th>accepted</th></tr></thead><tbody>\n");
    for (int64_t i = 0; i < t->n; i++) {
        const pq_report_attempt *a = &t->a[i];
        char b[6][32];
        if (a->attempt >= 0) snprintf(b[0], 32, "%lld", (long long)a->attempt);
        else snprintf(b[0], 32, "%lld", (long long)i + 1);
        fmt_pct(a->accuracy, b[1], 32);
        fmt_pct(a->reference_accuracy, b[2], 32);
        if (isnan(a->drop)) snprintf(b[3], 32, "n/a");
        else snprintf(b[3], 32, "%.2f", 100 * a->drop);
        fmt_num(a->kl, 4, b[4], 32);
        fmt_bytes(a->bytes, b[5], 32);
        pq_html_printf(h, "<tr class=\"trail-row%s\">",
                       a->accepted == 1 ? " accepted" : a->accepted == 0 ? " rejected" : "");
        td(h, b[0], true);
        td(h, a->what ? a->what : "", true);
        td(h, a->recipe, true);
        size_t nk = a->kept_float ? json_array_size(a->kept_float) : 0;
        pq_html_raw(h, "<td class=\"txt\">");
        if (nk) {
            pq_html_printf(h, "<details><summary>%zu tensor%s</summary>", nk, nk == 1 ? "" : "s");
            for (size_t k = 0; k < nk; k++) {
                pq_html_text(h, json_string_value(json_array_get(a->kept_float, k)), 300);
                pq_html_raw(h, "<br>");
            }
            pq_html_raw(h, "</details>");
        }
        pq_html_raw(h, "</td>");
        for (int k = 1; k < 6; k++) td(h, b[k], false);
        pq_html_printf(h, "<td class=\"%s\">%s</td></tr>\n", a->accepted == 1 ? "ok" : "bad",
                       a->accepted == 1 ? "&#10003; yes" : a->accepted == 0 ? "&#10007; no" : "n/a");
    }
    pq_html_raw(h, "</tbody></table></section>\n");
}

/* ---- provenance ---- */

static void section_provenance(pq_html *h, const pq_report_model *m)
{
    char b[64];
    pq_html_raw(h, "<section id=\"provenance\"><h2>Provenance</h2>\n<table id=\"provenance-table\"><tbody>\n");
    snprintf(b, sizeof b, "%d", m->format_version);
    kv_row(h, "format version", b, 0);
    kv_row(h, "architecture", m->architecture, 200);
    snprintf(b, sizeof b, "%d layers, embed %d, %d heads, ffn %d", m->num_layers, m->embed_dim,
             m->attention_heads, m->ffn_dim);
    kv_row(h, "shape", b, 0);
    kv_row(h, "source checkpoint", m->model_name, 300);
    char dl[48];
    snprintf(dl, sizeof dl, "source digest (%s tree)", m->source_digest_alg ? m->source_digest_alg : "sha256");
    kv_row(h, dl, m->source_sha256, 200);
    kv_row(h, "created by", m->created_by, 200);
    snprintf(b, sizeof b, "%d", m->num_ranks);
    kv_row(h, "MPI ranks", b, 0);
    kv_row(h, "configuration", m->config_json, 2000);
    for (int64_t i = 0; i < m->n_prov; i++)
        if (strcmp(m->prov_key[i], "fallback_trail")) kv_row(h, m->prov_key[i], m->prov_val[i], 600);
        else kv_row(h, m->prov_key[i], "(the fallback trail, above)", 0);
    pq_html_raw(h, "</tbody></table></section>\n");
}

/* ---- the page ---- */

static void card(pq_html *h, const char *value, const char *what)
{
    pq_html_raw(h, "<div class=\"card\"><b>");
    pq_html_text(h, value, 60);
    pq_html_raw(h, "</b><span>");
    pq_html_text(h, what, 0);
    pq_html_raw(h, "</span></div>\n");
}

static void summary(pq_html *h, const pq_report_model *m, const pq_report_eval *e, const pq_report_opt *o,
                    const pq_report_trail *t)
{
    size_sums s;
    sum_sizes(m, &s);
    char b[64];
    pq_html_raw(h, "<div class=\"cards\">\n");
    fmt_bytes((double)m->file_bytes, b, sizeof b);
    card(h, b, "file on disk");
    snprintf(b, sizeof b, "%.2fx", s.total_bytes > 0 ? 4 * s.total_elems / s.total_bytes : NAN);
    card(h, b, "smaller than fp32 (tensors)");
    double q = 0, n = 0;
    for (int64_t i = 0; i < m->n_tensors; i++)
        if (m->t[i].linear >= 0) n++, q += m->t[i].quantized;
    snprintf(b, sizeof b, "%.0f / %.0f", q, n);
    card(h, b, "Linears quantized");
    if (e && e->root) {
        double d = pq_report_eval_num(e, NULL, "accuracy_drop_points");
        if (isnan(d))
            d = 100 * (pq_report_eval_num(e, NULL, "accuracy_reference") -
                       pq_report_eval_num(e, NULL, "accuracy_quantized"));
        fmt_num(d, 3, b, sizeof b);
        card(h, b, "accuracy points lost");
        fmt_num(pq_report_eval_num(e, NULL, "logits_kl_mean"), 3, b, sizeof b);
        card(h, b, "logits KL, mean");
    }
    if (o && o->root && o->has_chosen && o->c_met >= 0) card(h, o->c_met ? "met" : "not met", "optimize constraints");
    if (t && t->root) {
        snprintf(b, sizeof b, "%lld", (long long)t->n);
        card(h, b, "fallback attempts");
    }
    pq_html_raw(h, "</div>\n");
}

pq_status pq_report_render(pq_html *h, const pq_report_model *m, const pq_report_eval *e, const pq_report_opt *o,
                           const pq_report_trail *t)
{
    const char *name = base_name(m->path);
    pq_html_raw(h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
                "content=\"width=device-width, initial-scale=1\">\n<title>Proteus report: ");
    pq_html_text(h, name, 200);
    pq_html_printf(h, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<main>\n<h1>Proteus report: ", k_css);
    pq_html_text(h, name, 200);
    pq_html_raw(h, "</h1>\n<p class=\"sub\">");
    pq_html_text(h, m->architecture, 200);
    pq_html_printf(h, ", %d layers, format version %d, %lld tensors, from <code>", m->num_layers, m->format_version,
                   (long long)m->n_tensors);
    pq_html_text(h, m->model_name, 200);
    pq_html_raw(h, "</code></p>\n");
    summary(h, m, e, o, t);
    section_sqnr(h, m, e);
    section_sensitivity(h, m, o);
    section_recipe(h, m);
    section_size(h, m);
    section_accuracy(h, m, e);
    section_optimize(h, o, e);
    section_trail(h, t);
    section_provenance(h, m);
    pq_html_raw(h, "</main>\n</body>\n</html>\n");
    return pq_html_status(h);
}
