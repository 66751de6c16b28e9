/* SPDX-License-Identifier: Apache-2.0 */
/* train_mpi.c - a training step with its micro-batches spread over ranks
 * and their gradients summed in micro-batch order (train_mpi.h). */
#include "worker/train_mpi.h"

#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"
#include "worker/sync.h"

/* MPI_Bcast of n floats in pieces an int counts. */
static pq_status bcast_floats(MPI_Comm comm, float *buf, int64_t n, int root)
{
    const int64_t piece = (int64_t)1 << 28;
    for (int64_t i = 0; i < n; i += piece) {
        int c = (int)(n - i < piece ? n - i : piece);
        pq_status st = pq_mpi_check(MPI_Bcast(buf + i, c, MPI_FLOAT, root, comm), "broadcasting a gradient");
        if (st != PQ_OK) return st;
    }
    return PQ_OK;
}

pq_status pq_train_mpi_step(MPI_Comm comm, pq_trainer *tr, double *loss)
{
    int rank = 0, n_ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    int64_t M = pq_trainer_n_micro(tr), n = tr->p->n_floats;
    int64_t n_mine = M / n_ranks + (rank < M % n_ranks);
    float *mine = NULL, *recv = NULL;
    double *mine_loss = NULL;
    pq_status st = pq_trainer_begin_step(tr);
    if (st == PQ_OK) {
        mine = malloc((size_t)(n_mine ? n_mine : 1) * (size_t)n * sizeof(float));
        recv = malloc((size_t)n * sizeof(float));
        mine_loss = calloc((size_t)(n_mine ? n_mine : 1), sizeof(double));
        if (!mine || !recv || !mine_loss) st = pq_err(PQ_ERR_RESOURCE, "out of memory for the step's gradients");
    }
    for (int64_t j = 0; st == PQ_OK && j < n_mine; j++)
        st = pq_trainer_micro_grad(tr, rank + j * n_ranks, mine + j * n, &mine_loss[j]);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto done;
    memset(tr->grad, 0, (size_t)n * sizeof(float));
    double total = 0.0;
    for (int64_t mb = 0; mb < M; mb++) {
        int owner = (int)(mb % n_ranks);
        float *g = owner == rank ? mine + (mb / n_ranks) * n : recv;
        double l = owner == rank ? mine_loss[mb / n_ranks] : 0.0;
        if (n_ranks > 1) {
            if ((st = bcast_floats(comm, g, n, owner)) != PQ_OK) goto done;
            st = pq_mpi_check(MPI_Bcast(&l, 1, MPI_DOUBLE, owner, comm), "broadcasting a loss");
            if (st != PQ_OK) goto done;
        }
        for (int64_t i = 0; i < n; i++) tr->grad[i] += g[i];
        total += l;
    }
    *loss = total;
    st = pq_trainer_finish_step(tr, total);
done:
    free(mine);
    free(recv);
    free(mine_loss);
    return st;
}
