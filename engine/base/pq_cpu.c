/* SPDX-License-Identifier: Apache-2.0 */
/* pq_cpu.c - see pq_cpu.h. */
#include "base/pq_cpu.h"

#include <sched.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int pq_node_cpus(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

int pq_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return pq_node_cpus(); /* a mask wider than cpu_set_t: not bound to a few */
}

int pq_loop_threads(int n_threads, int64_t n_items)
{
    int nt = n_threads == 0 ? pq_cpu_count() : n_threads;
#ifdef _OPENMP
    if (omp_in_parallel()) nt = 1;
#endif
    if (nt < 1) nt = 1;
    if (nt > n_items) nt = n_items < 1 ? 1 : (int)n_items;
    return nt;
}
