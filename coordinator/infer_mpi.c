/* SPDX-License-Identifier: Apache-2.0 */
/* infer_mpi.c - chunks of a streamed FASTA over the ranks, results to rank
 * 0's journal in order, stopped by a signal between chunks (infer_mpi.h). */
#include "coordinator/infer_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/pq_clock.h"
#include "base/pq_fault.h"
#include "coordinator/infer_progress.h"
#include "coordinator/monitor.h"
#include "worker/stop.h"
#include "worker/sync.h"

enum { TAG_HEAD = 0x5049, TAG_DATA };

/* Rank 0's first pass over the input: sequences and residues, for the
 * progress line's totals. */
static pq_status count_input(const pq_infer_run *r, int64_t *n_seq, int64_t *n_res, int64_t *n_chunks)
{
    pq_chunker *c = NULL;
    pq_status st = pq_chunker_open(r->fasta, &r->fo, r->chunk_residues, r->max_records, &c);
    pq_chunk ch;
    bool got = true;
    *n_seq = *n_res = *n_chunks = 0;
    while (st == PQ_OK && (st = pq_chunker_next(c, false, &ch, &got)) == PQ_OK && got) {
        ++*n_chunks;
        *n_seq += ch.n;
        *n_res += ch.residues;
    }
    pq_chunker_close(c);
    return st;
}

/* A ZeroMQ progress event (m NULL: none): units are chunks, bytes residues. */
static void publish(pq_monitor *m, const char *kind, const pq_infer_progress *p, int64_t done, int64_t total,
                    int64_t chunk, int owner, int N)
{
    if (!m) return;
    pq_progress ev = {.phase = "infer", .units_done = (int)done, .units_total = (int)total,
                      .bytes_done = (double)p->res_done, .bytes_total = (double)p->res_total,
                      .elapsed_s = pq_now_s() - p->t0};
    pq_monitor_publish(m, kind, &ev, (int)chunk, owner, N, PQ_OK, NULL);
}

/* A failure with chunks in flight: ranks may be blocked sending to rank 0,
 * so the job ends here; the journal keeps what was written. */
static _Noreturn void abort_run(MPI_Comm comm, int rank, pq_status st)
{
    const char *d = pq_err_detail();
    fprintf(stderr, "proteus: %s%s%s%s\n", rank ? "rank " : "", pq_strerror(st), *d ? ": " : "", d);
    fflush(stderr);
    MPI_Abort(comm, pq_status_exit_code(st));
    exit(pq_status_exit_code(st));
}

static pq_status mpi_ok(int rc, const char *what)
{
    return rc == MPI_SUCCESS ? PQ_OK : pq_err(PQ_ERR_MPI, "%s failed", what);
}

/* Complete a request without spinning (a chunk takes seconds: backing off
 * to 2 ms). */
static pq_status wait_req(MPI_Request *req, const char *what)
{
    return pq_sync_wait_quiet(req, 2000000, what);
}

/* A worker's chunks on their way to rank 0, double-buffered: the rank runs
 * its next chunk into one buffer while the other is still being sent. */
typedef struct outbox {
    pq_buf b[2];
    int64_t head[2][2];
    MPI_Request req[2][2];
    int k; /* the buffer the next chunk goes into */
} outbox;

static void outbox_init(outbox *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < 4; i++) o->req[i / 2][i % 2] = MPI_REQUEST_NULL;
}

static pq_status outbox_wait(outbox *o, int k)
{
    pq_status st = wait_req(&o->req[k][0], "MPI_Isend(chunk)");
    pq_status s2 = wait_req(&o->req[k][1], "MPI_Issend(chunk)");
    return st != PQ_OK ? st : s2;
}

/* Send buffer o->k (its chunk's status st: the status and length, then the
 * bytes), then wait until the other buffer's send is taken, and switch. */
static pq_status send_chunk(MPI_Comm comm, outbox *o, pq_status st)
{
    int k = o->k;
    pq_buf *b = &o->b[k];
    if (st == PQ_OK && b->len > INT_MAX)
        st = pq_err(PQ_ERR_RESOURCE, "a chunk's results (%zu bytes) exceed one message; lower --chunk-residues",
                    b->len);
    o->head[k][0] = st;
    o->head[k][1] = st == PQ_OK ? (int64_t)b->len : 0;
    pq_status s2 = mpi_ok(MPI_Isend(o->head[k], 2, MPI_INT64_T, 0, TAG_HEAD, comm, &o->req[k][0]), "MPI_Isend(chunk)");
    if (st == PQ_OK && s2 == PQ_OK)
        s2 = mpi_ok(MPI_Issend(b->data, (int)b->len, MPI_BYTE, 0, TAG_DATA, comm, &o->req[k][1]), "MPI_Issend(chunk)");
    if (s2 == PQ_OK) s2 = outbox_wait(o, k ^ 1);
    if (st != PQ_OK && s2 == PQ_OK) s2 = outbox_wait(o, k);
    o->k = k ^ 1;
    o->b[o->k].len = 0;
    return st != PQ_OK ? st : s2;
}

