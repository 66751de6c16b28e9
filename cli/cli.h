/* SPDX-License-Identifier: Apache-2.0 */
/* cli.h - helpers shared by the subcommands: option errors, byte formatting,
 * progress display. */
#ifndef PQ_CLI_H
#define PQ_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "pipeline/job.h"
#include "pipeline/outpath.h"

/* Print "proteus CMD: config error: <msg>" and return exit status 2. */
int pq_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "1.23 MB" style (decimal units) into buf; returns buf. */
char *pq_cli_bytes(double n, char *buf, size_t len);

/* Progress display: a live bar on a terminal, one plain line per 5 % (and at
 * the end) otherwise, so Slurm logs stay readable. */
typedef struct pq_cli_progress {
    FILE *out;
    int is_tty;
    int last_pct;
    int quiet;
} pq_cli_progress;

void pq_cli_progress_init(pq_cli_progress *p, FILE *out, int quiet);
void pq_cli_progress_cb(void *user, const pq_progress *ev);

/* The summary table of a finished job. per_tensor: one line per quantized
 * tensor before the totals. */
void pq_cli_print_summary(FILE *out, const pq_job_stats *s, int per_tensor);

/* One line per run: peak RSS of each rank (MiB, index = rank) and the
 * quantize phase's wall time. */
void pq_cli_print_ranks(FILE *out, const double *rss_mib, int n_ranks, double seconds_quantize);

#endif
