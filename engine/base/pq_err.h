/* SPDX-License-Identifier: Apache-2.0 */
/* pq_err.h - the one status enum of Proteus, its messages and exit codes.
 *
 * Every function that can fail returns a pq_status and, on failure, records one
 * human-readable detail line (thread-local) with pq_err(). The CLI prints
 * "proteus: <class>: <detail>" and exits with pq_status_exit_code(). */
#ifndef PQ_ERR_H
#define PQ_ERR_H

typedef enum pq_status {
    PQ_OK = 0,
    PQ_ERR_CONFIG,        /* bad option, config key or value */
    PQ_ERR_IO,            /* open/read/write/rename failed */
    PQ_ERR_FORMAT,        /* corrupt or inconsistent input file or message */
    PQ_ERR_QUANTIZATION,  /* weights cannot be quantized under the policy (NaN/Inf...) */
    PQ_ERR_CALIBRATION,   /* calibration data or statistics unusable */
    PQ_ERR_HARDWARE,      /* asked-for hardware target not available */
    PQ_ERR_RESOURCE,      /* out of memory or another resource */
    PQ_ERR_MPI,           /* an MPI call failed or a rank died */
    PQ_ERR_PROTO,         /* malformed or unexpected protobuf message */
    PQ_ERR_ZMQ,           /* monitor socket failure */
    PQ_ERR_CUDA,          /* CUDA runtime failure */
    PQ_ERR_ACCURACY,      /* accuracy loss above the allowed budget */
    PQ_ERR_INTERRUPTED,   /* stopped by a signal (SIGUSR1, SIGTERM); --resume goes on */
    PQ_ERR_INTERNAL,      /* a bug: an invariant did not hold */
    PQ__ERR_COUNT
} pq_status;

/* Short class name of a status ("config error", "I/O error", ...). Never NULL. */
const char *pq_strerror(pq_status st);

/* Distinct process exit status per class: 0 ok, 2 config, 3 I/O, 4 format,
 * 5 quantization, 6 calibration, 7 hardware, 8 resource, 9 MPI, 10 proto,
 * 11 ZeroMQ, 12 CUDA, 13 accuracy, 14 interrupted, 70 internal. */
int pq_status_exit_code(pq_status st);

/* Record a printf-style detail for `st` in this thread and return `st`, so
 * that `return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));` reads well.
 * The first error recorded since pq_err_clear() wins: a cleanup path that
 * fails again does not overwrite the root cause. */
pq_status pq_err(pq_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Overwrite whatever detail is recorded (used when wrapping a lower error with
 * more context). */
pq_status pq_err_replace(pq_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The detail recorded in this thread ("" when none). Borrowed; valid until the
 * next pq_err*() call in this thread. */
const char *pq_err_detail(void);

/* The status recorded with the detail (PQ_OK when none). */
pq_status pq_err_last(void);

/* Forget the recorded detail. */
void pq_err_clear(void);

#endif
