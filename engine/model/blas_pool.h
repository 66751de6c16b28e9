/* SPDX-License-Identifier: Apache-2.0 */
/* blas_pool.h - keep OpenBLAS's idle worker threads off the CPUs.
 *
 * The pthread build of OpenBLAS starts one worker per core when the library
 * is loaded, and an idle worker spins (sched_yield) for 2^28 cycles, about
 * 70 ms, before it sleeps. Every proteus process would start with cores - 1
 * spinning threads: on a node with several ranks they compete with the ranks'
 * MPI_Init and first messages (measured here with 2 ranks on 2 cores: 40-50
 * ms of each run's start-up). */
#ifndef PQ_BLAS_POOL_H
#define PQ_BLAS_POOL_H

/* Stops OpenBLAS's worker threads if they are running; its next threaded
 * call starts them again (the library does the same around fork()). A no-op
 * with a BLAS that has no such pool (OpenMP or serial builds). */
void pq_blas_pool_park(void);

#endif
