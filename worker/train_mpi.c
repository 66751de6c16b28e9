/* SPDX-License-Identifier: Apache-2.0 */
/* train_mpi.c - a training step with its micro-batches spread over ranks,
 * the gradient reduced onto the owners of its chunks in micro-batch order
 * and the update sharded (train_mpi.h). */
#include "worker/train_mpi.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"
#include "train/train_update.h"
#include "worker/sync.h"

/* Counts and displacements of every rank's chunks, floats and steps. */
typedef struct shards {
    int n;
    int *cc, *cd, *fc, *fd, *sc, *sd; /* chunk, float and step counts and displacements */
} shards;

static void shards_free(shards *s)
{
    free(s->cc);
    free(s->cd);
    free(s->fc);
    free(s->fd);
    free(s->sc);
    free(s->sd);
}

static pq_status shards_of(const pq_trainer *tr, int n, shards *s)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    int **a[] = {&s->cc, &s->cd, &s->fc, &s->fd, &s->sc, &s->sd};
    for (int i = 0; i < 6; i++)
        if (!(*a[i] = malloc((size_t)n * sizeof(int)))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int r = 0; r < n; r++) {
        int64_t c0, c1, f0, f1, s0, s1;
        pq_trainer_shard(tr, r, n, &c0, &c1);
        pq_trainer_shard_span(tr, c0, c1, &f0, &f1, &s0, &s1);
        if (f1 > INT_MAX || s1 > INT_MAX || c1 > INT_MAX)
            return pq_err(PQ_ERR_CONFIG, "the model's %lld parameters exceed what one MPI message counts "
                          "(%d floats): training needs a smaller model", (long long)tr->p->n_floats, INT_MAX);
        s->cd[r] = (int)c0;
        s->cc[r] = (int)(c1 - c0);
        s->fd[r] = (int)f0;
        s->fc[r] = (int)(f1 - f0);
        s->sd[r] = (int)s0;
        s->sc[r] = (int)(s1 - s0);
    }
    return PQ_OK;
}

pq_status pq_train_mpi_wait_all(MPI_Comm comm)
{
    MPI_Request req;
    pq_status st = pq_mpi_check(MPI_Ibarrier(comm, &req), "waiting for the ranks");
    /* a micro-batch takes seconds: backing off to 2 ms */
    return st == PQ_OK ? pq_sync_wait_quiet(&req, 2000000, "waiting for the ranks") : st;
}

/* The micro-batches of this rank: gradients into mine[j * grad_floats],
 * losses into loss[j], j-th of mb = rank + j * n_ranks. */
static pq_status my_micro(pq_trainer *tr, int rank, int n_ranks, int64_t n_mine, float *mine, double *loss)
{
    pq_status st = PQ_OK;
    for (int64_t j = 0; st == PQ_OK && j < n_mine; j++)
        st = pq_trainer_micro_grad(tr, rank + j * n_ranks, mine + j * pq_trainer_grad_floats(tr), &loss[j]);
    return st;
}

/* The step's gradient on this rank's floats [f0, f0 + nf): the micro-batch
 * gradients' shards summed from zero in micro-batch order. */
static pq_status reduce_shard(MPI_Comm comm, pq_trainer *tr, const shards *sh, int rank, float *mine, float *recv)
{
    int64_t n = pq_trainer_grad_floats(tr), M = pq_trainer_n_micro(tr), f0 = sh->fd[rank], nf = sh->fc[rank];
    float *g = tr->grad + f0;
    memset(g, 0, (size_t)nf * sizeof(float));
    for (int64_t mb = 0; mb < M; mb++) {
        int owner = (int)(mb % sh->n);
        const float *src = recv;
        int rc;
        if (owner == rank) {
            float *buf = mine + (mb / sh->n) * n;
            rc = MPI_Scatterv(buf, sh->fc, sh->fd, MPI_FLOAT, MPI_IN_PLACE, 0, MPI_FLOAT, owner, comm);
            src = buf + f0;
        } else {
            rc = MPI_Scatterv(NULL, sh->fc, sh->fd, MPI_FLOAT, recv, nf, MPI_FLOAT, owner, comm);
        }
        pq_status st = pq_mpi_check(rc, "reducing the gradient");
        if (st != PQ_OK) return st;
        for (int64_t i = 0; i < nf; i++) g[i] += src[i];
    }
    return PQ_OK;
}

