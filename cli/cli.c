/* SPDX-License-Identifier: Apache-2.0 */
/* cli.c - option errors, byte formatting, progress and summary printing. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pq_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "proteus %s: config error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'proteus %s --help')\n", cmd);
    return 2;
}

char *pq_cli_bytes(double n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (n >= 1000.0 && u < 4) { n /= 1000.0; u++; }
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", n, units[u]);
    return buf;
}

void pq_cli_progress_init(pq_cli_progress *p, FILE *out, int quiet)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->is_tty = isatty(fileno(out));
    p->last_pct = -1;
    p->quiet = quiet;
}

void pq_cli_progress_cb(void *user, const pq_progress *ev)
{
    pq_cli_progress *p = user;
    if (p->quiet || !ev->units_total) return;
    double frac = ev->bytes_total > 0 ? ev->bytes_done / ev->bytes_total : 1.0;
    int pct = (int)floor(frac * 100.0 + 1e-9);
    double gbs = ev->elapsed_s > 0 ? ev->bytes_done / ev->elapsed_s / 1e9 : 0;
    double eta = frac > 0 ? ev->elapsed_s * (1 - frac) / frac : 0;
    int finished = !strcmp(ev->phase, "done");
    if (p->is_tty) {
        char bar[41];
        int fill = (int)(frac * 40);
        for (int i = 0; i < 40; i++) bar[i] = i < fill ? '#' : '.';
        bar[40] = '\0';
        fprintf(p->out, "\r[%s] %3d%% %d/%d units %.2f GB/s ETA %.0fs ", bar, pct, ev->units_done,
                ev->units_total, gbs, eta);
        if (finished) fputc('\n', p->out);
        fflush(p->out);
        return;
    }
    if (finished || pct / 5 > p->last_pct / 5 || p->last_pct < 0) {
        if (finished)
            fprintf(p->out, "progress: done, %d units in %.1fs\n", ev->units_total, ev->elapsed_s);
        else
            fprintf(p->out, "progress: %3d%% %d/%d units %.2f GB/s ETA %.0fs%s%s\n", pct,
                    ev->units_done, ev->units_total, gbs, eta, ev->tensor ? " last " : "",
                    ev->tensor ? ev->tensor : "");
        fflush(p->out);
        p->last_pct = pct;
    }
}

static void shape_str(const pq_tensor_stats *t, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? "x%lld" : "%lld", (long long)t->shape[d]);
}

void pq_cli_print_summary(FILE *out, const pq_job_stats *s, int per_tensor)
{
    char a[32], b[32], shp[64];
    if (per_tensor) {
        fprintf(out, "%-58s %-12s %12s %12s %9s\n", "tensor", "shape", "before", "after", "SQNR dB");
        for (int i = 0; i < s->n_tensors; i++) {
            const pq_tensor_stats *t = &s->tensors[i];
            if (t->action != PQ_ACT_QUANT) continue;
            shape_str(t, shp, sizeof shp);
            fprintf(out, "%-58s %-12s %12s %12s %9.2f\n", t->name, shp,
                    pq_cli_bytes((double)t->bytes_before, a, sizeof a),
                    pq_cli_bytes((double)t->bytes_after, b, sizeof b), t->metrics.sqnr_db);
        }
    }
    fprintf(out, "tensors: %d quantized, %d kept float, %d dropped (legacy extras)\n",
            s->n_quantized, s->n_float, s->n_dropped);
    fprintf(out, "bytes:   %s -> %s (%.2fx smaller)\n", pq_cli_bytes((double)s->bytes_before, a, sizeof a),
            pq_cli_bytes((double)s->bytes_after, b, sizeof b),
            s->bytes_after ? (double)s->bytes_before / (double)s->bytes_after : 0.0);
    if (s->n_quantized)
        fprintf(out, "SQNR:    mean %.2f dB, min %.2f dB\n", s->mean_sqnr_db, s->min_sqnr_db);
    fprintf(out, "time:    %.2f s\n", s->seconds_total);
}

void pq_cli_print_ranks(FILE *out, const double *rss_mib, int n_ranks, double seconds_quantize)
{
    double mx = 0;
    fprintf(out, "ranks:   %d, quantize phase %.2f s, peak RSS", n_ranks, seconds_quantize);
    for (int r = 0; r < n_ranks; r++) {
        if (r < 16) fprintf(out, " r%d %.1f MiB", r, rss_mib[r]);
        if (rss_mib[r] > mx) mx = rss_mib[r];
    }
    if (n_ranks > 16) fprintf(out, " ... (max %.1f MiB)", mx);
    fputc('\n', out);
}