static pq_status recv_chunk(MPI_Comm comm, int src, int64_t index, pq_buf *b)
{
    int64_t head[2];
    MPI_Request req;
    pq_status st = mpi_ok(MPI_Irecv(head, 2, MPI_INT64_T, src, TAG_HEAD, comm, &req), "MPI_Irecv(chunk)");
    if (st == PQ_OK) st = wait_req(&req, "MPI_Irecv(chunk)");
    if (st != PQ_OK) return st;
    if (head[0] != PQ_OK)
        return pq_err((pq_status)head[0], "rank %d failed on chunk %lld (its message above)", src, (long long)index);
    b->len = 0;
    if ((st = pq_buf_put(b, NULL, (size_t)head[1])) != PQ_OK) return st;
    if ((st = mpi_ok(MPI_Irecv(b->data, (int)head[1], MPI_BYTE, src, TAG_DATA, comm, &req), "MPI_Irecv(chunk)")))
        return st;
    return wait_req(&req, "MPI_Irecv(chunk)");
}

/* The stop vote: at the first chunk of every round of N pending chunks
 * each rank offers whether a stop signal came (a nonblocking allreduce)
 * and learns the answer to the previous round's offer, so no rank waits
 * for another to reach the same chunk. */
typedef struct stop_vote {
    MPI_Request req;
    int mine, any;
} stop_vote;

static pq_status stop_vote_round(MPI_Comm comm, stop_vote *v, bool *stop)
{
    *stop = false;
    if (v->req != MPI_REQUEST_NULL) {
        pq_status st = wait_req(&v->req, "MPI_Iallreduce(stop)");
        if (st != PQ_OK) return st;
        if ((*stop = v->any != 0)) return PQ_OK;
    }
    v->mine = pq_stop_signal() != 0;
    return mpi_ok(MPI_Iallreduce(&v->mine, &v->any, 1, MPI_INT, MPI_MAX, comm, &v->req), "MPI_Iallreduce(stop)");
}

/* Rank 0 opens the journal and learns its chunks; every rank gets them:
 * *done[0..*n_known) (owned). */
static pq_status open_and_share(MPI_Comm comm, int rank, const pq_infer_run *r, pq_journal **jp,
                                unsigned char **done, int64_t *n_known)
{
    pq_status st = PQ_OK;
    int64_t k = 0;
    if (rank == 0 && !r->header) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (rank == 0 && !st) st = pq_journal_open_blocks(r->out, r->resume, r->header, PQ_JOURNAL_ANY_BLOCKS, jp);
    if (rank == 0 && !st) k = pq_journal_n_blocks(*jp);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) return st;
    if ((st = mpi_ok(MPI_Bcast(&k, 1, MPI_INT64_T, 0, comm), "MPI_Bcast(journal chunks)"))) return st;
    if (!(*done = calloc((size_t)k + 1, 1))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; st == PQ_OK && rank == 0 && i < k; i++) (*done)[i] = pq_journal_done(*jp)[i];
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) return st;
    *n_known = k;
    return mpi_ok(MPI_Bcast(*done, (int)k, MPI_UNSIGNED_CHAR, 0, comm), "MPI_Bcast(journal chunks)");
}

void pq_infer_mpi_end(pq_journal *j, pq_status st, bool keep)
{
    bool passing = st == PQ_ERR_INTERRUPTED || st == PQ_ERR_MPI || st == PQ_ERR_IO || st == PQ_ERR_RESOURCE;
    if (keep && st != PQ_OK && passing && pq_journal_n_done(j)) pq_journal_close(j);
    else pq_journal_remove(j);
}

