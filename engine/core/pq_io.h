/* SPDX-License-Identifier: Apache-2.0 */
/* pq_io.h - whole-buffer positional writes (pwrite may write less than asked). */
#ifndef PQ_IO_H
#define PQ_IO_H

#include <stddef.h>
#include <stdint.h>

/* Write all n bytes of buf at file offset off, retrying short writes and
 * EINTR. Returns 0, or the errno of the failure (ENOSPC for a write that
 * makes no progress). */
int pq_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);

#endif
