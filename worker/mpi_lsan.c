/* SPDX-License-Identifier: Apache-2.0 */
/* mpi_lsan.c - in the sanitizer build only: what Open MPI allocates in
 * MPI_Init and MPI_Finalize is not Proteus's to free, and LeakSanitizer is
 * told so (the MPI profiling interface: these wrap PMPI_*). Open MPI unloads
 * its components in MPI_Finalize, so the stacks of those blocks end in
 * "unknown module" frames that no suppression could name without ASan's slow
 * unwinder on every malloc (tests/sanitize/run.sh). */
#ifdef __SANITIZE_ADDRESS__
#include <mpi.h>
#include <sanitizer/lsan_interface.h>

int MPI_Init(int *argc, char ***argv)
{
    __lsan_disable();
    int rc = PMPI_Init(argc, argv);
    __lsan_enable();
    return rc;
}

int MPI_Init_thread(int *argc, char ***argv, int required, int *provided)
{
    __lsan_disable();
    int rc = PMPI_Init_thread(argc, argv, required, provided);
    __lsan_enable();
    return rc;
}

int MPI_Finalize(void)
{
    __lsan_disable();
    int rc = PMPI_Finalize();
    __lsan_enable();
    return rc;
}
#else
typedef int pq_mpi_lsan_unused; /* an empty translation unit is not ISO C */
#endif
