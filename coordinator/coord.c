/* SPDX-License-Identifier: Apache-2.0 */
/* coord.c - rank 0 of a run: interleave its own units with draining the
 * results of the other ranks, write them in arrival order, and on the first
 * failure tell every rank to stop.
 *
 * Arrival order does not matter for the output, nor which rank ran a unit
 * (claims.h): pq_job_put_result places rows by unit, the metrics are summed
 * in row order and written in plan order, and the source digest's leaves
 * are combined in chunk order at the commit. */
#include "base/pq_clock.h"
#include "coordinator/coord.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/log.h"
#include "proto/msg.h"
#include "worker/runner.h"
#include "worker/stop.h"

/* Input bytes of units between two writeback hints: ~16 MB of int8 codes. */
#define WRITEBACK_EVERY_BYTES (64.0 * 1024 * 1024)

typedef struct coord {
    pq_job *j;
    MPI_Comm comm;
    int n_ranks;
    const pq_coord_opts *o;
    bool *received;        /* per unit */
    int *rank_units;       /* per rank: units received */
    bool *finished;        /* per rank: final message seen */
    bool *placed;          /* per rank: sent the output layout (may write codes itself) */
    uint64_t *offsets;     /* the layout's offsets, until every send completed */
    pq_data_reqs *layout_reqs; /* per rank */
    int n_finished;
    pq_status err;         /* first failure (its detail is recorded) */
    bool *stop_sent;       /* the early Shutdown went out */
    double stop_t;         /* when it did */
    double kicked_bytes;   /* input bytes (unit cost) written at the last writeback hint */
} coord;

/* Record the first failure only: later ones are consequences. */
static void fail(coord *c, pq_status st)
{
    if (c->err) return;
    c->err = st;
}

/* The metrics of the tensors complete so far, in plan order: written as
 * they complete, between units, rather than after the last unit while the
 * other ranks wait (pq_job_end_next). */
static void end_ready(coord *c)
{
    bool did = true;
    double t0 = pq_now_s();
    while (did && !c->err) {
        pq_status st = pq_job_end_next(c->j, &did);
        if (st) fail(c, st);
    }
    pq_job_phase_add(c->j, PQ_PHASE_METRICS, pq_now_s() - t0);
}

static pq_status put(coord *c, const pq_unit *u, int rank, const pq_unit_result *r)
{
    pq_status st = pq_job_put_result(c->j, u, r);
    if (st) return st;
    c->received[u->id] = true;
    c->rank_units[rank]++;
    if (c->o->on_unit) c->o->on_unit(c->o->user, u, rank, pq_unit_result_sqnr(r));
    return PQ_OK;
}

/* A failure of rank 0's own hashing, whose message does not name the rank. */
static pq_status rank0_hash_error(pq_status st)
{
    char detail[1024];
    snprintf(detail, sizeof detail, "%s", pq_err_detail());
    return pq_err_replace(st, "rank 0: %s", detail);
}

/* Rank 0's sink: its own finished unit is written like any other (the
 * runner calls it on this thread, between the items of a batch). */
static pq_status put_own(void *user, const pq_unit *u, pq_unit_result *r)
{
    coord *c = user;
    pq_status st = put(c, u, PQ_ROLE_COORD, r);
    pq_unit_result_free(r);
    end_ready(c);
    return st;
}

/* Check a UnitResult header against the plan, then receive its buffers
 * (always, even when stopping, so the sender's transfer completes). */
