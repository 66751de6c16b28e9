/* SPDX-License-Identifier: Apache-2.0 */
/* sync.c - status agreement and plan verification across ranks. */
#include "worker/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/msg.h"
#include "base/pq_cpu.h"
#include "base/pq_fault.h"
#include "base/pq_hash.h"

pq_status pq_sync_agree(MPI_Comm comm, pq_status local)
{
    int rank, size;
    pq_status st;
    if ((st = pq_mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank")) ||
        (st = pq_mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size")))
        return st;
    int *all = malloc((size_t)size * sizeof *all);
    if (!all) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    int mine = (int)local;
    if ((st = pq_mpi_check(MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, comm), "agreeing on status"))) {
        free(all);
        return st;
    }
    int first = -1;
    for (int r = 0; r < size && first < 0; r++)
        if (all[r] != PQ_OK) first = r;
    pq_status agreed = first < 0 ? PQ_OK : (pq_status)all[first];
    free(all);
    if (first <= 0) return agreed;
    /* The failing rank's detail goes to rank 0, which prints the one line. */
    if (rank == first) {
        pq_msg m = {.tag = PQ_TAG_ERROR};
        m.u.error.rank = (uint32_t)rank;
        m.u.error.unit_id = -1;
        m.u.error.status = (int32_t)agreed;
        snprintf(m.u.error.detail, sizeof m.u.error.detail, "%s", pq_err_detail());
        pq_msg_send(comm, PQ_ROLE_COORD, &m);
    } else if (rank == PQ_ROLE_COORD) {
        MPI_Status s;
        pq_msg m;
        if ((st = pq_mpi_check(MPI_Probe(first, PQ_TAG_ERROR, comm, &s), "waiting for an error report")) ||
            (st = pq_msg_recv(comm, &s, &m)))
            return st;
        pq_err_clear();
        pq_err_replace(agreed, "rank %d: %s", first, m.u.error.detail);
    }
    return agreed;
}

static void fnv(uint64_t *h, const void *p, size_t n) { *h = pq_fnv1a64_update(*h, p, n); }

static void fnv_i64(uint64_t *h, int64_t v) { fnv(h, &v, sizeof v); }

uint64_t pq_plan_hash(const pq_job *j, int n_ranks, int64_t unit_bytes)
{
    uint64_t h = PQ_FNV1A64_BASIS;
    const pq_plan *p = pq_job_plan(j);
    char *cfg = pq_config_to_json(pq_job_config(j));
    if (cfg) fnv(&h, cfg, strlen(cfg) + 1);
    free(cfg);
    fnv_i64(&h, n_ranks);
    fnv_i64(&h, unit_bytes);
    fnv_i64(&h, p->n_tensors);
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *t = &p->tensors[i];
        fnv(&h, t->st->name, strlen(t->st->name) + 1);
        fnv_i64(&h, t->st->dtype);
        fnv_i64(&h, t->st->ndim);
        for (int d = 0; d < t->st->ndim; d++) fnv_i64(&h, t->st->shape[d]);
        fnv_i64(&h, t->action);
        fnv_i64(&h, t->rows);
        fnv_i64(&h, t->cols);
    }
    fnv_i64(&h, p->n_units);
    for (int i = 0; i < p->n_units; i++) {
        const pq_unit *u = &p->units[i];
        fnv_i64(&h, u->tensor);
        fnv_i64(&h, u->row0);
        fnv_i64(&h, u->n_rows);
        fnv_i64(&h, u->rank);
    }
    fnv_i64(&h, p->hash_chunk_bytes);
    fnv_i64(&h, p->n_hash);
    for (int i = 0; i < p->n_hash; i++) {
        fnv_i64(&h, p->hash[i].n_bytes);
        fnv_i64(&h, p->hash[i].rank);
    }
    return h;
}

pq_status pq_sync_plan(MPI_Comm comm, const pq_job *j, int n_ranks, int64_t unit_bytes)
{
    int rank;
    pq_status st = pq_mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    if (st) return st;
    uint64_t mine = pq_plan_hash(j, n_ranks, unit_bytes);
    /* a test makes one rank's plan differ, to exercise the mismatch error */
    if (pq_fault_at(PQ_FAULT_PLAN_SALT, rank)) mine ^= 0x5a5a5a5aull;
    pq_msg m = {.tag = PQ_TAG_PLAN};
    m.u.plan.plan_hash = mine;
    m.u.plan.n_ranks = (uint32_t)n_ranks;
    m.u.plan.n_units = (uint32_t)pq_job_plan(j)->n_units;
    m.u.plan.unit_bytes = unit_bytes;
    if ((st = pq_msg_bcast_plan(comm, PQ_ROLE_COORD, &m))) return st;
    if (rank == PQ_ROLE_COORD) return PQ_OK;
    if (m.u.plan.plan_hash != mine || m.u.plan.n_units != (uint32_t)pq_job_plan(j)->n_units ||
        m.u.plan.n_ranks != (uint32_t)n_ranks || m.u.plan.unit_bytes != unit_bytes)
        return pq_err(PQ_ERR_MPI, "plan mismatch: rank %d planned %d units (hash %016llx), rank 0 %u units "
                      "(hash %016llx); every rank must see the same checkpoint, config and options",
                      rank, pq_job_plan(j)->n_units, (unsigned long long)mine, m.u.plan.n_units,
                      (unsigned long long)m.u.plan.plan_hash);
    return PQ_OK;
}

pq_status pq_sync_coord_node(MPI_Comm comm, int n_ranks, bool *same)
{
    MPI_Comm node = MPI_COMM_NULL;
    int rank = 0, lowest = -1;
    pq_status st = pq_mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    /* rank 0 is on this machine when it is in this rank's shared-memory group */
    if (!st) st = pq_mpi_check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
                               "grouping the ranks by machine");
    if (!st) st = pq_mpi_check(MPI_Allreduce(&rank, &lowest, 1, MPI_INT, MPI_MIN, node),
                               "finding rank 0's machine");
    if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
    int mine = !st && lowest == 0;
    int *all = malloc((size_t)n_ranks * sizeof *all);
    if (!all) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status gst = pq_mpi_check(MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, comm),
                                 "gathering the ranks' machines");
    if (!st) st = gst;
    for (int r = 0; r < n_ranks; r++) same[r] = !gst && all[r] && !(r > 0 && pq_fault_at(PQ_FAULT_REMOTE_RANKS, r));
    free(all);
    return st;
}

int pq_sync_threads_per_rank(MPI_Comm comm, int rank)
{
    MPI_Comm node = MPI_COMM_NULL;
    int local = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    /* the node's cores shared among its ranks, and no more than the cores
     * this rank is bound to */
    int t = pq_node_cpus() / local, mine = pq_cpu_count();
    if (t > mine) t = mine;
    return t < 1 ? 1 : t;
}

pq_status pq_sync_wait_quiet(MPI_Request *req, long max_sleep_ns, const char *what)
{
    int done = 0, rc;
    long ns = 20000;
    while ((rc = MPI_Test(req, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !done) {
        nanosleep(&(struct timespec){0, ns}, NULL);
        if (ns < max_sleep_ns) ns *= 2;
    }
    return pq_mpi_check(rc, what);
}
