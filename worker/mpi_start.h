/* SPDX-License-Identifier: Apache-2.0 */
/* mpi_start.h - MPI_Init for every collective command, with the fixes a
 * short job on one node needs. */
#ifndef PQ_MPI_START_H
#define PQ_MPI_START_H

#include <stdbool.h>

/* MPI_Init_thread(FUNNELED) with errors returned (never aborting inside the
 * library). Returns 0, or prints one line and returns the MPI exit code
 * (also when the launcher started several tasks that MPI does not connect:
 * srun without --mpi=pmix; the MPI library is then finalized). */
int pq_mpi_start(int *provided);

/* Called by pq_mpi_start before MPI_Init: when no launcher started this
 * process (none of OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK, PMI_SIZE is
 * set), set OMPI_MCA_ess_singleton_isolated=1, OMPI_MCA_pml=ob1 and
 * HWLOC_PLUGINS_BLACKLIST (hwloc's GL, OpenCL, PCI and XML plugins), each
 * only when unset. Returns whether it was a singleton. */
bool pq_mpi_singleton_settings(void);

/* This process's rank as the launcher set it in the environment (mpirun,
 * srun, a PMI launcher), known before MPI_Init; 0 without a launcher. */
int pq_mpi_launcher_rank(void);

#endif
