/* SPDX-License-Identifier: Apache-2.0 */
/* infer_buf.h - a growable byte buffer holding one chunk's results as they
 * travel between ranks and into the journal (pipeline/journal.h): appended in
 * little-endian host order (the ranks of one job share a byte order), read
 * back with a cursor that fails instead of running past the end. */
#ifndef PQ_EVAL_INFER_BUF_H
#define PQ_EVAL_INFER_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

typedef struct pq_buf {
    unsigned char *data; /* owned */
    size_t len, cap;
} pq_buf;

/* Append n bytes (PQ_ERR_RESOURCE when out of memory). */
pq_status pq_buf_put(pq_buf *b, const void *p, size_t n);
pq_status pq_buf_put_i64(pq_buf *b, int64_t v);
/* A string as its length (int64) and bytes. */
pq_status pq_buf_put_str(pq_buf *b, const char *s);
void pq_buf_free(pq_buf *b);

typedef struct pq_cursor {
    const unsigned char *p;
    size_t left;
    bool bad; /* set once a read ran past the end */
} pq_cursor;

/* Borrow the next n bytes (NULL, and bad set, when fewer remain). */
const void *pq_cursor_take(pq_cursor *c, size_t n);
int64_t pq_cursor_i64(pq_cursor *c);
/* A string as written by pq_buf_put_str: a malloc'd copy, NULL when bad or
 * out of memory. */
char *pq_cursor_str(pq_cursor *c);

#endif
