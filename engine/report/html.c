/* SPDX-License-Identifier: Apache-2.0 */
/* html.c - the HTML writer of `proteus report`: buffer, escaping, colours. */
#include "report/html.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pq_html_init(pq_html *h)
{
    *h = (pq_html){0};
}

void pq_html_free(pq_html *h)
{
    if (!h) return;
    free(h->buf);
    *h = (pq_html){0};
}

pq_status pq_html_status(const pq_html *h)
{
    return h->oom ? pq_err(PQ_ERR_RESOURCE, "report: out of memory building the page (%zu bytes)", h->len)
                  : PQ_OK;
}

/* Room for n more bytes and the NUL. */
static bool reserve(pq_html *h, size_t n)
{
    if (h->oom) return false;
    if (h->len + n + 1 <= h->cap) return true;
    size_t cap = h->cap ? h->cap : 4096;
    while (cap < h->len + n + 1) {
        if (cap > SIZE_MAX / 2) {
            h->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(h->buf, cap);
    if (!p) {
        h->oom = true;
        return false;
    }
    h->buf = p;
    h->cap = cap;
    return true;
}

static void append(pq_html *h, const char *s, size_t n)
{
    if (!reserve(h, n)) return;
    memcpy(h->buf + h->len, s, n);
    h->len += n;
    h->buf[h->len] = '\0';
}

void pq_html_raw(pq_html *h, const char *s)
{
    if (s) append(h, s, strlen(s));
}

void pq_html_printf(pq_html *h, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        h->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        append(h, small, (size_t)n);
        return;
    }
    if (!reserve(h, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(h->buf + h->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h->len += (size_t)n;
}

void pq_html_text(pq_html *h, const char *s, size_t max_bytes)
{
    if (!s) return;
    size_t n = strlen(s), take = max_bytes && n > max_bytes ? max_bytes : n;
    /* do not cut a UTF-8 sequence in two: back up over continuation bytes */
    while (take < n && take > 0 && ((unsigned char)s[take] & 0xC0) == 0x80) take--;
    size_t run = 0; /* bytes copied as they are, flushed before each entity */
    for (size_t i = 0; i < take; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *ent = NULL;
        switch (c) {
        case '&': ent = "&amp;"; break;
        case '<': ent = "&lt;"; break;
        case '>': ent = "&gt;"; break;
        case '"': ent = "&quot;"; break;
        case '\'': ent = "&#39;"; break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) ent = "\xEF\xBF\xBD";
        }
        if (!ent) {
            run++;
            continue;
        }
        append(h, s + i - run, run);
        run = 0;
        pq_html_raw(h, ent);
    }
    append(h, s + take - run, run);
    if (take < n) pq_html_raw(h, "\xE2\x80\xA6");
}

/* Five stops per palette, t = 0, 0.25, 0.5, 0.75, 1. QUALITY follows
 * matplotlib's viridis at those points; HARM ColorBrewer's "Reds". */
static const uint8_t k_stops[2][5][3] = {
    [PQ_PAL_QUALITY] = {{0x44, 0x01, 0x54}, {0x3b, 0x52, 0x8b}, {0x21, 0x91, 0x8c}, {0x5e, 0xc9, 0x62},
                        {0xfd, 0xe7, 0x25}},
    [PQ_PAL_HARM] = {{0xff, 0xf5, 0xf0}, {0xfc, 0xbb, 0xa1}, {0xfb, 0x6a, 0x4a}, {0xcb, 0x18, 0x1d},
                     {0x67, 0x00, 0x0d}},
};

void pq_html_colour(pq_palette p, double t, uint8_t rgb[3])
{
    if (isnan(t) || (p != PQ_PAL_QUALITY && p != PQ_PAL_HARM)) {
        rgb[0] = rgb[1] = rgb[2] = 0xd0;
        return;
    }
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double x = t * 4;
    int k = (int)x;
    if (k > 3) k = 3;
    double f = x - k;
    for (int c = 0; c < 3; c++) {
        double v = k_stops[p][k][c] + f * (k_stops[p][k + 1][c] - k_stops[p][k][c]);
        rgb[c] = (uint8_t)lround(v);
    }
}

double pq_html_scale(double v, double lo, double hi)
{
    if (isnan(v)) return NAN;
    if (isinf(v)) return v > 0 ? 1 : 0;
    if (!(hi > lo)) return 0.5;
    return (v - lo) / (hi - lo);
}

static double linear(uint8_t c)
{
    double s = c / 255.0;
    return s <= 0.04045 ? s / 12.92 : pow((s + 0.055) / 1.055, 2.4);
}

bool pq_html_text_white(const uint8_t rgb[3])
{
    double y = 0.2126 * linear(rgb[0]) + 0.7152 * linear(rgb[1]) + 0.0722 * linear(rgb[2]);
    return y < 0.18;
}
