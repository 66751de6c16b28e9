/* SPDX-License-Identifier: Apache-2.0 */
/* claims.c - one claim word per unit in a shared-memory window of the ranks
 * on rank 0's machine (claims.h). The words live in the window's first
 * rank's segment; every rank updates them with atomic instructions, which
 * MPI's unified memory model allows inside a passive-target epoch. */
#include "worker/claims.h"

#include <stdint.h>
#include <stdlib.h>

#include "base/log.h"

#define UNCLAIMED (-1)

struct pq_claims {
    MPI_Comm group;    /* the sharing ranks */
    MPI_Win win;
    int32_t *slot;     /* per unit: the comm rank that claimed it, or UNCLAIMED */
    bool *shares;      /* per comm rank */
    int cursor;        /* pq_claims_steal looks at units below this one */
};

static void destroy(pq_claims *c)
{
    if (!c) return;
    if (c->win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(c->win);
        MPI_Win_free(&c->win);
    }
    if (c->group != MPI_COMM_NULL) MPI_Comm_free(&c->group);
    free(c->shares);
    free(c);
}

pq_status pq_claims_open(MPI_Comm comm, const pq_plan *p, const bool *same_node, pq_claims **out)
{
    int rank = 0, n = 1, sharing = 0;
    *out = NULL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n);
    for (int r = 0; r < n; r++) sharing += same_node && same_node[r];
    /* the same inputs on every rank, so the same decision: no collective */
    if (sharing < 2 || p->n_units < 2) return PQ_OK;
    MPI_Comm group = MPI_COMM_NULL;
    if (MPI_Comm_split(comm, same_node[rank] ? 0 : MPI_UNDEFINED, rank, &group) != MPI_SUCCESS)
        return pq_err(PQ_ERR_MPI, "rank %d: grouping the ranks on rank 0's machine failed", rank);
    if (group == MPI_COMM_NULL) return PQ_OK; /* another machine: the plan's units only */
    pq_claims *c = calloc(1, sizeof *c);
    if (c) c->shares = calloc((size_t)n, sizeof *c->shares);
    int grank = 0;
    MPI_Comm_rank(group, &grank);
    MPI_Comm_set_errhandler(group, MPI_ERRORS_RETURN);
    void *base = NULL;
    MPI_Win win = MPI_WIN_NULL;
    MPI_Aint bytes = grank == 0 ? (MPI_Aint)p->n_units * (MPI_Aint)sizeof(int32_t) : 0;
    /* collective: called whatever happened to the allocations above */
    int ok = MPI_Win_allocate_shared(bytes, sizeof(int32_t), MPI_INFO_NULL, group, &base, &win) == MPI_SUCCESS;
    ok = ok && c && c->shares;
    /* all or none of the group shares, whatever failed where */
    int all_ok = 0;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, group) != MPI_SUCCESS) all_ok = 0;
    if (!all_ok) {
        PQ_LOG_DEBUG("no shared claim window on rank 0's machine: every rank runs only its planned units");
        if (win != MPI_WIN_NULL) MPI_Win_free(&win);
        MPI_Comm_free(&group);
        if (c) free(c->shares);
        free(c);
        return PQ_OK;
    }
    c->group = group;
    c->win = win;
    MPI_Aint size = 0;
    int disp = 0;
    MPI_Win_shared_query(win, 0, &size, &disp, &c->slot);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, win);
    if (grank == 0)
        for (int u = 0; u < p->n_units; u++) __atomic_store_n(&c->slot[u], UNCLAIMED, __ATOMIC_RELAXED);
    /* everyone sees the cleared words before anyone claims */
    MPI_Win_sync(win);
    MPI_Barrier(group);
    MPI_Win_sync(win);
    for (int r = 0; r < n; r++) c->shares[r] = same_node[r];
    c->cursor = p->n_units;
    *out = c;
    return PQ_OK;
}

void pq_claims_close(pq_claims *c)
{
    destroy(c);
}

static bool cas(pq_claims *c, int u, int rank)
{
    int32_t expected = UNCLAIMED;
    return __atomic_compare_exchange_n(&c->slot[u], &expected, (int32_t)rank, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

bool pq_claims_take(pq_claims *c, const pq_plan *p, int u, int rank)
{
    if (!c || !c->shares[rank] || !c->shares[p->units[u].rank]) return p->units[u].rank == rank;
    return cas(c, u, rank);
}

int pq_claims_steal(pq_claims *c, const pq_plan *p, int rank)
{
    if (!c || !c->shares[rank]) return -1;
    /* claims only ever go from unclaimed to claimed, so what was passed
     * over once never needs looking at again */
    while (c->cursor > 0) {
        int u = --c->cursor;
        int owner = p->units[u].rank;
        if (owner == rank || !c->shares[owner]) continue;
        if (__atomic_load_n(&c->slot[u], __ATOMIC_ACQUIRE) == UNCLAIMED && cas(c, u, rank)) return u;
    }
    return -1;
}

int pq_claims_next(pq_claims *c, const pq_plan *p, int rank, int *own, bool *stolen)
{
    *stolen = false;
    while ((*own = pq_plan_next_unit(p, *own, rank)) < p->n_units) {
        int u = (*own)++;
        if (pq_claims_take(c, p, u, rank)) return u;
    }
    int u = pq_claims_steal(c, p, rank);
    *stolen = u >= 0;
    return u;
}

int pq_claims_pick(void *claims, const pq_plan *p, int rank, int *own, bool *stolen, int *next)
{
    int u = pq_claims_next(claims, p, rank, own, stolen), nx = pq_plan_next_unit(p, *own, rank);
    *next = u >= 0 && !*stolen && nx < p->n_units ? nx : -1;
    return u;
}

int pq_claims_holder(const pq_claims *c, const pq_plan *p, int u)
{
    int owner = p->units[u].rank;
    if (!c || !c->shares[owner]) return owner;
    return __atomic_load_n(&c->slot[u], __ATOMIC_ACQUIRE);
}
