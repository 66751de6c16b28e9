/* SPDX-License-Identifier: Apache-2.0 */
/* smooth_mpi.c - SmoothQuant factors for every rank (smooth_mpi.h). */
#include "coordinator/smooth_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "coordinator/calib_mpi.h"

pq_status pq_smooth_mpi_prepare(MPI_Comm comm, pq_job *job, const char *model, const char *store,
                                const char *data, pq_calib_static_run *calib, pq_smooth **out)
{
    int rank;
    char def[4096];
    pq_status st = PQ_OK;
    pq_calib *own = NULL;
    const pq_calib *c = NULL;
    pq_smooth *sm = NULL;
    float *flat = NULL;
    const pq_config *cfg = pq_job_config(job);
    MPI_Comm_rank(comm, &rank);
    *out = NULL;

    /* 1. the statistics, on rank 0 */
    if (calib) {
        c = pq_calib_static_stats(calib);
    } else if (!strcmp(cfg->scheme, "static")) {
        c = NULL; /* a worker of a static run: rank 0 holds them */
    } else {
        pq_calib_data_opts o = {.ops = *pq_job_ops(job)};
        st = pq_calib_static_default(store, &data, def, sizeof def, &o);
        if (!st && data == def && rank == 0)
            printf("smoothquant: no calibration data given; using the bundled %s (first %d sequences)\n", def,
                   PQ_CALIB_DEFAULT_SEQS);
        if ((st = pq_calib_mpi_agree(comm, st))) return st;
        if (!store) st = pq_calib_mpi_collect(comm, model, data, &o, cfg->threads, 1, &own);
        else if (rank == 0) st = pq_calib_static_load_store(store, job, &own);
        if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
        c = own;
    }

    /* 2. the factors on rank 0, then the same bits everywhere */
    int L = 0;
    int64_t D = 0;
    if (rank == 0) {
        if (!c) st = pq_err(PQ_ERR_INTERNAL, "smoothquant: no calibration statistics on rank 0");
        else st = pq_smooth_compute(pq_job_model(job), c, cfg->smoothquant_alpha, &sm);
        if (!st) L = sm->num_layers, D = sm->n_sites ? sm->sites[0].dim : 0;
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    int64_t shape[2] = {L, D};
    if (MPI_Bcast(shape, 2, MPI_INT64_T, 0, comm) != MPI_SUCCESS) {
        st = pq_err(PQ_ERR_MPI, "smoothquant: MPI_Bcast of the factors' shape failed");
        goto cleanup;
    }
    L = (int)shape[0];
    D = shape[1];
    size_t n = (size_t)(2 * L) * (size_t)D;
    if (rank != 0) st = pq_smooth_create(L, D, cfg->smoothquant_alpha, &sm);
    if (!st && !(flat = malloc((n ? n : 1) * sizeof *flat))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    if (rank == 0)
        for (int i = 0; i < sm->n_sites; i++) memcpy(flat + (size_t)i * D, sm->sites[i].s, (size_t)D * sizeof *flat);
    /* floats travel as bytes: the factors arrive bit for bit */
    if (MPI_Bcast(flat, (int)(n * sizeof *flat), MPI_BYTE, 0, comm) != MPI_SUCCESS)
        st = pq_err(PQ_ERR_MPI, "smoothquant: MPI_Bcast of the factors failed");
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    if (rank != 0)
        for (int i = 0; i < sm->n_sites; i++) memcpy(sm->sites[i].s, flat + (size_t)i * D, (size_t)D * sizeof *flat);

    /* 3. arm the job (and the static act qparams) */
    pq_job_set_smooth(job, sm);
    if (calib) pq_calib_static_set_smooth(calib, sm);
    PQ_LOG_INFO("smoothquant: alpha %g on %d sites (q/k/v and fc1 inputs)", cfg->smoothquant_alpha, 2 * L);
    *out = sm;
    sm = NULL;
cleanup:
    pq_smooth_free(sm);
    pq_calib_free(own);
    free(flat);
    return st;
}