static pq_status take_result(coord *c, int src, const pq_wire_result *h)
{
    const pq_plan *p = pq_job_plan(c->j);
    if (h->unit_id >= (uint32_t)p->n_units)
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d names unit %u; the plan has %d",
                      src, h->unit_id, p->n_units);
    const pq_unit *u = &p->units[h->unit_id];
    int holder = pq_claims_holder(c->o->claims, p, u->id);
    if (holder != src || c->received[u->id])
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d for unit %d, which %s", src, u->id,
                      holder != src ? "another rank runs" : "was already received");
    pq_unit_layout l;
    pq_unit_layout_of(p, u, &l);
    if (h->codes_in_file && !c->placed[src])
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d for unit %d says its codes are in the "
                      "output file, but rank 0 sent that rank no output layout", src, u->id);
    if (h->n_rows != u->n_rows || h->code_bytes != l.codes || h->n_scales != (uint64_t)l.n_scales ||
        h->has_zero_point != (l.zero_point != 0))
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d for unit %d announces %lld rows, %llu "
                      "code bytes, %llu scales; the plan expects %lld rows, %zu code bytes, %lld scales",
                      src, u->id, (long long)h->n_rows, (unsigned long long)h->code_bytes,
                      (unsigned long long)h->n_scales, (long long)u->n_rows, l.codes, (long long)l.n_scales);
    pq_unit_result r;
    /* r.codes stays NULL when the worker wrote them into the file itself */
    pq_status st = pq_unit_result_alloc(&r, u, &l, !h->codes_in_file);
    pq_result_part parts[PQ_RESULT_PARTS];
    pq_unit_result_parts(&r, &l, parts);
    r.n_nonfinite = h->n_nonfinite;
    double t0 = pq_now_s();
    for (int i = h->codes_in_file ? 1 : 0; i < PQ_RESULT_PARTS && !st; i++)
        if (parts[i].bytes) st = pq_data_recv(c->comm, src, *parts[i].data, parts[i].bytes, parts[i].name);
    pq_job_phase_add(c->j, PQ_PHASE_XFER, pq_now_s() - t0);
    /* a stop by signal keeps what is already here (into the journal) */
    if (!st && (!c->err || c->err == PQ_ERR_INTERRUPTED)) st = put(c, u, src, &r);
    pq_unit_result_free(&r);
    return st;
}

/* Raw data no header announced (the rest of a rejected result): take it
 * off the wire, or the drain would find it again forever. */
static void discard_data(coord *c, const MPI_Status *s)
{
    int count = 0;
    char byte;
    void *sink = NULL;
    if (MPI_Get_count(s, MPI_BYTE, &count) != MPI_SUCCESS || count < 0) count = 0;
    if (count > 1 && (sink = malloc((size_t)count)))
        MPI_Recv(sink, count, MPI_BYTE, s->MPI_SOURCE, PQ_TAG_DATA, c->comm, MPI_STATUS_IGNORE);
    else /* a truncating receive still takes the message (MPI_ERR_TRUNCATE, returned) */
        MPI_Recv(&byte, 1, MPI_BYTE, s->MPI_SOURCE, PQ_TAG_DATA, c->comm, MPI_STATUS_IGNORE);
    free(sink);
    fail(c, pq_err(PQ_ERR_PROTO, "unexpected raw data from rank %d (no UnitResult announced it)", s->MPI_SOURCE));
}

