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

/* The folder OUT.partial goes into must exist and take new files. */
static pq_status check_out_dir(const char *opt, const char *out)
{
    size_t n = strlen(out);
    char *dir = malloc(n + 2);
    if (!dir) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    memcpy(dir, out, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    pq_status st = PQ_OK;
    if (access(dir, W_OK | X_OK) != 0)
        st = pq_err(PQ_ERR_IO, "%s %s: cannot create files in %s: %s", opt, out, dir, strerror(errno));
    free(dir);
    return st;
}

pq_status pq_cli_check_out(const char *opt, const char *out, const char *const *inputs, int n_inputs)
{
    struct stat so, si;
    if (!out) return PQ_OK;
    pq_status st = check_out_dir(opt, out);
    if (st || stat(out, &so) != 0) return st;
    /* found now, not by the rename after all the work */
    if (S_ISDIR(so.st_mode))
        return pq_err(PQ_ERR_CONFIG, "%s %s is a directory; name the output file", opt, out);
    if (!S_ISREG(so.st_mode)) return PQ_OK;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && stat(inputs[i], &si) == 0 && S_ISREG(si.st_mode) && si.st_dev == so.st_dev &&
            si.st_ino == so.st_ino)
            return pq_err(PQ_ERR_CONFIG, "%s %s is the input file %s: writing it would destroy the input; "
                          "choose another path", opt, out, inputs[i]);
    return PQ_OK;
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
