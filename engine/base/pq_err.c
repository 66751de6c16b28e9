/* SPDX-License-Identifier: Apache-2.0 */
/* pq_err.c - status messages, exit codes and the thread-local error detail. */
#include "base/pq_err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[PQ__ERR_COUNT] = {
    [PQ_OK]               = "ok",
    [PQ_ERR_CONFIG]       = "config error",
    [PQ_ERR_IO]           = "I/O error",
    [PQ_ERR_FORMAT]       = "format error",
    [PQ_ERR_QUANTIZATION] = "quantization error",
    [PQ_ERR_CALIBRATION]  = "calibration error",
    [PQ_ERR_HARDWARE]     = "hardware compatibility error",
    [PQ_ERR_RESOURCE]     = "resource error",
    [PQ_ERR_MPI]          = "MPI error",
    [PQ_ERR_PROTO]        = "protocol error",
    [PQ_ERR_ZMQ]          = "ZeroMQ error",
    [PQ_ERR_CUDA]         = "CUDA error",
    [PQ_ERR_ACCURACY]     = "accuracy error",
    [PQ_ERR_INTERRUPTED]  = "interrupted",
    [PQ_ERR_INTERNAL]     = "internal error",
};
_Static_assert(sizeof(messages) / sizeof(messages[0]) == PQ__ERR_COUNT,
               "one message per status");

static const int exit_codes[PQ__ERR_COUNT] = {
    [PQ_OK] = 0, [PQ_ERR_CONFIG] = 2, [PQ_ERR_IO] = 3, [PQ_ERR_FORMAT] = 4,
    [PQ_ERR_QUANTIZATION] = 5, [PQ_ERR_CALIBRATION] = 6, [PQ_ERR_HARDWARE] = 7,
    [PQ_ERR_RESOURCE] = 8, [PQ_ERR_MPI] = 9, [PQ_ERR_PROTO] = 10,
    [PQ_ERR_ZMQ] = 11, [PQ_ERR_CUDA] = 12, [PQ_ERR_ACCURACY] = 13, [PQ_ERR_INTERRUPTED] = 14,
    [PQ_ERR_INTERNAL] = 70,
};

static _Thread_local char detail[1024];
static _Thread_local pq_status detail_status = PQ_OK;

const char *pq_strerror(pq_status st)
{
    if ((int)st < 0 || st >= PQ__ERR_COUNT) return "unknown error";
    return messages[st];
}

int pq_status_exit_code(pq_status st)
{
    if ((int)st < 0 || st >= PQ__ERR_COUNT) return 70;
    return exit_codes[st];
}

static void vset(pq_status st, const char *fmt, va_list ap)
{
    vsnprintf(detail, sizeof detail, fmt, ap);
    detail_status = st;
}

pq_status pq_err(pq_status st, const char *fmt, ...)
{
    if (detail_status != PQ_OK) return st;
    va_list ap;
    va_start(ap, fmt);
    vset(st, fmt, ap);
    va_end(ap);
    return st;
}

pq_status pq_err_replace(pq_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(st, fmt, ap);
    va_end(ap);
    return st;
}

const char *pq_err_detail(void) { return detail; }
pq_status pq_err_last(void) { return detail_status; }
void pq_err_clear(void) { detail[0] = '\0'; detail_status = PQ_OK; }
