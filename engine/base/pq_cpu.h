/* SPDX-License-Identifier: Apache-2.0 */
/* pq_cpu.h - how many CPUs this process may run on. */
#ifndef PQ_CPU_H
#define PQ_CPU_H

/* The CPUs in this process's affinity mask (at least 1): what "all cores"
 * means for a default thread count. A rank that mpirun or srun bound to one
 * core must not start a thread per core of the node, all on that core. */
int pq_cpu_count(void);

/* The CPUs online on this node (at least 1). */
int pq_node_cpus(void);

#endif