static void handle(coord *c, const MPI_Status *s)
{
    pq_msg m;
    int src = s->MPI_SOURCE;
    if (s->MPI_TAG == PQ_TAG_DATA) {
        discard_data(c, s);
        return;
    }
    pq_status st = pq_msg_recv(c->comm, s, &m);
    if (st) { fail(c, st); return; }
    switch (m.tag) {
    case PQ_TAG_RESULT:
        if (c->finished[src]) {
            fail(c, pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d after its final message", src));
            return;
        }
        if ((st = take_result(c, src, &m.u.result))) fail(c, st);
        return;
    case PQ_TAG_ERROR:
        if (!c->finished[src]) { c->finished[src] = true; c->n_finished++; }
        if (!c->err) {
            /* The worker's detail already names its rank and unit when the
             * failure was inside one. */
            if (m.u.error.unit_id >= 0)
                fail(c, pq_err_replace((pq_status)m.u.error.status, "%s", m.u.error.detail));
            else
                fail(c, pq_err_replace((pq_status)m.u.error.status, "rank %d: %s", src, m.u.error.detail));
        }
        return;
    case PQ_TAG_DONE:
        if (c->finished[src]) {
            fail(c, pq_err(PQ_ERR_PROTO, "second final message (Done) from rank %d", src));
            return;
        }
        c->finished[src] = true;
        c->n_finished++;
        if (!c->err) {
            /* which units a rank ran is decided by its claims; that every
             * unit arrived is checked once all ranks are done */
            if ((int)m.u.done.units != c->rank_units[src]) {
                fail(c, pq_err(PQ_ERR_PROTO, "Done message from rank %d after %u units; %d of its results were "
                               "received", src, m.u.done.units, c->rank_units[src]));
                return;
            }
            int chunks = 0, have = 0;
            const pq_plan *p = pq_job_plan(c->j);
            for (int i = 0; i < p->n_hash; i++)
                if (p->hash[i].rank == src) {
                    chunks++;
                    have += pq_job_leaf_known(c->j, i);
                }
            if ((int)m.u.done.hash_chunks != chunks || have != chunks)
                fail(c, pq_err(PQ_ERR_PROTO, "Done message from rank %d after hashing %u source chunks (%d "
                               "leaves received); the plan gave it %d", src, m.u.done.hash_chunks, have, chunks));
        }
        return;
    case PQ_TAG_LEAVES:
        if (c->finished[src]) {
            fail(c, pq_err(PQ_ERR_PROTO, "HashLeaves message from rank %d after its final message", src));
            return;
        }
        for (int i = 0; i < m.u.leaves.n && !c->err; i++)
            if ((st = pq_job_put_leaf(c->j, src, m.u.leaves.chunk[i], m.u.leaves.leaf[i]))) {
                char detail[1024];
                snprintf(detail, sizeof detail, "%s", pq_err_detail());
                fail(c, pq_err_replace(st, "HashLeaves message from rank %d: %s", src, detail));
            }
        return;
    default:
        fail(c, pq_err(PQ_ERR_PROTO, "unexpected %s message from rank %d", pq_msg_name(m.tag), src));
    }
}

pq_status pq_coord_shutdown(MPI_Comm comm, int n_ranks, pq_status st, bool *sent)
{
    pq_status rc = PQ_OK;
    if (*sent) return PQ_OK;
    *sent = true;
    pq_msg m = {.tag = PQ_TAG_SHUTDOWN};
    m.u.shutdown.status = (int32_t)st;
    m.u.shutdown.stop = st != PQ_OK;
    for (int r = 1; r < n_ranks; r++) {
        pq_status s = pq_msg_send(comm, r, &m);
        if (s && !rc) rc = s;
    }
    return rc;
}

/* Tell the workers on this machine where their codes go in OUT.partial
 * (OutputLayout + the offsets, sent without waiting for them to listen). */
static pq_status send_layouts(coord *c, const bool *same_node)
{
    const pq_plan *p = pq_job_plan(c->j);
    struct stat sb;
    bool any = false;
    for (int r = 1; r < c->n_ranks; r++) any |= same_node[r];
    if (!any) return PQ_OK;
    const char *path = pq_job_partial_path(c->j);
    if (stat(path, &sb) < 0) return PQ_OK; /* the workers then send their codes */
    if (!(c->offsets = malloc((size_t)p->n_tensors * sizeof *c->offsets)) ||
        !(c->layout_reqs = calloc((size_t)c->n_ranks, sizeof *c->layout_reqs)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_job_codes_offsets(c->j, c->offsets);
    pq_msg m = {.tag = PQ_TAG_LAYOUT};
    m.u.layout.file_dev = (uint64_t)sb.st_dev;
    m.u.layout.file_ino = (uint64_t)sb.st_ino;
    m.u.layout.n_tensors = (uint32_t)p->n_tensors;
    for (int r = 1; r < c->n_ranks && !st; r++) {
        if (!same_node[r]) continue;
        if (!(st = pq_msg_send(c->comm, r, &m)))
            st = pq_data_isend(c->comm, r, c->offsets, (size_t)p->n_tensors * sizeof *c->offsets,
                               &c->layout_reqs[r]);
        c->placed[r] = !st;
    }
    return st;
}

/* Take every message that has arrived, write the metrics of the tensors
 * now complete, give the writeback hint, and after a failure stop every
 * rank (once). True when a message was taken. */
static bool drain(coord *c)
{
    bool ready, progressed = false;
    MPI_Status s;
    for (;;) {
        pq_status st = pq_msg_poll(c->comm, MPI_ANY_SOURCE, MPI_ANY_TAG, &ready, &s);
        if (st) { fail(c, st); break; }
        if (!ready) break;
        handle(c, &s);
        progressed = true;
    }
    if (progressed) end_ready(c);
    if (!c->err && pq_stop_signal()) fail(c, pq_stop_check());
    /* the output's pages are written out as they fill rather than all in
     * the commit's fsync (a helper thread submits the I/O) */
    if (!c->err && pq_job_bytes_done(c->j) - c->kicked_bytes >= WRITEBACK_EVERY_BYTES) {
        pq_job_start_writeback(c->j);
        c->kicked_bytes = pq_job_bytes_done(c->j);
    }
    if (c->err && !*c->stop_sent) {
        /* Stop every rank promptly; keep draining so their final messages
         * (and any result in flight) are taken off the wire. */
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", pq_err_detail());
        pq_coord_shutdown(c->comm, c->n_ranks, c->err, c->stop_sent);
        pq_err_replace(c->err, "%s", detail);
        c->stop_t = pq_now_s();
    }
    return progressed;
}

/* The runner's look between batches: drain; stop after a failure. */
static pq_status drain_poll(void *user, bool *stop)
{
    coord *c = user;
    drain(c);
    *stop = c->err != PQ_OK;
    return PQ_OK;
}

pq_status pq_coord_run(pq_job *j, MPI_Comm comm, int n_ranks, const pq_coord_opts *o, bool *unresponsive,
                       bool *stop_sent)
{
    coord c = {.j = j, .comm = comm, .n_ranks = n_ranks, .o = o, .stop_sent = stop_sent};
    const pq_plan *p = pq_job_plan(j);
    const struct timespec nap = {0, 500000};
    double t0 = pq_now_s();
    pq_run_counts n = {.failed_unit = -1};
    *unresponsive = false;
    c.received = calloc((size_t)p->n_units + 1, sizeof *c.received);
    c.rank_units = calloc((size_t)n_ranks, sizeof *c.rank_units);
    c.finished = calloc((size_t)n_ranks, sizeof *c.finished);
    c.placed = calloc((size_t)n_ranks, sizeof *c.placed);
    if (!c.received || !c.rank_units || !c.finished || !c.placed) {
        c.err = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < p->n_units; i++) c.received[i] = pq_job_unit_done(j, i); /* from the journal */
    c.err = o->initial_error;
    if (!c.err && o->same_node) c.err = send_layouts(&c, o->same_node);
    /* Rank 0's own work, the others' results drained between its batches. */
    if (!c.err) {
        const pq_sink sink = {.unit = put_own, .poll = drain_poll, .user = &c};
        pq_status st = pq_run_units(j, PQ_ROLE_COORD, pq_claims_pick, o->claims, &sink, &n);
        if (st) fail(&c, n.failed_unit < 0 ? rank0_hash_error(st) : st);
    }
    /* Then the others' until every one has sent its final message. */
    for (;;) {
        bool progressed = drain(&c);
        if (c.n_finished == n_ranks - 1) break;
        if (c.err && pq_now_s() - c.stop_t > o->stop_grace_s) {
            *unresponsive = true;
            break;
        }
        if (!progressed) {
            /* idle, waiting for the others: push new results to disk */
            if (!c.err && pq_job_bytes_done(j) > c.kicked_bytes) {
                pq_job_start_writeback(j);
                c.kicked_bytes = pq_job_bytes_done(j);
            }
            nanosleep(&nap, NULL);
        }
    }
    if (!c.err) {
        for (int i = 0; i < p->n_units; i++)
            if (!c.received[i]) {
                c.err = pq_err(PQ_ERR_INTERNAL, "unit %d was never received (rank %d)", i, p->units[i].rank);
                break;
            }
    }
    pq_job_set_quantize_seconds(j, pq_now_s() - t0);
    PQ_LOG_DEBUG("ran %d units, %d of them taken over from other ranks", c.rank_units[PQ_ROLE_COORD], n.taken);
    /* Every worker that finished normally has taken its layout (a worker
     * receives it at the latest while waiting for the Shutdown, which comes
     * after this). After a failure the sends may never complete: they are
     * only tested (the error stays the one reported), and a buffer still
     * being sent is left to the process's end. */
    bool sent = true;
    for (int r = 1; c.layout_reqs && r < n_ranks && sent; r++) {
        if (!c.placed[r]) continue;
        int flag = 0;
        if (!c.err) sent = !(c.err = pq_data_wait(&c.layout_reqs[r]));
        else sent = MPI_Testall(c.layout_reqs[r].n, c.layout_reqs[r].req, &flag, MPI_STATUSES_IGNORE) ==
                        MPI_SUCCESS && flag;
    }
    if (sent) free(c.offsets);
cleanup:
    free(c.received);
    free(c.rank_units);
    free(c.finished);
    free(c.placed);
    free(c.layout_reqs);
    return c.err;
}
