/* SPDX-License-Identifier: Apache-2.0 */
/* mpi_start.c - MPI_Init for the collective commands.
 *
 * Open MPI 4.1's PMIx client talks to its local server over a loopback TCP
 * socket without TCP_NODELAY. The finalize fence sends four small messages
 * back to back, and the later ones wait on Nagle's algorithm for the
 * server's delayed ACK: about 40 ms in every MPI_Finalize, on every rank,
 * which is a tenth of a short job. Setting TCP_NODELAY on this process's
 * connected TCP sockets right after MPI_Init removes that wait; Open MPI's
 * own TCP transports set it anyway, so nothing else changes. */
#include "worker/mpi_start.h"

#include <dirent.h>
#include <mpi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "base/pq_err.h"

static void tcp_nodelay_all(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return; /* not Linux: nothing to tune */
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == self) continue;
        int dom = 0, type = 0, one = 1;
        socklen_t l = sizeof dom;
        if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) || (dom != AF_INET && dom != AF_INET6))
            continue;
        l = sizeof type;
        if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &l) || type != SOCK_STREAM) continue;
        setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    closedir(d);
}

/* The first of vars that is set (non-empty), and which one in *which;
 * NULL when none is. */
static const char *first_env(const char *const *vars, size_t n, const char **which)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            if (which) *which = vars[i];
            return v;
        }
    }
    return NULL;
}

/* Tasks the launcher says it started (srun's step, mpirun, a PMI launcher),
 * and under which variable; 0 when none says. */
static long launcher_tasks(const char **var)
{
    static const char *const vars[] = {"SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    const char *v = first_env(vars, sizeof vars / sizeof vars[0], var);
    return v ? strtol(v, NULL, 10) : 0;
}

/* The first of vars that is set, as a number; 0 when none is. */
static int rank_from(const char *const *vars, size_t n)
{
    const char *v = first_env(vars, n, NULL);
    return v ? atoi(v) : 0;
}

int pq_mpi_launcher_rank(void)
{
    /* Open MPI's own first: ranks that mpirun starts inside a Slurm batch
     * job inherit the batch step's SLURM_PROCID=0 */
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
    return rank_from(vars, sizeof vars / sizeof vars[0]);
}

/* After MPI_Init: is this task 0 of what the launcher started? A singleton's
 * MPI_Init sets OMPI_COMM_WORLD_RANK=0 itself, so the launcher's own
 * variables are read here. */
static int launcher_task_zero(void)
{
    static const char *const vars[] = {"SLURM_PROCID", "PMI_RANK"};
    return rank_from(vars, sizeof vars / sizeof vars[0]) == 0;
}

/* A process that no launcher started is an MPI singleton: one process that
 * never talks to another. Open MPI need not start its helper daemon for it
 * (orted), probe for InfiniBand (UCX) or load hwloc's GL, OpenCL, PCI and
 * XML plugins: ~0.3 s of a small job. The user's own settings win. */
bool pq_mpi_singleton_settings(void)
{
    static const char *const launched[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    if (first_env(launched, sizeof launched / sizeof launched[0], NULL)) return false;
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
    setenv("OMPI_MCA_pml", "ob1", 0);
    setenv("HWLOC_PLUGINS_BLACKLIST", "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml", 0);
    return true;
}

int pq_mpi_start(int *provided)
{
    pq_mpi_singleton_settings();
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, provided) != MPI_SUCCESS) {
        fprintf(stderr, "proteus: MPI error: MPI_Init_thread failed\n");
        return pq_status_exit_code(PQ_ERR_MPI);
    }
    /* MPI failures come back as codes (translated by pq_mpi_check). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    tcp_nodelay_all();
    /* srun without an MPI plugin Open MPI can use starts N singletons: each
     * would run the whole job alone and all would write the same output. */
    int size = 1;
    const char *var = NULL;
    long tasks = launcher_tasks(&var);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 1 && tasks > 1) {
        if (launcher_task_zero())
            fprintf(stderr, "proteus: MPI error: the launcher started %ld tasks (%s) but MPI sees one rank in "
                    "each: they are not connected, and every one would run the whole job and write the same "
                    "output. Under Slurm launch with 'srun --mpi=pmix' (scripts/slurm/quantize.sbatch)\n",
                    tasks, var);
        MPI_Finalize();
        return pq_status_exit_code(PQ_ERR_MPI);
    }
    return 0;
}
