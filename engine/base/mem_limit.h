/* SPDX-License-Identifier: Apache-2.0 */
/* mem_limit.h - the memory this process may fill, page cache included: the
 * machine's, or less where a control group limits it (a Slurm job's
 * allocation, a container). */
#ifndef PQ_MEM_LIMIT_H
#define PQ_MEM_LIMIT_H

#include <stdint.h>

/* The machine's physical memory, lowered to the smallest memory limit of
 * this process's control group and of the groups above it (cgroup v2
 * memory.max, v1 memory.limit_in_bytes); 0 when not even the machine's is
 * known. */
uint64_t pq_mem_limit_bytes(void);

#endif
