/* SPDX-License-Identifier: Apache-2.0 */
/* worker.c - a rank >= 1: run its work items (runner.h) with a sink that
 * ships each result to rank 0.
 *
 * Protocol per worker: (HashLeaves | UnitResult header + raw buffers)* then
 * exactly one final message, Done or Error; then rank 0 answers with one
 * Shutdown. A Shutdown that arrives early (stop = true) ends the loop. */
#include "worker/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/pq_clock.h"
#include "base/pq_fault.h"
#include "proto/msg.h"
#include "worker/direct.h"
#include "worker/runner.h"
#include "worker/stop.h"

/* Results whose buffers are still on their way to rank 0: the worker goes on
 * with its next unit instead of waiting for rank 0, which drains only
 * between its own work. Bounded, so memory stays a few units. */
#define MAX_IN_FLIGHT 8

typedef struct in_flight {
    pq_unit_result r;
    pq_data_reqs reqs;
    bool used;
} in_flight;

/* placed: the codes are already in OUT.partial (pq_direct_write), so only
 * the rest of the result travels. */
static pq_status send_result(MPI_Comm comm, int rank, const pq_job *j, const pq_unit *u, pq_unit_result *r,
                             bool placed, pq_data_reqs *reqs)
{
    pq_msg m = {.tag = PQ_TAG_RESULT};
    pq_wire_result *h = &m.u.result;
    pq_unit_layout l;
    pq_result_part parts[PQ_RESULT_PARTS];
    pq_unit_layout_of(pq_job_plan(j), u, &l);
    pq_unit_result_parts(r, &l, parts);
    h->unit_id = (uint32_t)u->id;
    h->rank = (uint32_t)rank;
    h->n_rows = r->n_rows;
    h->code_bytes = (uint64_t)r->code_bytes;
    h->n_scales = (uint64_t)r->n_scales;
    h->has_zero_point = r->zero_point != NULL;
    h->n_nonfinite = r->n_nonfinite;
    h->max_abs_err = 0;
    for (int64_t i = 0; i < r->n_rows; i++) {
        h->sum_sq += r->row_sum_sq[i];
        h->err_sq += r->row_err_sq[i];
        if (r->row_max_err[i] > h->max_abs_err) h->max_abs_err = r->row_max_err[i];
    }
    if ((size_t)r->code_bytes != l.codes || r->n_scales != l.n_scales)
        return pq_err(PQ_ERR_INTERNAL, "unit %d: result sizes differ from the plan", u->id);
    if (placed || pq_fault_at(PQ_FAULT_FAKE_PLACED, rank)) {
        h->codes_in_file = true;
        parts[0].bytes = 0;
    }
    pq_status st = pq_msg_send(comm, PQ_ROLE_COORD, &m);
    if (st) return st;
    reqs->n = 0;
    for (int i = 0; i < PQ_RESULT_PARTS && !st; i++)
        if (parts[i].bytes) st = pq_data_isend(comm, PQ_ROLE_COORD, *parts[i].data, parts[i].bytes, reqs);
    return st;
}

/* Free the results whose sends completed; with wait, wait for all first. */
static pq_status reap(in_flight *f, bool wait)
{
    pq_status first = PQ_OK;
    for (int k = 0; k < MAX_IN_FLIGHT; k++) {
        if (!f[k].used) continue;
        bool done = true;
        pq_status st = wait ? pq_data_wait(&f[k].reqs) : pq_data_test(&f[k].reqs, &done);
        if (st && !first) first = st;
        if (st || done) {
            pq_unit_result_free(&f[k].r);
            f[k].used = false;
        }
    }
    return first;
}

/* A free slot, waiting for the oldest send when all are busy. */
static pq_status free_slot(in_flight *f, int *slot)
{
    pq_status st = reap(f, false);
    *slot = -1;
    for (int k = 0; k < MAX_IN_FLIGHT; k++)
        if (!f[k].used) {
            *slot = k;
            return st;
        }
    if (st) return st;
    st = pq_data_wait(&f[0].reqs);
    pq_unit_result_free(&f[0].r);
    f[0].used = false;
    *slot = 0;
    return st;
}

/* What rank 0 tells a worker: its output layout (once, to ranks on its
 * machine) and the Shutdown (early when someone failed, else at the end). */
typedef struct coord_news {
    pq_wire_shutdown sd;
    bool got_shutdown;
    pq_direct direct;
    const char *partial;   /* OUT.partial, or NULL: never write directly */
} coord_news;

/* Take one message from rank 0 if one is there (wait: sleep until one is). A
 * layout that arrives once the units are over (late) is received unused. */
static pq_status poll_coord(pq_job *j, MPI_Comm comm, int rank, coord_news *cn, bool wait, bool late)
{
    const struct timespec nap = {0, 1000000};
    bool ready;
    MPI_Status s;
    pq_msg m;
    pq_status st;
    for (;;) {
        if ((st = pq_msg_poll(comm, PQ_ROLE_COORD, MPI_ANY_TAG, &ready, &s))) return st;
        if (ready || !wait) break;
        nanosleep(&nap, NULL);
    }
    if (!ready) return PQ_OK;
    if ((st = pq_msg_recv(comm, &s, &m))) return st;
    switch (m.tag) {
    case PQ_TAG_SHUTDOWN:
        cn->sd = m.u.shutdown;
        cn->got_shutdown = true;
        return PQ_OK;
    case PQ_TAG_LAYOUT:
        return pq_direct_take_layout(&cn->direct, comm, j, &m.u.layout, cn->partial, rank, !late);
    default:
        return pq_err(PQ_ERR_PROTO, "unexpected %s message from rank %d", pq_msg_name(m.tag), m.source);
    }
}

