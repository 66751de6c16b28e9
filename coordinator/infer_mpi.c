/* SPDX-License-Identifier: Apache-2.0 */
/* infer_mpi.c - chunks of a streamed FASTA over the ranks, results to rank
 * 0's journal as they come, stopped by a signal between chunks (infer_mpi.h). */
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

/* A worker's chunks on their way to rank 0: the rank runs its next chunk
 * into one slot while the chunks of the others are still being taken. */
#define OUTBOX_SLOTS 3
typedef struct outbox {
    pq_buf b[OUTBOX_SLOTS];
    int64_t head[OUTBOX_SLOTS][2];
    MPI_Request req[OUTBOX_SLOTS][2];
    int k; /* the slot the next chunk goes into */
} outbox;

static void outbox_init(outbox *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < OUTBOX_SLOTS; i++) o->req[i][0] = o->req[i][1] = MPI_REQUEST_NULL;
}

static pq_status outbox_wait(outbox *o, int k)
{
    pq_status st = wait_req(&o->req[k][0], "MPI_Isend(chunk)");
    pq_status s2 = wait_req(&o->req[k][1], "MPI_Issend(chunk)");
    return st != PQ_OK ? st : s2;
}

static void outbox_free(outbox *o)
{
    for (int i = 0; i < OUTBOX_SLOTS; i++) pq_buf_free(&o->b[i]);
}

/* Send slot o->k (its chunk's status st: the status and length, then the
 * bytes), then wait until the next slot's send, the oldest, is taken, and
 * move to it. */
static pq_status send_chunk(MPI_Comm comm, outbox *o, pq_status st)
{
    int k = o->k, next = (k + 1) % OUTBOX_SLOTS;
    pq_buf *b = &o->b[k];
    if (st == PQ_OK && b->len > INT_MAX)
        st = pq_err(PQ_ERR_RESOURCE, "a chunk's results (%zu bytes) exceed one message; lower --chunk-residues",
                    b->len);
    o->head[k][0] = st;
    o->head[k][1] = st == PQ_OK ? (int64_t)b->len : 0;
    pq_status s2 = mpi_ok(MPI_Isend(o->head[k], 2, MPI_INT64_T, 0, TAG_HEAD, comm, &o->req[k][0]), "MPI_Isend(chunk)");
    if (st == PQ_OK && s2 == PQ_OK)
        s2 = mpi_ok(MPI_Issend(b->data, (int)b->len, MPI_BYTE, 0, TAG_DATA, comm, &o->req[k][1]), "MPI_Issend(chunk)");
    if (s2 == PQ_OK) s2 = outbox_wait(o, next);
    if (st != PQ_OK && s2 == PQ_OK) s2 = outbox_wait(o, k);
    o->k = next;
    o->b[next].len = 0;
    return st != PQ_OK ? st : s2;
}

/* Rank 0's account of the chunks other ranks run: in chunk order, and per
 * rank a posted receive of the header of the first one not yet taken
 * (a rank's messages arrive in the order it sent them). */
typedef struct inbox_chunk {
    int64_t index, n_seq, residues;
    int owner;
    bool taken;
} inbox_chunk;

typedef struct inbox_rank {
    MPI_Request req;
    int64_t head[2];
    int64_t at; /* the chunk (an index into inbox.c) the receive is for */
} inbox_rank;

typedef struct inbox {
    inbox_chunk *c;
    int64_t n, cap, first; /* c[first..n) holds every chunk not taken */
    inbox_rank *r;         /* one per rank */
    int N;
} inbox;

static pq_status inbox_init(inbox *in, int N)
{
    memset(in, 0, sizeof *in);
    in->N = N;
    if (!(in->r = calloc((size_t)N, sizeof *in->r))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int i = 0; i < N; i++) in->r[i].req = MPI_REQUEST_NULL;
    return PQ_OK;
}

static void inbox_free(inbox *in)
{
    free(in->c);
    free(in->r);
}

/* The first chunk of rank o at or after c[from], or -1. */
static int64_t inbox_next_of(const inbox *in, int o, int64_t from)
{
    for (int64_t i = from; i < in->n; i++)
        if (in->c[i].owner == o && !in->c[i].taken) return i;
    return -1;
}

static pq_status inbox_post(MPI_Comm comm, inbox *in, int o, int64_t at)
{
    in->r[o].at = at;
    return mpi_ok(MPI_Irecv(in->r[o].head, 2, MPI_INT64_T, o, TAG_HEAD, comm, &in->r[o].req), "MPI_Irecv(chunk)");
}

/* A chunk that rank ch.owner runs: counted, and its header awaited if it is
 * that rank's first outstanding one. */
