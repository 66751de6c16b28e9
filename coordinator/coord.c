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
#include "worker/unit_batch.h"
#include "worker/worker.h"

static bool stop_sent;  /* the early Shutdown went out; the final one is not sent again */

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
    pq_unit_batch *batch;  /* with several threads: the batch in hand */
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
    c->j->t.metrics += pq_now_s() - t0;
}

static double unit_sqnr(const pq_unit_result *r)
{
    double s = 0, e = 0;
    for (int64_t i = 0; i < r->n_rows; i++) {
        s += r->row_sum_sq[i];
        e += r->row_err_sq[i];
    }
    if (e == 0) return INFINITY;
    return 10.0 * log10(s / e);
}

static pq_status put(coord *c, const pq_unit *u, int rank, const pq_unit_result *r)
{
    pq_status st = pq_job_put_result(c->j, u, r);
    if (st) return st;
    c->received[u->id] = true;
    c->rank_units[rank]++;
    if (c->o->on_unit) c->o->on_unit(c->o->user, u, rank, unit_sqnr(r));
    return PQ_OK;
}

/* A failure of rank 0's own hashing, whose message does not name the rank. */
static pq_status rank0_hash_error(pq_status st)
{
    char detail[1024];
    snprintf(detail, sizeof detail, "%s", pq_err_detail());
    return pq_err_replace(st, "rank 0: %s", detail);
}

/* Rank 0's thread, between the items of a batch: write a finished unit's
 * result (a chunk's leaf is already in place; failures are reported once
 * the batch is over). */
static void put_one(void *user, pq_unit_batch *b, int i)
{
    coord *c = user;
    if (b->item[i] < 0 || b->st[i] || c->err) return;
    pq_status st = put(c, &c->j->plan->units[b->item[i]], PQ_ROLE_COORD, &b->r[i]);
    pq_unit_result_free(&b->r[i]);
    if (st) fail(c, st);
    else pq_worker_after_unit(PQ_ROLE_COORD);
    end_ready(c);
}

/* Rank 0's work a batch at a time when it has several threads: its digest
 * chunks, then the units it claims, written as they finish (unit_batch.h).
 * false when nothing was left. */
static bool step_batch(coord *c, int *next_chunk, int *next_own, int *taken, int width)
{
    pq_unit_batch *b = c->batch;
    pq_batch_fill(b, c->j->plan, c->o->claims, PQ_ROLE_COORD, width, next_chunk, next_own, taken);
    if (!b->n) return false;
    pq_batch_run(c->j, PQ_ROLE_COORD, b, width, put_one, c);
    int unit = -1;
    pq_status st = pq_batch_status(b, &unit);
    if (st) fail(c, unit < 0 ? rank0_hash_error(st) : st);
    pq_batch_clear(b);
    return true;
}

/* Check a UnitResult header against the plan, then receive its buffers
 * (always, even when stopping, so the sender's transfer completes). */
