/* SPDX-License-Identifier: Apache-2.0 */
/* pq_cpu.h - how many CPUs this process may run on. */
#ifndef PQ_CPU_H
#define PQ_CPU_H

#include <stdint.h>

/* The CPUs in this process's affinity mask (at least 1): what "all cores"
 * means for a default thread count. A rank that mpirun or srun bound to one
 * core must not start a thread per core of the node, all on that core. */
int pq_cpu_count(void);

/* The CPUs online on this node (at least 1). */
int pq_node_cpus(void);

/* Threads for a loop over n_items (>= 1): n_threads, 0 = every core the
 * process may use, 1 inside a parallel region (a batch of units runs one
 * per thread, worker/unit_batch.h), at most n_items. */
int pq_loop_threads(int n_threads, int64_t n_items);

#endif