static pq_status inbox_add(MPI_Comm comm, inbox *in, int64_t index, int owner, int64_t n_seq, int64_t residues)
{
    if (in->first > 0 && in->first >= in->n / 2) { /* drop the taken chunks */
        memmove(in->c, in->c + in->first, (size_t)(in->n - in->first) * sizeof *in->c);
        for (int o = 0; o < in->N; o++)
            if (in->r[o].req != MPI_REQUEST_NULL) in->r[o].at -= in->first;
        in->n -= in->first;
        in->first = 0;
    }
    if (in->n == in->cap) {
        int64_t cap = in->cap ? 2 * in->cap : 64;
        inbox_chunk *c = realloc(in->c, (size_t)cap * sizeof *c);
        if (!c) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        in->c = c;
        in->cap = cap;
    }
    in->c[in->n++] = (inbox_chunk){.index = index, .n_seq = n_seq, .residues = residues, .owner = owner};
    return in->r[owner].req == MPI_REQUEST_NULL ? inbox_post(comm, in, owner, in->n - 1) : PQ_OK;
}

typedef pq_status (*inbox_put_fn)(void *user, const inbox_chunk *c, const pq_buf *b);

/* Take rank o's chunk whose header came: its bytes (already on their way,
 * so the wait is short), handed to put; then await the rank's next one. */
static pq_status inbox_take(MPI_Comm comm, inbox *in, int o, pq_buf *b, inbox_put_fn put, void *user)
{
    inbox_rank *r = &in->r[o];
    inbox_chunk *c = &in->c[r->at];
    MPI_Request req;
    if (r->head[0] != PQ_OK)
        return pq_err((pq_status)r->head[0], "rank %d failed on chunk %lld (its message above)", o,
                      (long long)c->index);
    b->len = 0;
    pq_status st = pq_buf_put(b, NULL, (size_t)r->head[1]);
    if (!st) st = mpi_ok(MPI_Irecv(b->data, (int)r->head[1], MPI_BYTE, o, TAG_DATA, comm, &req), "MPI_Irecv(chunk)");
    if (!st) st = wait_req(&req, "MPI_Irecv(chunk)");
    if (!st) st = put(user, c, b);
    if (st) return st;
    c->taken = true;
    while (in->first < in->n && in->c[in->first].taken) in->first++;
    int64_t next = inbox_next_of(in, o, r->at + 1);
    return next >= 0 ? inbox_post(comm, in, o, next) : PQ_OK;
}

/* Take every chunk whose header came (wait: until none is outstanding). */
static pq_status inbox_drain(MPI_Comm comm, inbox *in, bool wait, pq_buf *b, inbox_put_fn put, void *user)
{
    for (long ns = 20000;;) {
        bool any = false, took = false;
        for (int o = 0; o < in->N; o++) {
            int done = 0;
            if (in->r[o].req == MPI_REQUEST_NULL) continue;
            any = true;
            pq_status st = mpi_ok(MPI_Test(&in->r[o].req, &done, MPI_STATUS_IGNORE), "MPI_Irecv(chunk)");
            if (!st && done) {
                st = inbox_take(comm, in, o, b, put, user);
                took = true;
            }
            if (st) return st;
        }
        if (!any || !wait) return PQ_OK;
        if (took) ns = 20000;
        else nanosleep(&(struct timespec){0, ns}, NULL);
        if (!took && ns < 2000000) ns *= 2;
    }
}

/* The stop vote: at the first chunk of every round of N pending chunks
 * each rank offers whether a stop signal came (a nonblocking allreduce)
 * and learns the answer of the offer made VOTE_LAG rounds before, so that
 * a rank waits for another only when it is that many rounds ahead. */
#define VOTE_LAG 4
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

/* Rank 0's end of a chunk, its own or received: into the journal, then
 * counted. */
typedef struct rank0 {
    pq_journal *j;
    pq_infer_progress prog;
    pq_monitor *mon;
    int64_t n_done, chunk_total;
    int N;
} rank0;

