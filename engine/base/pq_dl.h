/* SPDX-License-Identifier: Apache-2.0 */
/* pq_dl.h - a shared library loaded when a command first needs it.
 *
 * For the libraries only some commands use (OpenBLAS for the model's
 * forward, ZeroMQ for the monitor): linked into the binary, they and their
 * own dependencies would be loaded and initialised by every process at start,
 * every rank of every run included (~6 ms a process here, OpenBLAS's thread
 * pool among it). */
#ifndef PQ_DL_H
#define PQ_DL_H

#include <stdbool.h>

#include "base/pq_err.h"

typedef struct pq_dl_sym {
    const char *name;
    void **fn;      /* receives the address (NULL when optional and absent) */
    bool optional;
} pq_dl_sym;

typedef struct pq_dl_lib {
    const char *soname;   /* e.g. "libopenblas.so.0" */
    const char *package;  /* named in the error: what to install */
    pq_status kind;       /* the error class when it cannot be loaded */
    const pq_dl_sym *syms;
    int n_syms;
    void (*before)(void); /* once, under the load's lock, before dlopen (may be NULL) */
    void (*loaded)(void); /* once, after the first successful load (may be NULL) */
    /* pq_dl_load's own record */
    bool tried;
    pq_status st;
    char why[512];
} pq_dl_lib;

/* Loads lib and resolves its symbols on the first call; later calls return
 * the first call's outcome, with the same error detail. Thread-safe. */
pq_status pq_dl_load(pq_dl_lib *lib);

#endif