/* The sum of the micro-batch losses in micro-batch order, from every
 * rank's. */
static pq_status gather_loss(MPI_Comm comm, const pq_trainer *tr, int n_ranks, const double *mine, int n_mine,
                             double *total)
{
    int64_t M = pq_trainer_n_micro(tr);
    int *cnt = malloc((size_t)n_ranks * sizeof(int)), *dsp = malloc((size_t)n_ranks * sizeof(int));
    double *all = malloc((size_t)M * sizeof(double));
    pq_status st = PQ_OK;
    if (!cnt || !dsp || !all) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int r = 0, d = 0; st == PQ_OK && r < n_ranks; r++) {
        cnt[r] = (int)(M / n_ranks + (r < M % n_ranks));
        dsp[r] = d;
        d += cnt[r];
    }
    if (st == PQ_OK)
        st = pq_mpi_check(MPI_Allgatherv(mine, n_mine, MPI_DOUBLE, all, cnt, dsp, MPI_DOUBLE, comm),
                          "gathering the losses");
    *total = 0.0;
    for (int64_t mb = 0; st == PQ_OK && mb < M; mb++) *total += all[dsp[mb % n_ranks] + mb / n_ranks];
    free(cnt);
    free(dsp);
    free(all);
    return st;
}

/* Micro-batch mb's input-step gradients among every rank's, gathered as
 * gather_act lays them out. */
struct act_tails {
    const float *all;
    const int *dsp;
    int n_ranks, n_act;
};

static const float *act_tail(void *user, int64_t mb)
{
    const struct act_tails *a = user;
    return a->all + ((int64_t)a->dsp[mb % a->n_ranks] + mb / a->n_ranks) * a->n_act;
}

/* Static activations: every micro-batch's input-step gradients (the tails
 * of the micro-batch gradients) to every rank, summed in micro-batch
 * order into tr->dscale there. */
static pq_status gather_act(MPI_Comm comm, pq_trainer *tr, int n_ranks, const float *mine, int n_mine)
{
    int64_t M = pq_trainer_n_micro(tr), n = pq_trainer_grad_floats(tr), nf = tr->p->n_floats;
    int na = tr->q ? tr->q->n_act : 0;
    if (!na) return PQ_OK;
    int *cnt = malloc((size_t)n_ranks * sizeof(int)), *dsp = malloc((size_t)n_ranks * sizeof(int));
    float *own = malloc((size_t)(n_mine + 1) * (size_t)na * sizeof(float));
    float *all = malloc((size_t)M * (size_t)na * sizeof(float));
    pq_status st = PQ_OK;
    if (!cnt || !dsp || !own || !all) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int r = 0, d = 0; st == PQ_OK && r < n_ranks; r++) {
        int c = (int)(M / n_ranks + (r < M % n_ranks));
        cnt[r] = c * na;
        dsp[r] = d;
        d += c;
    }
    int *bdsp = st == PQ_OK ? malloc((size_t)n_ranks * sizeof(int)) : NULL;
    if (st == PQ_OK && !bdsp) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int r = 0; st == PQ_OK && r < n_ranks; r++) bdsp[r] = dsp[r] * na;
    for (int j = 0; st == PQ_OK && j < n_mine; j++)
        memcpy(own + (int64_t)j * na, mine + j * n + nf, (size_t)na * sizeof(float));
    if (st == PQ_OK)
        st = pq_mpi_check(MPI_Allgatherv(own, n_mine * na, MPI_FLOAT, all, cnt, bdsp, MPI_FLOAT, comm),
                          "gathering the input steps' gradients");
    if (st == PQ_OK) {
        struct act_tails a = {all, dsp, n_ranks, na};
        pq_trainer_sum_act(tr, act_tail, &a);
    }
    free(cnt);
    free(dsp);
    free(bdsp);
    free(own);
    free(all);
    return st;
}

/* The sharded update: LSQ backward and norms of this rank's chunks, the
 * norms gathered, clipping and AdamW of its chunks, the weights and steps
 * gathered. */