static pq_status put_chunk(void *user, const inbox_chunk *c, const pq_buf *b)
{
    rank0 *z = user;
    pq_status st = pq_journal_add_block(z->j, c->index, b->data, b->len);
    if (st) return st;
    pq_infer_progress_add(&z->prog, c->n_seq, c->residues, false);
    publish(z->mon, "unit", &z->prog, ++z->n_done, z->chunk_total, c->index, c->owner, z->N);
    return PQ_OK;
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
    int64_t seq_total = 0, res_total = 0, n_records = 0, n_known = 0, n_pending = 0;
    unsigned char *done = NULL;
    rank0 z = {.N = N};
    pq_status st = open_and_share(comm, rank, r, &z.j, &done, &n_known);
    if (st == PQ_OK && rank == 0 && (!r->quiet || r->monitor))
        st = count_input(r, &seq_total, &res_total, &z.chunk_total);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto fail;
    for (int64_t i = 0; i < n_known; i++) *n_resumed += done[i];
    if (rank == 0) {
        if (*n_resumed)
            PQ_LOG_INFO("resuming: %lld chunks from %s%s", (long long)*n_resumed, pq_journal_path(z.j),
                        pq_journal_n_bad(z.j) ? " (records that failed their checksum are redone)" : "");
        pq_infer_progress_init(&z.prog, stderr, r->quiet, seq_total, res_total);
        if (r->monitor && (z.mon = pq_monitor_open(r->monitor, 0)))
            publish(z.mon, "start", &z.prog, 0, z.chunk_total, -1, -1, N);
    }
    pq_chunker *c = NULL;
    pq_buf b = {0}; /* rank 0's */
    outbox ob;
    inbox in;
    outbox_init(&ob);
    stop_vote vote[VOTE_LAG];
    for (int i = 0; i < VOTE_LAG; i++) vote[i] = (stop_vote){.req = MPI_REQUEST_NULL};
    st = inbox_init(&in, N);
    if (!st) st = pq_chunker_open(r->fasta, &r->fo, r->chunk_residues, r->max_records, &c);
    for (int64_t ci = 0; st == PQ_OK; ci++) {
        bool resumed = ci < n_known && done[ci];
        int owner = resumed ? -1 : (int)(n_pending % N);
        pq_chunk ch;
        bool got, stop = false;
        if ((st = pq_chunker_next(c, owner == rank, &ch, &got)) != PQ_OK || !got) break;
        n_records += ch.n;
        if (resumed) {
            if (rank == 0) pq_infer_progress_add(&z.prog, ch.n, ch.residues, true);
            if (rank == 0) publish(z.mon, "unit", &z.prog, ++z.n_done, z.chunk_total, ci, -1, N);
            continue;
        }
        int64_t k = n_pending++;
        if (k % N == 0 && (st = stop_vote_round(comm, &vote[k / N % VOTE_LAG], &stop)) == PQ_OK && stop)
            st = pq_stop_check();
        if (st != PQ_OK) break;
        pq_status cs = PQ_OK;
        if (owner == rank) {
            if (pq_fault_at(PQ_FAULT_SLOW_RANK, rank)) nanosleep(&(struct timespec){0, 200000000}, NULL);
            b.len = 0;
            cs = fn(user, &ch, rank ? &ob.b[ob.k] : &b);
            if (rank != 0) cs = send_chunk(comm, &ob, cs);
            else if (cs == PQ_OK)
                cs = put_chunk(&z, &(inbox_chunk){.index = ci, .n_seq = ch.n, .residues = ch.residues, .owner = 0}, &b);
        } else if (rank == 0) {
            cs = inbox_add(comm, &in, ci, owner, ch.n, ch.residues);
        }
        if (rank == 0 && cs == PQ_OK) cs = inbox_drain(comm, &in, false, &b, put_chunk, &z);
        if (cs != PQ_OK) abort_run(comm, rank, cs);
    }
    /* the chunks before the stopping point, all of them run */
    if (rank == 0) {
        pq_status ds = inbox_drain(comm, &in, true, &b, put_chunk, &z);
        if (ds != PQ_OK) abort_run(comm, rank, ds);
    }
    for (int i = 0; i < VOTE_LAG; i++)
        if (vote[i].req != MPI_REQUEST_NULL) {
            pq_status vs = wait_req(&vote[i].req, "MPI_Iallreduce(stop)");
            if (vs != PQ_OK) abort_run(comm, rank, vs);
        }
    if (st == PQ_ERR_INTERRUPTED && rank == 0)
        PQ_LOG_INFO("stopping: %d chunks are in %s", pq_journal_n_done(z.j), pq_journal_path(z.j));
    if (rank == 0) {
        pq_infer_progress_done(&z.prog);
        publish(z.mon, st == PQ_OK ? "finished" : "error", &z.prog, z.chunk_total, z.chunk_total, -1, -1, N);
        pq_monitor_close(z.mon);
    }
    if (rank != 0)
        for (int k = 0; k < OUTBOX_SLOTS; k++) {
            pq_status ws = outbox_wait(&ob, k);
            if (ws != PQ_OK) abort_run(comm, rank, ws);
        }
    pq_buf_free(&b);
    outbox_free(&ob);
    inbox_free(&in);
    pq_chunker_close(c);
    if (st == PQ_OK && !n_records) st = pq_err(PQ_ERR_FORMAT, "%s: no usable record", r->fasta);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto fail;
    free(done);
    *jp = z.j;
    return PQ_OK;
fail:
    free(done);
    pq_infer_mpi_end(z.j, st, !r->discard);
    return st;
}
