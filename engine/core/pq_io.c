/* SPDX-License-Identifier: Apache-2.0 */
/* pq_io.c - whole-buffer positional writes. */
#include "pq_io.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

int pq_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const char *p = buf;
    while (n > 0) {
        /* at most 1 GiB per call: Linux caps one write near 2 GiB anyway */
        size_t c = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
        ssize_t w = pwrite(fd, p, c, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return ENOSPC;
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return 0;
}
