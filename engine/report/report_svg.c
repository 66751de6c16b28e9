/* SPDX-License-Identifier: Apache-2.0 */
/* report_svg.c - heatmaps, the recipe grid, the size bar and the Pareto
 * front of `proteus report`, drawn as inline SVG. */
#include "report/report_svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GRID_LEFT = 64, GRID_TOP = 26, CELL_W = 84, CELL_H = 24 };

static void colour_hex(const uint8_t rgb[3], char out[8])
{
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* A value as a cell shows it. */
static void value_text(double v, int decimals, char *buf, size_t n)
{
    if (isnan(v)) snprintf(buf, n, "n/a");
    else if (isinf(v)) snprintf(buf, n, v > 0 ? "exact" : "-inf");
    else snprintf(buf, n, "%.*f", decimals, v);
}

static void grid_frame(pq_html *h, int rows, int width, int height, const char *label)
{
    pq_html_printf(h, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap\" width=\"%d\" height=\"%d\" "
                   "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", width, height, width, height);
    pq_html_text(h, label, 0);
    pq_html_raw(h, "\">\n");
    for (int k = 0; k < PQ_REPORT_N_LINEARS; k++)
        pq_html_printf(h, "<text class=\"col\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                       GRID_LEFT + k * CELL_W + CELL_W / 2, GRID_TOP - 8, pq_report_linear_name(k));
    for (int l = 0; l < rows; l++)
        pq_html_printf(h, "<text class=\"row\" x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n",
                       GRID_LEFT - 6, GRID_TOP + l * CELL_H + CELL_H / 2 + 4, l);
}

/* One cell: its rectangle (with the data the test reads) and its text. */
static void cell(pq_html *h, const char *cls, int l, int k, const char *fill, bool white, const char *value_attr,
                 const char *text, const char *tip)
{
    int x = GRID_LEFT + k * CELL_W, y = GRID_TOP + l * CELL_H;
    pq_html_printf(h, "<g><rect class=\"cell %s\" data-layer=\"%d\" data-linear=\"%s\" data-value=\"%s\" "
                   "x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>", cls, l, pq_report_linear_name(k),
                   value_attr, x + 1, y + 1, CELL_W - 2, CELL_H - 2, fill);
    pq_html_printf(h, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">", x + CELL_W / 2,
                   y + CELL_H / 2 + 4, white ? "#ffffff" : "#111111");
    pq_html_text(h, text, 0);
    pq_html_raw(h, "</text><title>");
    pq_html_text(h, tip, 0);
    pq_html_raw(h, "</title></g>\n");
}

void pq_report_heatmap(pq_html *h, const pq_report_grid *g)
{
    int n = g->rows * PQ_REPORT_N_LINEARS;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(g->v[i])) lo = fmin(lo, g->v[i]), hi = fmax(hi, g->v[i]);
    if (lo > hi) lo = 0, hi = 1;
    int width = GRID_LEFT + PQ_REPORT_N_LINEARS * CELL_W + 10, legend_y = GRID_TOP + g->rows * CELL_H + 12;
    char cls[64];
    snprintf(cls, sizeof cls, "cell-%s", g->kind);
    grid_frame(h, g->rows, width, legend_y + 40, g->kind);
    for (int l = 0; l < g->rows; l++)
        for (int k = 0; k < PQ_REPORT_N_LINEARS; k++) {
            int i = l * PQ_REPORT_N_LINEARS + k;
            double v = g->v[i];
            uint8_t rgb[3];
            char fill[8], text[64], attr[32], tip[512];
            pq_html_colour(g->pal, pq_html_scale(v, lo, hi), rgb);
            colour_hex(rgb, fill);
            value_text(v, g->decimals, text, sizeof text);
            if (isnan(v)) snprintf(text, sizeof text, "%s", g->note && g->note[i] ? g->note[i] : "n/a");
            if (isnan(v)) snprintf(attr, sizeof attr, "nan");
            else snprintf(attr, sizeof attr, "%.6g", v);
            snprintf(tip, sizeof tip, "layer %d %s: %s%s%s%s%s", l, pq_report_linear_name(k), text,
                     isfinite(v) ? " " : "", isfinite(v) ? g->unit : "", g->tip && g->tip[i] ? " - " : "",
                     g->tip && g->tip[i] ? g->tip[i] : "");
            cell(h, cls, l, k, fill, pq_html_text_white(rgb), attr, text, tip);
        }
    /* the legend: the palette from lo to hi, and the grey of "no value" */
    pq_html_printf(h, "<defs><linearGradient id=\"grad-%s\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">", g->id);
    for (int s = 0; s <= 4; s++) {
        uint8_t rgb[3];
        char c[8];
        pq_html_colour(g->pal, s / 4.0, rgb);
        colour_hex(rgb, c);
        pq_html_printf(h, "<stop offset=\"%d%%\" stop-color=\"%s\"/>", s * 25, c);
    }
    pq_html_printf(h, "</linearGradient></defs>\n<g class=\"legend\"><rect x=\"%d\" y=\"%d\" width=\"240\" "
                   "height=\"10\" fill=\"url(#grad-%s)\" stroke=\"#888\" stroke-width=\"0.5\"/>\n",
                   GRID_LEFT, legend_y, g->id);
    for (int s = 0; s <= 2; s++)
        pq_html_printf(h, "<text x=\"%d\" y=\"%d\" text-anchor=\"%s\">%.*f%s%s</text>\n", GRID_LEFT + s * 120,
                       legend_y + 24, s == 0 ? "start" : s == 1 ? "middle" : "end", g->decimals,
                       lo + s * (hi - lo) / 2, s == 2 ? " " : "", s == 2 ? g->unit : "");
    pq_html_printf(h, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"#d0d0d0\"/><text x=\"%d\" "
                   "y=\"%d\">no value</text></g>\n</svg>\n", GRID_LEFT + 270, legend_y, GRID_LEFT + 290,
                   legend_y + 9);
}

const char *pq_report_precision_colour(const char *p)
{
    if (!strcmp(p, "int4")) return "#e66101";
    if (!strcmp(p, "int8")) return "#5e3c99";
    if (!strcmp(p, "fp16")) return "#fdb863";
    if (!strcmp(p, "fp32")) return "#b2abd2";
    return "#d0d0d0";
}

/* "int4 group 64 symmetric rtn" in a cell's width: "int4 g64 sym". */
static void short_recipe(const char *recipe, char *buf, size_t n)
{
    static const char *const from[] = {"group ", "channel", "tensor", "asymmetric", "symmetric", " rtn", NULL};
    static const char *const to[] = {"g", "ch", "t", "asym", "sym", "", NULL};
    size_t k = 0;
    buf[0] = '\0';
    for (const char *s = recipe; *s && k + 1 < n;) {
        int hit = -1;
        for (int i = 0; from[i] && hit < 0; i++)
            if (!strncmp(s, from[i], strlen(from[i]))) hit = i;
        if (hit < 0) {
            buf[k++] = *s++;
            continue;
        }
        k += (size_t)snprintf(buf + k, n - k, "%s", to[hit]);
        if (k >= n) k = n - 1;
        s += strlen(from[hit]);
    }
    buf[k] = '\0';
}

void pq_report_recipe_grid(pq_html *h, const pq_report_model *m)
{
    int rows = m->num_layers, legend_y = GRID_TOP + rows * CELL_H + 12;
    int width = GRID_LEFT + PQ_REPORT_N_LINEARS * CELL_W + 10;
    grid_frame(h, rows, width, legend_y + 20, "recipe per Linear");
    for (int l = 0; l < rows; l++)
        for (int k = 0; k < PQ_REPORT_N_LINEARS; k++) {
            const pq_report_tensor *t = NULL;
            for (int64_t i = 0; i < m->n_tensors && !t; i++)
                if (m->t[i].layer == l && m->t[i].linear == k) t = &m->t[i];
            char text[96], tip[512];
            const char *fill = t ? pq_report_precision_colour(t->precision) : "#ffffff";
            short_recipe(t ? t->recipe : "absent", text, sizeof text);
            snprintf(tip, sizeof tip, "%s: %s", t ? t->name : "no such tensor", t ? t->recipe : "");
            bool white = t && (!strcmp(t->precision, "int4") || !strcmp(t->precision, "int8"));
            cell(h, "cell-recipe", l, k, fill, white, t ? t->precision : "absent", text, tip);
        }
    static const char *const precs[] = {"int4", "int8", "fp16", "fp32"};
    pq_html_raw(h, "<g class=\"legend\">");
    for (int i = 0; i < 4; i++)
        pq_html_printf(h, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"%s\"/><text x=\"%d\" "
                       "y=\"%d\">%s</text>", GRID_LEFT + i * 80, legend_y, pq_report_precision_colour(precs[i]),
                       GRID_LEFT + i * 80 + 18, legend_y + 9, precs[i]);
    pq_html_raw(h, "</g>\n</svg>\n");
}

void pq_report_size_bar(pq_html *h, const char *const *labels, const double *bytes, int n)
{
    double total = 0;
    for (int i = 0; i < n; i++) total += bytes[i];
    if (!(total > 0)) return;
    const int W = 600, x0 = 10;
    pq_html_printf(h, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"sizebar\" width=\"%d\" height=\"64\" "
                   "viewBox=\"0 0 %d 64\" role=\"img\" aria-label=\"stored bytes per precision\">\n", W + 20, W + 20);
    double x = x0;
    for (int i = 0; i < n; i++) {
        double w = W * bytes[i] / total;
        pq_html_printf(h, "<rect class=\"size-part\" x=\"%.2f\" y=\"4\" width=\"%.2f\" height=\"26\" fill=\"%s\">"
                       "<title>", x, w, pq_report_precision_colour(labels[i]));
        pq_html_text(h, labels[i], 0);
        pq_html_printf(h, ": %.1f %%</title></rect>\n", 100 * bytes[i] / total);
        pq_html_printf(h, "<rect x=\"%d\" y=\"42\" width=\"14\" height=\"10\" fill=\"%s\"/><text x=\"%d\" "
                       "y=\"51\">", x0 + i * 120, pq_report_precision_colour(labels[i]), x0 + i * 120 + 18);
        pq_html_text(h, labels[i], 0);
        pq_html_printf(h, " %.1f %%</text>\n", 100 * bytes[i] / total);
        x += w;
    }
    pq_html_raw(h, "</svg>\n");
}

/* A round step near range/target: 1, 2 or 5 times a power of ten. */
static double nice_step(double range, int target)
{
    double raw = range / target, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct axis {
    double lo, hi;   /* data range shown */
    double p0, p1;   /* pixels of lo and hi */
} axis;

static double ax(const axis *a, double v)
{
    return a->p0 + (v - a->lo) / (a->hi - a->lo) * (a->p1 - a->p0);
}

static void widen(axis *a)
{
    if (!(a->hi > a->lo)) a->lo -= 0.5, a->hi += 0.5;
    double pad = (a->hi - a->lo) * 0.08;
    a->lo -= pad;
    a->hi += pad;
}

static int cmp_bytes(const void *x, const void *y)
{
    const pq_report_point *a = *(const pq_report_point *const *)x, *b = *(const pq_report_point *const *)y;
    return (a->bytes > b->bytes) - (a->bytes < b->bytes);
}

void pq_report_front_svg(pq_html *h, const pq_report_opt *o, double ref_acc)
{
    const int W = 680, H = 380, L = 70, R = 20, T = 16, B = 48;
    axis xa = {INFINITY, -INFINITY, L, W - R}, ya = {INFINITY, -INFINITY, H - B, T};
    int64_t n = 0;
    const pq_report_point **pts = calloc((size_t)o->n_front + 1, sizeof *pts);
    if (!pts) {
        h->oom = true;
        return;
    }
    for (int64_t i = 0; i < o->n_front; i++)
        if (isfinite(o->front[i].bytes) && isfinite(o->front[i].accuracy)) {
            pts[n++] = &o->front[i];
            xa.lo = fmin(xa.lo, o->front[i].bytes / 1e6), xa.hi = fmax(xa.hi, o->front[i].bytes / 1e6);
            ya.lo = fmin(ya.lo, 100 * o->front[i].accuracy), ya.hi = fmax(ya.hi, 100 * o->front[i].accuracy);
        }
    if (n == 0) {
        free(pts);
        pq_html_raw(h, "<p class=\"none\">The front holds no point with both bytes and accuracy.</p>\n");
        return;
    }
    if (isfinite(ref_acc)) ya.lo = fmin(ya.lo, 100 * ref_acc), ya.hi = fmax(ya.hi, 100 * ref_acc);
    if (isfinite(o->max_size)) xa.lo = fmin(xa.lo, o->max_size / 1e6), xa.hi = fmax(xa.hi, o->max_size / 1e6);
    widen(&xa);
    widen(&ya);
    qsort(pts, (size_t)n, sizeof *pts, cmp_bytes);
    pq_html_printf(h, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"front\" width=\"%d\" height=\"%d\" "
                   "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"size against accuracy\">\n"
                   "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#999\"/>\n",
                   W, H, W, H, L, T, W - L - R, H - T - B);
    const axis *axes[2] = {&xa, &ya};
    for (int a = 0; a < 2; a++) {
        const axis *A = axes[a];
        double step = nice_step(A->hi - A->lo, 6);
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step));
        for (double v = ceil(A->lo / step) * step; v <= A->hi + step * 1e-9; v += step) {
            double p = ax(A, v);
            if (a == 0)
                pq_html_printf(h, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#e3e3e3\"/><text "
                               "x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.*f</text>\n", p, p, T, H - B, p,
                               H - B + 16, dec, v);
            else
                pq_html_printf(h, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/><text "
                               "x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", L, W - R, p, p, L - 6,
                               p + 4, dec, v);
        }
    }
    pq_html_printf(h, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">size (MB)</text>\n<text x=\"16\" y=\"%d\" "
                   "text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">masked-LM accuracy (%%)</text>\n",
                   (L + W - R) / 2, H - 10, (T + H - B) / 2, (T + H - B) / 2);
    if (isfinite(ref_acc))
        pq_html_printf(h, "<line class=\"ref-line\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" "
                       "stroke-dasharray=\"5 4\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">reference "
                       "%.2f %%</text>\n", L, W - R, ax(&ya, 100 * ref_acc), ax(&ya, 100 * ref_acc), W - R - 4,
                       ax(&ya, 100 * ref_acc) - 5, 100 * ref_acc);
    if (isfinite(o->max_size))
        pq_html_printf(h, "<line class=\"budget-line\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#c0392b\" "
                       "stroke-dasharray=\"5 4\"/><text x=\"%.1f\" y=\"%d\" fill=\"#c0392b\">size budget</text>\n",
                       ax(&xa, o->max_size / 1e6), ax(&xa, o->max_size / 1e6), T, H - B,
                       ax(&xa, o->max_size / 1e6) + 4, T + 14);
    /* the non-dominated points: no smaller point is as accurate */
    pq_html_raw(h, "<polyline class=\"front-line\" fill=\"none\" stroke=\"#2c7fb8\" stroke-width=\"1.5\" points=\"");
    double best = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (pts[i]->accuracy > best) {
            best = pts[i]->accuracy;
            pq_html_printf(h, "%.1f,%.1f ", ax(&xa, pts[i]->bytes / 1e6), ax(&ya, 100 * pts[i]->accuracy));
        }
    pq_html_raw(h, "\"/>\n");
    for (int pass = 0; pass < 2; pass++) /* the chosen point last, on top */
        for (int64_t i = 0; i < n; i++) {
            const pq_report_point *p = pts[i];
            if (p->chosen != (pass == 1)) continue;
            double x = ax(&xa, p->bytes / 1e6), y = ax(&ya, 100 * p->accuracy);
            pq_html_printf(h, "<circle class=\"front-point%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\" "
                           "stroke=\"#222\" data-bytes=\"%.0f\" data-accuracy=\"%.6g\"><title>",
                           p->chosen ? " chosen" : "",
                           x, y, p->chosen ? 8 : 5, p->chosen ? "#e6550d" : "#2c7fb8", p->bytes, p->accuracy);
            pq_html_text(h, p->label ? p->label : "(no label)", 0);
            pq_html_printf(h, ": %.3f MB, %.2f %%</title></circle>\n", p->bytes / 1e6, 100 * p->accuracy);
            if (p->chosen) {
                pq_html_printf(h, "<text class=\"chosen-label\" x=\"%.1f\" y=\"%.1f\" fill=\"#a63603\">chosen", x + 11,
                               y - 9);
                if (p->label) pq_html_raw(h, ": ");
                pq_html_text(h, p->label, 60);
                pq_html_raw(h, "</text>\n");
            }
        }
    pq_html_raw(h, "</svg>\n");
    free(pts);
}
