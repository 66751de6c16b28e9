/* SPDX-License-Identifier: Apache-2.0 */
/* html.h - a small HTML and SVG writer for `proteus report`: a growing
 * buffer, escaped text, and the colour scales of its pictures.
 *
 * Every string that comes from a file goes through pq_html_text, never
 * pq_html_raw or pq_html_printf's format. The buffer
 * remembers a failed allocation: later appends do nothing and
 * pq_html_status reports it once, so a page is built without a check after
 * every call. */
#ifndef PQ_REPORT_HTML_H
#define PQ_REPORT_HTML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

typedef struct pq_html {
    char *buf;     /* owned, NUL-terminated when len > 0 */
    size_t len, cap;
    bool oom;      /* an append failed: the text is incomplete */
} pq_html;

/* Start an empty buffer (no allocation yet). */
void pq_html_init(pq_html *h);
/* Free the text. NULL is fine; h may be reused after pq_html_init. */
void pq_html_free(pq_html *h);
/* PQ_ERR_RESOURCE when an append ran out of memory, else PQ_OK. */
pq_status pq_html_status(const pq_html *h);

/* Append markup as it is (our own tags; never text from a file). */
void pq_html_raw(pq_html *h, const char *s);
/* Append printf-formatted markup: numbers and our own tags only. */
void pq_html_printf(pq_html *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as text that is safe in element content and in a quoted
 * attribute value alike: & < > " ' become entities, and control
 * characters other than tab, newline and carriage return become U+FFFD.
 * At most max_bytes bytes of s are taken (0: all), followed by an ellipsis
 * when cut. NULL appends nothing. */
void pq_html_text(pq_html *h, const char *s, size_t max_bytes);

/* ---- colour scales ---- */

typedef enum pq_palette {
    PQ_PAL_QUALITY,     /* dark purple (low) to yellow (high): SQNR, more is better */
    PQ_PAL_HARM,        /* near white (low) to dark red (high): sensitivity, more is worse */
} pq_palette;

/* The colour of t in [0, 1] on palette p, linear between its five stops
 * (t = 0, 0.25, 0.5, 0.75, 1); t outside [0, 1] is clamped; NaN gives the
 * grey of "no value" (#d0d0d0). */
void pq_html_colour(pq_palette p, double t, uint8_t rgb[3]);
/* Where v lies between lo and hi, as t for pq_html_colour: 0 at lo, 1 at
 * hi (lo == hi: 0.5); +inf gives 1 and -inf 0; NaN stays NaN. */
double pq_html_scale(double v, double lo, double hi);
/* Whether text on rgb should be white (dark background) rather than black,
 * by the WCAG relative luminance of rgb (below 0.18: white). */
bool pq_html_text_white(const uint8_t rgb[3]);

#endif