static void set_error(pq_msg *fin, int rank, int unit, pq_status st)
{
    fin->tag = PQ_TAG_ERROR;
    fin->u.error.rank = (uint32_t)rank;
    fin->u.error.unit_id = unit;
    fin->u.error.status = (int32_t)st;
    snprintf(fin->u.error.detail, sizeof fin->u.error.detail, "%s", pq_err_detail());
}

/* The worker's sink: results and leaves to rank 0, messages from it. */
typedef struct shipper {
    pq_job *j;
    MPI_Comm comm;
    int rank;
    coord_news cn;
    in_flight *fl;
    pq_msg leaves;         /* leaves not sent yet */
} shipper;

/* Unit u's result: its codes into the file first when this rank writes
 * them itself (rank 0 commits only after every header has arrived), then
 * the header and the rest to rank 0; the slot owns the result until its
 * sends complete. */
static pq_status ship_unit(void *user, const pq_unit *u, pq_unit_result *r)
{
    shipper *w = user;
    int slot = -1;
    double t1 = pq_now_s();
    pq_status st = free_slot(w->fl, &slot);
    bool placed = w->cn.direct.fd >= 0;
    if (!st && placed) {
        st = pq_direct_write(&w->cn.direct, w->j, u, r, w->rank);
        double t2 = pq_now_s();
        pq_job_phase_add(w->j, PQ_PHASE_WRITE, t2 - t1);
        t1 = t2;
    }
    if (st) {
        pq_unit_result_free(r);
    } else {
        in_flight *f = &w->fl[slot];
        f->r = *r;
        memset(r, 0, sizeof *r);
        f->used = true;
        st = send_result(w->comm, w->rank, w->j, u, &f->r, placed, &f->reqs);
    }
    pq_job_phase_add(w->j, PQ_PHASE_XFER, pq_now_s() - t1);
    return st;
}

static pq_status send_leaves(void *user)
{
    shipper *w = user;
    if (!w->leaves.u.leaves.n) return PQ_OK;
    double t0 = pq_now_s();
    pq_status st = pq_msg_send(w->comm, PQ_ROLE_COORD, &w->leaves);
    pq_job_phase_add(w->j, PQ_PHASE_XFER, pq_now_s() - t0);
    w->leaves.u.leaves.n = 0;
    return st;
}

/* A hashed chunk's leaf joins the next HashLeaves message. */
static pq_status ship_chunk(void *user, int64_t chunk)
{
    shipper *w = user;
    pq_wire_leaves *l = &w->leaves.u.leaves;
    l->chunk[l->n] = (uint32_t)chunk;
    memcpy(l->leaf[l->n++], pq_job_leaf(w->j, chunk), PQ_WIRE_LEAF_BYTES);
    return l->n == PQ_WIRE_MAX_LEAVES ? send_leaves(w) : PQ_OK;
}

static pq_status poll_news(void *user, bool *stop)
{
    shipper *w = user;
    pq_status st = poll_coord(w->j, w->comm, w->rank, &w->cn, false, false);
    *stop = w->cn.got_shutdown;
    if (!st && !*stop) st = pq_stop_check();
    return st;
}

pq_status pq_worker_main(pq_job *j, MPI_Comm comm, int rank, const char *partial, pq_claims *claims)
{
    pq_msg fin = {.tag = PQ_TAG_DONE};
    shipper w = {.j = j, .comm = comm, .rank = rank, .cn = {.direct = PQ_DIRECT_INIT, .partial = partial},
                 .leaves = {.tag = PQ_TAG_LEAVES}};
    w.leaves.u.leaves.rank = (uint32_t)rank;
    if (!(w.fl = calloc(MAX_IN_FLIGHT, sizeof *w.fl))) return pq_err(PQ_ERR_RESOURCE, "rank %d: out of memory", rank);
    const pq_sink sink = {.unit = ship_unit, .chunk = ship_chunk, .flush = send_leaves, .poll = poll_news,
                          .user = &w};
    pq_run_counts n;
    pq_status st = pq_run_units(j, rank, pq_claims_pick, claims, &sink, &n);
    /* After a failed MPI call the job aborts, and fl stays allocated on
     * purpose: MPI may still own its send buffers. */
    if (st == PQ_ERR_MPI) return st;
    if (st) set_error(&fin, rank, n.failed_unit, st);
    PQ_LOG_DEBUG("ran %d units, %d of them taken over from other ranks", n.units, n.taken);
    /* rank 0 takes every announced buffer, even when stopping */
    double tw = pq_now_s();
    pq_status wst = reap(w.fl, true);
    pq_job_phase_add(j, PQ_PHASE_XFER, pq_now_s() - tw);
    free(w.fl);
    if (wst && fin.tag == PQ_TAG_DONE) set_error(&fin, rank, -1, wst);
    /* the codes written here must be in the file before rank 0 commits */
    if ((wst = pq_direct_close(&w.cn.direct, rank)) && fin.tag == PQ_TAG_DONE) {
        st = wst;
        set_error(&fin, rank, -1, wst);
    }
    if (fin.tag == PQ_TAG_DONE) {
        fin.u.done.rank = (uint32_t)rank;
        fin.u.done.units = (uint32_t)n.units;
        fin.u.done.hash_chunks = (uint32_t)n.chunks;
    }
    pq_status sst = pq_msg_send(comm, PQ_ROLE_COORD, &fin);
    if (sst) return st ? st : sst;
    /* Wait for rank 0's verdict without spinning on a shared core (a layout
     * that comes only now is received unused). */
    while (!w.cn.got_shutdown)
        if ((sst = poll_coord(j, comm, rank, &w.cn, true, true))) return st ? st : sst;
    if (w.cn.sd.status != PQ_OK) return (pq_status)w.cn.sd.status;
    return st;
}
