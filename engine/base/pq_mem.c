/* SPDX-License-Identifier: Apache-2.0 */
/* pq_mem.c - see pq_mem.h. */
#include "base/pq_mem.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_BYTES ((size_t)2 << 20)

void *pq_alloc_big(size_t bytes)
{
    if (bytes < HUGE_BYTES) return malloc(bytes ? bytes : 1);
    size_t n = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    if (n < bytes) return NULL; /* overflow */
    void *p = aligned_alloc(HUGE_BYTES, n);
    /* advice only: without THP the block is ordinary memory */
    if (p) (void)madvise(p, n, MADV_HUGEPAGE);
    return p;
}