static pq_status update(MPI_Comm comm, pq_trainer *tr, const shards *sh, int rank, double loss)
{
    int64_t c0 = sh->cd[rank], c1 = c0 + sh->cc[rank];
    double coef = 1.0;
    pq_status st = pq_trainer_check_loss(tr, loss);
    if (st != PQ_OK) return st;
    pq_trainer_grad_part(tr, c0, c1);
    st = pq_mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DOUBLE, tr->chunk_sq, sh->cc, sh->cd, MPI_DOUBLE, comm),
                      "gathering the gradient norms");
    if (st != PQ_OK || (st = pq_trainer_clip_coef(tr, &coef)) != PQ_OK) return st;
    pq_trainer_update_part(tr, c0, c1, coef);
    pq_trainer_update_act(tr, coef);
    st = pq_mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, tr->p->data, sh->fc, sh->fd, MPI_FLOAT, comm),
                      "gathering the weights");
    if (st == PQ_OK && tr->q)
        st = pq_mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, tr->q->scale, sh->sc, sh->sd, MPI_FLOAT, comm),
                          "gathering the steps");
    return st != PQ_OK ? st : pq_trainer_end_step(tr, loss);
}

pq_status pq_train_mpi_step(MPI_Comm comm, pq_trainer *tr, double *loss)
{
    int rank = 0, n_ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    if (n_ranks == 1) return pq_trainer_step(tr, loss);
    int64_t M = pq_trainer_n_micro(tr), n = pq_trainer_grad_floats(tr);
    int64_t n_mine = M / n_ranks + (rank < M % n_ranks);
    shards sh;
    float *mine = NULL, *recv = NULL;
    double *mine_loss = NULL;
    pq_status st = shards_of(tr, n_ranks, &sh);
    if (st == PQ_OK) st = pq_trainer_begin_step(tr);
    if (st == PQ_OK) {
        mine = malloc((size_t)(n_mine ? n_mine : 1) * (size_t)n * sizeof(float));
        recv = malloc((size_t)(sh.fc[rank] ? sh.fc[rank] : 1) * sizeof(float));
        mine_loss = calloc((size_t)(n_mine ? n_mine : 1), sizeof(double));
        if (!mine || !recv || !mine_loss) st = pq_err(PQ_ERR_RESOURCE, "out of memory for the step's gradients");
    }
    if (st == PQ_OK) st = my_micro(tr, rank, n_ranks, n_mine, mine, mine_loss);
    pq_status wst = pq_train_mpi_wait_all(comm);
    if ((st = pq_sync_agree(comm, st != PQ_OK ? st : wst)) != PQ_OK) goto done;
    if ((st = gather_loss(comm, tr, n_ranks, mine_loss, (int)n_mine, loss)) != PQ_OK) goto done;
    if ((st = gather_act(comm, tr, n_ranks, mine, (int)n_mine)) != PQ_OK) goto done;
    if ((st = reduce_shard(comm, tr, &sh, rank, mine, recv)) != PQ_OK) goto done;
    st = update(comm, tr, &sh, rank, *loss);
done:
    shards_free(&sh);
    free(mine);
    free(recv);
    free(mine_loss);
    return st;
}

pq_status pq_train_mpi_gather_state(MPI_Comm comm, pq_trainer *tr)
{
    int rank = 0, n_ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    if (n_ranks == 1) return PQ_OK;
    shards sh;
    pq_status st = shards_of(tr, n_ranks, &sh);
    float *f[] = {tr->m, tr->v}, *s[] = {tr->sm, tr->sv};
    for (int i = 0; st == PQ_OK && i < 2; i++) {
        void *in = rank == 0 ? MPI_IN_PLACE : f[i] + sh.fd[rank];
        st = pq_mpi_check(MPI_Gatherv(in, sh.fc[rank], MPI_FLOAT, f[i], sh.fc, sh.fd, MPI_FLOAT, 0, comm),
                          "gathering the optimizer state");
        if (st != PQ_OK || !tr->q) continue;
        in = rank == 0 ? MPI_IN_PLACE : s[i] + sh.sd[rank];
        st = pq_mpi_check(MPI_Gatherv(in, sh.sc[rank], MPI_FLOAT, s[i], sh.sc, sh.sd, MPI_FLOAT, 0, comm),
                          "gathering the optimizer state");
    }
    shards_free(&sh);
    return st;
}