pq_status pq_infer_mpi_run(MPI_Comm comm, const pq_infer_run *r, pq_infer_chunk_fn fn, void *user,
                           pq_journal **jp, int64_t *n_resumed)
{
    int rank, N;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &N);
    *jp = NULL;
    *n_resumed = 0;
    pq_stop_catch(); /* SIGUSR1, SIGTERM: stop between chunks */
    int64_t seq_total = 0, res_total = 0, chunk_total = 0, n_records = 0, n_known = 0, n_pending = 0;
    unsigned char *done = NULL;
    pq_journal *j = NULL;
    pq_status st = open_and_share(comm, rank, r, &j, &done, &n_known);
    if (st == PQ_OK && rank == 0 && (!r->quiet || r->monitor))
        st = count_input(r, &seq_total, &res_total, &chunk_total);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto fail;
    for (int64_t i = 0; i < n_known; i++) *n_resumed += done[i];
    pq_infer_progress prog;
    pq_monitor *mon = NULL;
    if (rank == 0) {
        if (*n_resumed)
            PQ_LOG_INFO("resuming: %lld chunks from %s%s", (long long)*n_resumed, pq_journal_path(j),
                        pq_journal_n_bad(j) ? " (records that failed their checksum are redone)" : "");
        pq_infer_progress_init(&prog, stderr, r->quiet, seq_total, res_total);
        if (r->monitor && (mon = pq_monitor_open(r->monitor, 0)))
            publish(mon, "start", &prog, 0, chunk_total, -1, -1, N);
    }
    pq_chunker *c = NULL;
    pq_buf b = {0}; /* rank 0's */
    outbox ob;
    outbox_init(&ob);
    stop_vote vote = {.req = MPI_REQUEST_NULL};
    st = pq_chunker_open(r->fasta, &r->fo, r->chunk_residues, r->max_records, &c);
    for (int64_t ci = 0; st == PQ_OK; ci++) {
        bool resumed = ci < n_known && done[ci];
        int owner = resumed ? -1 : (int)(n_pending % N);
        pq_chunk ch;
        bool got, stop = false;
        if ((st = pq_chunker_next(c, owner == rank, &ch, &got)) != PQ_OK || !got) break;
        n_records += ch.n;
        if (resumed) {
            if (rank == 0) pq_infer_progress_add(&prog, ch.n, ch.residues, true);
            if (rank == 0) publish(mon, "unit", &prog, ci + 1, chunk_total, ci, -1, N);
            continue;
        }
        if (n_pending++ % N == 0 && (st = stop_vote_round(comm, &vote, &stop)) == PQ_OK && stop)
            st = pq_stop_check();
        if (st != PQ_OK) break;
        if (owner != rank && rank != 0) continue;
        b.len = 0;
        if (owner == rank && pq_fault_at(PQ_FAULT_SLOW_RANK, rank)) nanosleep(&(struct timespec){0, 200000000}, NULL);
        pq_status cs = owner != rank ? recv_chunk(comm, owner, ci, &b) : fn(user, &ch, rank ? &ob.b[ob.k] : &b);
        if (rank != 0) cs = send_chunk(comm, &ob, cs);
        else if (cs == PQ_OK) cs = pq_journal_add_block(j, ci, b.data, b.len);
        if (cs != PQ_OK) abort_run(comm, rank, cs);
        if (rank == 0) pq_infer_progress_add(&prog, ch.n, ch.residues, false);
        if (rank == 0) publish(mon, "unit", &prog, ci + 1, chunk_total, ci, owner, N);
    }
    if (vote.req != MPI_REQUEST_NULL) {
        pq_status vs = wait_req(&vote.req, "MPI_Iallreduce(stop)");
        if (vs != PQ_OK) abort_run(comm, rank, vs);
    }
    if (st == PQ_ERR_INTERRUPTED && rank == 0)
        PQ_LOG_INFO("stopping: %d chunks are in %s", pq_journal_n_done(j), pq_journal_path(j));
    if (rank == 0) {
        pq_infer_progress_done(&prog);
        publish(mon, st == PQ_OK ? "finished" : "error", &prog, chunk_total, chunk_total, -1, -1, N);
        pq_monitor_close(mon);
    }
    if (rank != 0) {
        pq_status ws = outbox_wait(&ob, 0), w1 = outbox_wait(&ob, 1);
        if (ws != PQ_OK || w1 != PQ_OK) abort_run(comm, rank, ws != PQ_OK ? ws : w1);
    }
    pq_buf_free(&b);
    pq_buf_free(&ob.b[0]);
    pq_buf_free(&ob.b[1]);
    pq_chunker_close(c);
    if (st == PQ_OK && !n_records) st = pq_err(PQ_ERR_FORMAT, "%s: no usable record", r->fasta);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto fail;
    free(done);
    *jp = j;
    return PQ_OK;
fail:
    free(done);
    pq_infer_mpi_end(j, st, !r->discard);
    return st;
}
