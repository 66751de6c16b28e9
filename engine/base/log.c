/* SPDX-License-Identifier: Apache-2.0 */
/* log.c - levelled logging to stderr or a caller-provided sink. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

pq_log_level pq_log_threshold = PQ_LOG_WARN;

static pq_log_sink sink_fn;
static void *sink_user;
static int log_rank = -1;
static char log_role[16];

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void pq_log_set_level(pq_log_level lvl) { pq_log_threshold = lvl; }

void pq_log_set_sink(pq_log_sink sink, void *user)
{
    sink_fn = sink;
    sink_user = user;
}

void pq_log_set_rank(int rank, const char *role)
{
    log_rank = rank;
    snprintf(log_role, sizeof log_role, "%s", role ? role : "");
}

void pq_log_write(pq_log_level lvl, const char *fmt, ...)
{
    char line[2048];
    int n = 0;
    if (log_rank >= 0)
        n = snprintf(line, sizeof line, "[r%d %s] ", log_rank, log_role);
    n += snprintf(line + n, sizeof line - (size_t)n, "%s: ", level_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (sink_fn) { sink_fn(lvl, line, sink_user); return; }
    fprintf(stderr, "%s\n", line);
}
