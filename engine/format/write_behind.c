/* SPDX-License-Identifier: Apache-2.0 */
/* write_behind.c - write-behind of large outputs (write_behind.h). */
#include "format/write_behind.h"

#include <fcntl.h>

#include "base/mem_limit.h"
#include "base/pq_fault.h"

/* Written bytes not yet released: the disk's queue is kept full without
 * holding the file in memory. */
#define WINDOW_BYTES ((uint64_t)256 << 20)
/* From this size on, recycling a window of pages beats taking fresh ones for
 * the whole file: the commit's fsync writes every byte to disk anyway, and
 * the run never reads the codes back (3B int8, 2.87 GB of codes, on a 24 GB
 * VM: the write phase 4.1-4.9 s against 1.9-2.0 s written behind) */
#define MIN_BYTES ((uint64_t)1 << 30)

void pq_behind_init(pq_behind *b, int fd, uint64_t total_bytes)
{
    *b = (pq_behind){.fd = -1, .window = WINDOW_BYTES};
    const uint64_t mem = pq_mem_limit_bytes();
    const bool big = total_bytes >= MIN_BYTES || (mem && (double)total_bytes >= 0.25 * (double)mem);
    const long forced = pq_fault_value(PQ_FAULT_WRITE_BEHIND, 0);
    if (forced > 0) b->window = (uint64_t)forced;
    if (fd >= 0 && (big || forced > 0)) b->fd = fd;
}

static void release_oldest(pq_behind *b)
{
    const int h = b->head;
    sync_file_range(b->fd, (off_t)b->off[h], (off_t)b->len[h],
                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    posix_fadvise(b->fd, (off_t)b->off[h], (off_t)b->len[h], POSIX_FADV_DONTNEED);
    b->bytes -= b->len[h];
    b->head = (h + 1) % PQ_BEHIND_RANGES;
    b->n--;
}

void pq_behind_wrote(pq_behind *b, uint64_t off, uint64_t len)
{
    if (b->fd < 0 || !len) return;
    sync_file_range(b->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
    if (b->n == PQ_BEHIND_RANGES) release_oldest(b);
    const int t = (b->head + b->n) % PQ_BEHIND_RANGES;
    b->off[t] = off;
    b->len[t] = len;
    b->n++;
    b->bytes += len;
    while (b->n > 1 && b->bytes > b->window) release_oldest(b);
}
