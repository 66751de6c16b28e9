/* SPDX-License-Identifier: Apache-2.0 */
/* write_behind.h - the codes of a large output (1 GiB, or more than the page
 * cache can keep), written behind: each range handed to the disk as soon as it is
 * written, and once a window of ranges is on disk, its pages released, so
 * the writer reuses the same few hundred MB of page cache instead of taking
 * fresh memory for every byte of the file. */
#ifndef PQ_WRITE_BEHIND_H
#define PQ_WRITE_BEHIND_H

#include <stdbool.h>
#include <stdint.h>

#define PQ_BEHIND_RANGES 64

typedef struct pq_behind {
    int fd;          /* the file written (borrowed); -1: off */
    uint64_t off[PQ_BEHIND_RANGES], len[PQ_BEHIND_RANGES];
    int head, n;     /* the ranges written and not yet released, oldest first */
    uint64_t bytes;  /* their bytes */
    uint64_t window; /* bytes kept before the oldest are released */
} pq_behind;

/* Write-behind for file descriptor fd when total_bytes (what will be
 * written through it) is at least 1 GiB or a quarter of the memory the
 * process may fill (pq_mem_limit_bytes: the machine's, or its cgroup's), with
 * a window of 256 MiB (PQ_TEST_WRITE_BEHIND=N: always, a window of N bytes);
 * otherwise b stays off and the page cache keeps the file, as for any write. */
void pq_behind_init(pq_behind *b, int fd, uint64_t total_bytes);

/* Bytes [off, off + len) were just written through b's descriptor: their
 * writeback starts now; the oldest ranges past the window are waited for
 * and dropped from the page cache. Best effort: nothing fails (the commit's
 * fsync still makes the file durable). */
void pq_behind_wrote(pq_behind *b, uint64_t off, uint64_t len);

#endif