static pq_status take_result(coord *c, int src, const pq_wire_result *h)
{
    const pq_plan *p = c->j->plan;
    if (h->unit_id >= (uint32_t)p->n_units)
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d names unit %u; the plan has %d",
                      src, h->unit_id, p->n_units);
    const pq_unit *u = &p->units[h->unit_id];
    int holder = pq_claims_holder(c->o->claims, p, u->id);
    if (holder != src || c->received[u->id])
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d for unit %d, which %s", src, u->id,
                      holder != src ? "another rank runs" : "was already received");
    size_t sz[6];
    pq_worker_result_sizes(c->j, u, sz);
    if (h->codes_in_file && !c->placed[src])
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d for unit %d says its codes are in the "
                      "output file, but rank 0 sent that rank no output layout", src, u->id);
    if (h->n_rows != u->n_rows || h->code_bytes != sz[0] || h->n_scales * sizeof(float) != sz[1] ||
        h->has_zero_point != (sz[2] != 0))
        return pq_err(PQ_ERR_PROTO, "UnitResult message from rank %d for unit %d announces %lld rows, %llu "
                      "code bytes, %llu scales; the plan expects %lld rows, %zu code bytes, %zu scales",
                      src, u->id, (long long)h->n_rows, (unsigned long long)h->code_bytes,
                      (unsigned long long)h->n_scales, (long long)u->n_rows, sz[0], sz[1] / sizeof(float));
    pq_unit_result r = {.unit_id = u->id, .n_rows = u->n_rows, .code_bytes = (int64_t)sz[0],
                        .n_scales = (int64_t)(sz[1] / sizeof(float)), .n_nonfinite = h->n_nonfinite};
    void **bufs[6] = {&r.codes, (void **)&r.scale, (void **)&r.zero_point, (void **)&r.row_sum_sq,
                      (void **)&r.row_err_sq, (void **)&r.row_max_err};
    static const char *const names[6] = {"codes", "scales", "zero points", "row sums", "row errors",
                                         "row max errors"};
    pq_status st = PQ_OK;
    double t0 = pq_now_s();
    if (h->codes_in_file) sz[0] = 0; /* r.codes stays NULL: written by the worker */
    for (int i = 0; i < 6 && !st; i++) {
        if (!sz[i]) continue;
        if (!(*bufs[i] = malloc(sz[i]))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory receiving unit %d from rank %d", u->id, src);
            break;
        }
        st = pq_data_recv(c->comm, src, *bufs[i], sz[i], names[i]);
    }
    c->j->t.xfer += pq_now_s() - t0;
    if (!st && !c->err) st = put(c, u, src, &r);
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
            for (int i = 0; i < c->j->plan->n_hash; i++)
                if (c->j->plan->hash[i].rank == src) {
                    chunks++;
                    have += c->j->hash_have[i];
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

pq_status pq_coord_shutdown(MPI_Comm comm, int n_ranks, pq_status st)
{
    pq_status rc = PQ_OK;
    if (stop_sent) return PQ_OK;
    stop_sent = true;
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
    const pq_plan *p = c->j->plan;
    struct stat sb;
    bool any = false;
    for (int r = 1; r < c->n_ranks; r++) any |= same_node[r];
    if (!any) return PQ_OK;
    const char *path = pq_h5w_partial_path(c->j->writer);
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

pq_status pq_coord_run(pq_job *j, MPI_Comm comm, int n_ranks, const pq_coord_opts *o, bool *unresponsive)
{
    coord c = {.j = j, .comm = comm, .n_ranks = n_ranks, .o = o};
    const pq_plan *p = j->plan;
    const struct timespec nap = {0, 500000};
    double t0 = pq_now_s(), stop_t = 0;
    int next_own = 0, next_chunk = 0;
    double kicked_bytes = 0;          /* input bytes (unit cost) written at the last writeback hint */
    int taken = 0;                    /* units taken over from other ranks */
    bool chunks_done = false;
    *unresponsive = false;
    c.received = calloc((size_t)p->n_units + 1, sizeof *c.received);
    c.rank_units = calloc((size_t)n_ranks, sizeof *c.rank_units);
    c.finished = calloc((size_t)n_ranks, sizeof *c.finished);
    c.placed = calloc((size_t)n_ranks, sizeof *c.placed);
    if (!c.received || !c.rank_units || !c.finished || !c.placed) {
        c.err = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    const int width = pq_batch_width(j);
    if (width > 1 && !(c.batch = calloc(1, sizeof *c.batch))) {
        c.err = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    c.err = o->initial_error;
    if (!c.err && o->same_node) c.err = send_layouts(&c, o->same_node);
    for (;;) {
        bool ready, progressed = false;
        MPI_Status s;
        /* Drain whatever has arrived before the next own unit. */
        for (;;) {
            pq_status st = pq_msg_poll(comm, MPI_ANY_SOURCE, MPI_ANY_TAG, &ready, &s);
            if (st) { fail(&c, st); break; }
            if (!ready) break;
            handle(&c, &s);
            progressed = true;
        }
        if (progressed) end_ready(&c);
        /* Units come last, so the output's pages are written out as they
         * fill rather than all in the commit's fsync (a helper thread
         * submits the I/O). */
        if (!c.err && j->bytes_done - kicked_bytes >= WRITEBACK_EVERY_BYTES) {
            pq_h5w_start_writeback(j->writer);
            kicked_bytes = j->bytes_done;
        }
        if (c.err && !stop_sent) {
            /* Stop every rank promptly; keep draining so their final
             * messages (and any result in flight) are taken off the wire. */
            pq_status keep = c.err;
            char detail[1024];
            snprintf(detail, sizeof detail, "%s", pq_err_detail());
            pq_coord_shutdown(comm, n_ranks, keep);
            pq_err_replace(keep, "%s", detail);
            stop_t = pq_now_s();
        }
        if (!c.err && width > 1) {
            /* the same order, a batch of whole items at a time */
            if (step_batch(&c, &next_chunk, &next_own, &taken, width)) continue;
        } else if (!c.err) {
            /* Rank 0's chunks of the source digest first, a chunk per
             * thread between two drains: units come last on every rank, so
             * that whoever runs out of work first can take over the small
             * ones that are left (claims.h). */
            if (!chunks_done) {
                int hashed = 0;
                int64_t chunks[PQ_WIRE_MAX_LEAVES];
                pq_status st = pq_job_hash_own(j, PQ_ROLE_COORD, pq_worker_hash_batch(j), chunks, &hashed);
                if (st) fail(&c, rank0_hash_error(st));
                chunks_done = !hashed && !st;
                continue;
            }
            bool stolen;
            int k = pq_claims_next(o->claims, p, PQ_ROLE_COORD, &next_own, &stolen);
            taken += stolen;
            if (k >= 0) {
                const pq_unit *u = &p->units[k];
                pq_unit_result r;
                /* The kernel reads the next own unit's rows meanwhile. */
                int nx = pq_plan_next_unit(p, next_own, PQ_ROLE_COORD);
                if (nx < p->n_units) pq_job_prefetch_unit(j, &p->units[nx]);
                double tu = pq_now_s();
                pq_status st = pq_worker_run_unit(j, u, PQ_ROLE_COORD, &r);
                j->t.units += pq_now_s() - tu;
                if (!st) st = put(&c, u, PQ_ROLE_COORD, &r);
                pq_unit_result_free(&r);
                if (st) fail(&c, st);
                else pq_worker_after_unit(PQ_ROLE_COORD);
                end_ready(&c);
                continue;
            }
        }
        if (c.n_finished == n_ranks - 1) break;
        if (c.err && pq_now_s() - stop_t > o->stop_grace_s) {
            *unresponsive = true;
            break;
        }
        if (!progressed) {
            /* idle, waiting for the others: push new results to disk */
            if (!c.err && j->bytes_done > kicked_bytes) {
                pq_h5w_start_writeback(j->writer);
                kicked_bytes = j->bytes_done;
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
    j->stats.seconds_quantize = pq_now_s() - t0;
    PQ_LOG_DEBUG("ran %d units, %d of them taken over from other ranks", c.rank_units[PQ_ROLE_COORD], taken);
    /* Every worker that finished normally has taken its layout (a worker
     * receives it at the latest while waiting for the Shutdown, which comes
     * after this). After a failure the sends may never complete: their
     * buffer is left to the process's end. */
    if (c.layout_reqs && !c.err) {
        for (int r = 1; r < n_ranks && !c.err; r++)
            if (c.placed[r]) c.err = pq_data_wait(&c.layout_reqs[r]);
    }
    if (!c.layout_reqs || !c.err) free(c.offsets);
cleanup:
    if (c.batch) pq_batch_clear(c.batch);
    free(c.batch);
    free(c.received);
    free(c.rank_units);
    free(c.finished);
    free(c.placed);
    free(c.layout_reqs);
    return c.err;
}
