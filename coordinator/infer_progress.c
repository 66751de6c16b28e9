/* SPDX-License-Identifier: Apache-2.0 */
/* infer_progress.c - the progress line of embed and score. */
#include "coordinator/infer_progress.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_clock.h"

void pq_infer_progress_init(pq_infer_progress *p, FILE *out, bool quiet, int64_t seq_total, int64_t res_total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->is_tty = isatty(fileno(out));
    p->quiet = quiet;
    p->seq_total = seq_total;
    p->res_total = res_total;
    p->t0 = p->last_print = pq_now_s();
    p->last_pct = -1;
}

static void print(pq_infer_progress *p, bool final)
{
    double now = pq_now_s(), el = now - p->t0;
    double frac = p->res_total > 0 ? (double)p->res_done / (double)p->res_total : 1.0;
    double rate = el > 0 ? (double)(p->res_done - p->res_resumed) / el : 0;
    double eta = rate > 0 ? (double)(p->res_total - p->res_done) / rate : 0;
    int pct = (int)floor(frac * 100.0 + 1e-9);
    if (p->is_tty) {
        char bar[41];
        for (int i = 0; i < 40; i++) bar[i] = i < (int)(frac * 40) ? '#' : '.';
        bar[40] = '\0';
        fprintf(p->out, "\r[%s] %3d%% %lld/%lld sequences %.0f residues/s ETA %.0fs ", bar, pct,
                (long long)p->seq_done, (long long)p->seq_total, rate, eta);
        if (final) fputc('\n', p->out);
    } else if (final || pct / 5 > p->last_pct / 5 || now - p->last_print >= 60) {
        fprintf(p->out, "progress: %3d%% %lld/%lld sequences, %lld/%lld residues, %.0f residues/s, ETA %.0fs\n", pct,
                (long long)p->seq_done, (long long)p->seq_total, (long long)p->res_done, (long long)p->res_total,
                rate, eta);
        p->last_pct = pct;
        p->last_print = now;
    }
    fflush(p->out);
}

void pq_infer_progress_add(pq_infer_progress *p, int64_t n_seq, int64_t n_res, bool resumed)
{
    p->seq_done += n_seq;
    p->res_done += n_res;
    if (resumed) p->res_resumed += n_res;
    if (!p->quiet) print(p, false);
}

void pq_infer_progress_done(pq_infer_progress *p)
{
    if (!p->quiet && p->is_tty) print(p, true);
}
