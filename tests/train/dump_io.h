/* SPDX-License-Identifier: Apache-2.0 */
/* dump_io.h - the raw-file output of the tests/train drivers. */
#ifndef PQ_TRAIN_DUMP_IO_H
#define PQ_TRAIN_DUMP_IO_H

#include <stdio.h>

#include "base/pq_err.h"

/* Print "DRIVER: class: detail" for st and return the status's exit code. */
static inline int dump_fail(const char *driver, pq_status st)
{
    fprintf(stderr, "%s: %s: %s\n", driver, pq_strerror(st), pq_err_detail());
    return pq_status_exit_code(st);
}

/* Write n_bytes of p to DIR/NAME; 0 on success, 1 (with a message) if not. */
static inline int dump_file(const char *dir, const char *name, const void *p, size_t n_bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(p, 1, n_bytes, f) != n_bytes;
    if (f && fclose(f) != 0) bad = 1;
    if (bad) fprintf(stderr, "cannot write %s\n", path);
    return bad;
}

#endif
