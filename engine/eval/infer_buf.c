/* SPDX-License-Identifier: Apache-2.0 */
/* infer_buf.c - the chunk results' byte buffer. */
#include "eval/infer_buf.h"

#include <stdlib.h>
#include <string.h>

pq_status pq_buf_put(pq_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) return pq_err(PQ_ERR_RESOURCE, "out of memory for %zu bytes of results", cap);
        b->data = d;
        b->cap = cap;
    }
    if (n && p) memcpy(b->data + b->len, p, n);
    b->len += n;
    return PQ_OK;
}

pq_status pq_buf_put_i64(pq_buf *b, int64_t v)
{
    return pq_buf_put(b, &v, sizeof v);
}

pq_status pq_buf_put_str(pq_buf *b, const char *s)
{
    size_t n = strlen(s);
    pq_status st = pq_buf_put_i64(b, (int64_t)n);
    return st == PQ_OK ? pq_buf_put(b, s, n) : st;
}

void pq_buf_free(pq_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

const void *pq_cursor_take(pq_cursor *c, size_t n)
{
    if (c->bad || n > c->left) {
        c->bad = true;
        return NULL;
    }
    const void *p = c->p;
    c->p += n;
    c->left -= n;
    return p;
}

int64_t pq_cursor_i64(pq_cursor *c)
{
    int64_t v = 0;
    const void *p = pq_cursor_take(c, sizeof v);
    if (p) memcpy(&v, p, sizeof v);
    return v;
}

char *pq_cursor_str(pq_cursor *c)
{
    int64_t n = pq_cursor_i64(c);
    const char *p = n >= 0 ? pq_cursor_take(c, (size_t)n) : NULL;
    if (!p) {
        c->bad = true;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s) {
        memcpy(s, p, (size_t)n);
        s[n] = '\0';
    }
    return s;
}
