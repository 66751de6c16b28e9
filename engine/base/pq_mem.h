/* SPDX-License-Identifier: Apache-2.0 */
/* pq_mem.h - allocation of large activation buffers. */
#ifndef PQ_MEM_H
#define PQ_MEM_H

#include <stddef.h>

/* malloc for buffers that kernels stream through (activations, the forward's
 * workspace): from 2 MiB up the block is 2 MiB-aligned and advised for
 * transparent huge pages, so that a pass over tens of MB does not take a TLB
 * miss every 4 KiB (with THP in "madvise" mode, Debian's default, plain
 * malloc never gets huge pages; numpy asks for them the same way). Smaller
 * requests are plain malloc. Release with free(). NULL when out of memory. */
void *pq_alloc_big(size_t bytes);

#endif
