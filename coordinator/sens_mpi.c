/* SPDX-License-Identifier: Apache-2.0 */
/* sens_mpi.c - sensitivity units over ranks (sens_mpi.h). */
#include "coordinator/sens_mpi.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/pq_clock.h"
#include "worker/sync.h"

pq_status pq_sens_mpi_run(MPI_Comm comm, pq_sens *s, pq_sens_table *t, bool progress)
{
    int rank, N;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &N);
    int n = pq_sens_n_units(t);
    double *v = calloc((size_t)n * 3 + 1, sizeof *v);
    pq_status st = v ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
    double t0 = pq_now_s();
    for (int u = rank; st == PQ_OK && u < n; u += N) {
        pq_sens_cell c;
        if ((st = pq_sens_measure(s, t, u, &c)) != PQ_OK) break;
        v[3 * u] = c.d_loss;
        v[3 * u + 1] = c.kl;
        v[3 * u + 2] = c.estimate;
        if (progress && rank == 0) {
            int li, cj;
            char cl[32];
            pq_sens_unit_cell(t, u, &li, &cj);
            pq_cand_label(&t->cands[cj], cl, sizeof cl);
            fprintf(stderr, "sensitivity %d/%d %s %s: d_loss %+.5f kl %.6f  [%.1f s]\n", u + 1, n,
                    t->lin[li].tensor, cl, c.d_loss, c.kl, pq_now_s() - t0);
        }
    }
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) {
        free(v);
        return st;
    }
    if (MPI_Allreduce(MPI_IN_PLACE, v, n * 3, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS) {
        free(v);
        return pq_err(PQ_ERR_MPI, "combining the sensitivity cells failed");
    }
    for (int u = 0; u < n; u++) {
        int li, cj;
        pq_sens_unit_cell(t, u, &li, &cj);
        pq_sens_cell *c = pq_sens_at(t, li, cj);
        c->d_loss = v[3 * u];
        c->kl = v[3 * u + 1];
        c->estimate = v[3 * u + 2];
    }
    free(v);
    return PQ_OK;
}
