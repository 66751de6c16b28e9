/* SPDX-License-Identifier: Apache-2.0 */
/* worker.c - run this rank's units and ship the results to rank 0.
 *
 * Protocol per worker: (UnitResult header + raw buffers)* then exactly one
 * final message, Done or Error; then rank 0 answers with one Shutdown. A
 * Shutdown that arrives early (stop = true) ends the unit loop. */
#include "base/pq_clock.h"
#include "worker/worker.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/direct.h"
#include "base/log.h"
#include "proto/msg.h"
#include "worker/unit_batch.h"

/* Test-only fault injection, deliberately left out of --help:
 *   PQ_TEST_FAIL_UNIT=<id>  the rank that runs unit <id> fails it with PQ_ERR_IO;
 *   PQ_TEST_SLOW_RANK=<r>   rank r sleeps 20 ms before each unit it runs (the
 *                           others then take over its last units, claims.h);
 *   PQ_TEST_KILL_RANK=<r>   rank r raises SIGKILL after its first unit;
 *   PQ_TEST_FAIL_HASH=<r>   rank r fails hashing its first source chunk with
 *                           PQ_ERR_IO (pq_job_hash_own);
 *   PQ_TEST_FAKE_PLACED=<r> rank r claims codes_in_file without writing them
 *                           (rank 0 must reject it unless it sent r a layout);
 *   PQ_TEST_HASH_CHUNK_BYTES=<n>  cut the source digest into n-byte chunks
 *                           (many chunks from a small model; the output
 *                           records the size in source_hash_chunk_bytes).
 * The MPI tests use them to check that failures stop every rank and that
 * the digest does not depend on the rank count. */
static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

pq_status pq_worker_run_unit(pq_job *j, const pq_unit *u, int rank, pq_unit_result *r)
{
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    if (env_int("PQ_TEST_FAIL_UNIT", -1) == u->id) {
        memset(r, 0, sizeof *r);
        return pq_err(PQ_ERR_IO, "rank %d, unit %d (tensor '%s' rows %lld..%lld): injected read "
                      "failure (PQ_TEST_FAIL_UNIT)", rank, u->id, pt->st->name, (long long)u->row0,
                      (long long)(u->row0 + u->n_rows - 1));
    }
    if (env_int("PQ_TEST_SLOW_RANK", -1) == rank) {
        const struct timespec slow = {0, 20000000};
        nanosleep(&slow, NULL);
    }
    pq_status st = pq_job_run_unit(j, u, r);
    if (st) {
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", pq_err_detail());
        pq_err_replace(st, "rank %d, unit %d (tensor '%s' rows %lld..%lld): %s", rank, u->id,
                       pt->st->name, (long long)u->row0, (long long)(u->row0 + u->n_rows - 1), detail);
    }
    return st;
}

/* Cost of writing one output byte on rank 0 while the others still work
 * (float tensors, receiving and writing unit results; the commit comes after
 * everyone and does not count), in the units' measure (one fp32 input byte
 * of RTN). Chosen from the --verbose phases of esm2_t30_150M on 2 ranks of
 * the 2-core build machine: at 1.0 both ranks finish their planned work
 * within 2 % of each other (at 2.0 rank 0 idled 20 % of the phase). A
 * constant, not a run-time measurement: every rank must compute the same
 * plan. Hash chunks cost PQ_PLAN_HASH_COST_PER_BYTE. */
#define WRITE_COST_PER_BYTE 1.0

/* Rank 0's cost of creating one stored tensor's datasets and writing a
 * small float tensor, whatever its bytes (HDF5 object headers, dataspace
 * and allocation), in the same measure: esm2_t30_150M's 520 tensors took
 * rank 0 0.036 s of set-up and float writes on the build machine, as much
 * as RTN of ~200 kB of fp32 input per tensor. Without it rank 0, which
 * also hashes and quantizes, finished its planned work 30-50 ms after rank
 * 1 on 2 ranks. */
#define SETUP_COST_PER_TENSOR 2.0e5

/* Rank 0's cost of writing one quantized tensor's metrics (a group of six
 * attributes, ~50 us), in the same measure: rank 0 writes them between its
 * units as tensors complete (pq_job_end_next), instead of all of them in the
 * commit after everyone. */
#define METRICS_COST_PER_TENSOR 1.9e5

void pq_worker_assign(pq_job *j, int n_ranks, const bool *same_node)
{
    const pq_plan *p = j->plan;
    long test_chunk = (long)env_int("PQ_TEST_HASH_CHUNK_BYTES", 0);
    if (test_chunk > 0) pq_job_set_hash_chunks(j, test_chunk); /* a failure leaves the default */
    double *pre = calloc((size_t)(n_ranks > 1 ? n_ranks : 1), sizeof *pre);
    if (pre && n_ranks > 1) {
        /* Ranks on rank 0's machine write their own codes (pq_direct), as
         * rank 0 does: that part is in every rank's units alike. Rank 0
         * writes the rest: float tensors, scales, and the codes of ranks on
         * other machines, taken as their share of the units. */
        int remote = 0;
        for (int r = 1; r < n_ranks; r++) remote += !(same_node && same_node[r]);
        double out = 0, stored = 0, quantized = 0;
        for (int i = 0; i < p->n_tensors; i++) {
            const pq_plan_tensor *pt = &p->tensors[i];
            if (pt->action == PQ_ACT_FLOAT) out += (double)pt->st->n_bytes;
            stored += pt->action != PQ_ACT_DROP;
            quantized += pt->action == PQ_ACT_QUANT;
        }
        for (int i = 0; i < p->n_units; i++) {
            size_t sz[6];
            pq_worker_result_sizes(j, &p->units[i], sz);
            out += (double)sz[0] * remote / n_ranks + (double)(sz[1] + sz[2]);
        }
        pre[PQ_ROLE_COORD] = WRITE_COST_PER_BYTE * out + SETUP_COST_PER_TENSOR * stored +
                             METRICS_COST_PER_TENSOR * quantized;
    }
    pq_plan_assign_loaded(j->plan, n_ranks, pre);
    PQ_LOG_DEBUG("plan: %d units and %d digest chunks on %d ranks; %.0f%% of the units' bytes are "
                 "quantized by the rank that hashes them", p->n_units, p->n_hash, n_ranks,
                 100.0 * pq_plan_colocated(p));
    free(pre);
    j->defer_source_hash = true;
}

void pq_worker_after_unit(int rank)
{
    if (env_int("PQ_TEST_KILL_RANK", -1) == rank) raise(SIGKILL);
}

int pq_worker_result_sizes(const pq_job *j, const pq_unit *u, size_t sizes[6])
{
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    const pq_qspec *s = &j->plan->spec;
    /* Same layout as pq_job_run_unit produces (job.c): 8-bit one byte per
     * code, 4-bit two codes per byte, each row packed on its own. */
    int64_t row_bytes = s->bits == 8 ? pt->cols : (pt->cols + 1) / 2;
    int64_t n_scales = s->gran == PQ_GRAN_TENSOR ? 1 : u->n_rows * pq_qspec_groups(s, pt->cols);
    sizes[0] = (size_t)(u->n_rows * row_bytes);
    sizes[1] = (size_t)n_scales * sizeof(float);
    sizes[2] = s->symmetric ? 0 : (size_t)n_scales * sizeof(int32_t);
    sizes[3] = (size_t)u->n_rows * sizeof(double);
    sizes[4] = (size_t)u->n_rows * sizeof(double);
    sizes[5] = (size_t)u->n_rows * sizeof(float);
    return 6;
}

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
static pq_status send_result(MPI_Comm comm, int rank, const pq_job *j, const pq_unit *u,
                             const pq_unit_result *r, bool placed, pq_data_reqs *reqs)
{
    pq_msg m = {.tag = PQ_TAG_RESULT};
    pq_wire_result *h = &m.u.result;
    size_t sz[6];
    pq_worker_result_sizes(j, u, sz);
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
    if ((uint64_t)r->code_bytes != sz[0] || r->n_scales * (int64_t)sizeof(float) != (int64_t)sz[1])
        return pq_err(PQ_ERR_INTERNAL, "unit %d: result sizes differ from the plan", u->id);
    if (placed || env_int("PQ_TEST_FAKE_PLACED", -1) == rank) {
        h->codes_in_file = true;
        sz[0] = 0;
    }
    pq_status st = pq_msg_send(comm, PQ_ROLE_COORD, &m);
    if (st) return st;
    const void *bufs[6] = {r->codes, r->scale, r->zero_point, r->row_sum_sq, r->row_err_sq, r->row_max_err};
    reqs->n = 0;
    for (int i = 0; i < 6 && !st; i++)
        if (sz[i]) st = pq_data_isend(comm, PQ_ROLE_COORD, bufs[i], sz[i], reqs);
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

/* A free slot if one is (or becomes) free now, else *slot = -1. */
static pq_status try_slot(in_flight *f, int *slot)
{
    pq_status st = reap(f, false);
    *slot = -1;
    for (int k = 0; k < MAX_IN_FLIGHT; k++)
        if (!f[k].used) { *slot = k; break; }
    return st;
}

/* A free slot, waiting for the oldest send when all are busy. */
static pq_status free_slot(in_flight *f, int *slot)
{
    pq_status st = try_slot(f, slot);
    if (st || *slot >= 0) return st;
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

int pq_worker_hash_batch(const pq_job *j)
{
    int batch = j->hash_threads < 1 ? 1 : j->hash_threads;
    return batch > PQ_WIRE_MAX_LEAVES ? PQ_WIRE_MAX_LEAVES : batch;
}

/* Hash one batch of this rank's chunks (a chunk per thread) and send their
 * leaves in one HashLeaves; *n 0 when none is left. A hashing failure is
 * returned in *local; the return is a failed MPI call's status. */
static pq_status hash_batch(pq_job *j, MPI_Comm comm, int rank, int *n, pq_status *local)
{
    int64_t chunks[PQ_WIRE_MAX_LEAVES];
    *n = 0;
    if ((*local = pq_job_hash_own(j, rank, pq_worker_hash_batch(j), chunks, n)) || !*n) return PQ_OK;
    pq_msg lm = {.tag = PQ_TAG_LEAVES};
    lm.u.leaves.rank = (uint32_t)rank;
    lm.u.leaves.n = *n;
    for (int k = 0; k < *n; k++) {
        lm.u.leaves.chunk[k] = (uint32_t)chunks[k];
        memcpy(lm.u.leaves.leaf[k], j->hash_leaves + (size_t)chunks[k] * PQ_WIRE_LEAF_BYTES, PQ_WIRE_LEAF_BYTES);
    }
    double t0 = pq_now_s();
    pq_status st = pq_msg_send(comm, PQ_ROLE_COORD, &lm);
    j->t.xfer += pq_now_s() - t0;
    return st;
}

/* Unit u's result, held by slot f: its codes into the file first when this
 * rank writes them itself (rank 0 commits only after every header has
 * arrived), then the header and the rest to rank 0. A failed write frees
 * the result. */
static pq_status ship_unit(pq_job *j, MPI_Comm comm, int rank, const coord_news *cn, in_flight *f,
                           const pq_unit *u)
{
    double t1 = pq_now_s();
    bool placed = cn->direct.fd >= 0;
    pq_status st = PQ_OK;
    if (placed) {
        st = pq_direct_write(&cn->direct, j, u, &f->r, rank);
        double t2 = pq_now_s();
        j->t.write += t2 - t1;
        t1 = t2;
    }
    if (!st) {
        f->used = true;
        st = send_result(comm, rank, j, u, &f->r, placed, &f->reqs);
    } else {
        pq_unit_result_free(&f->r);
    }
    j->t.xfer += pq_now_s() - t1;
    return st;
}

/* A worker with several threads (unit_batch.h): this thread ships each
 * finished item between its own. */
typedef struct shipper {
    pq_job *j;
    MPI_Comm comm;
    int rank;
    coord_news *cn;
    in_flight *fl;
    pq_msg *fin;          /* a failure goes here */
    pq_msg leaves;        /* leaves not sent yet */
    uint32_t hashed, units;
    pq_status mpi;        /* a failed HashLeaves send: the job aborts */
} shipper;

static void send_leaves(shipper *w)
{
    if (!w->leaves.u.leaves.n || w->mpi) return;
    double t0 = pq_now_s();
    w->mpi = pq_msg_send(w->comm, PQ_ROLE_COORD, &w->leaves);
    w->j->t.xfer += pq_now_s() - t0;
    w->hashed += (uint32_t)w->leaves.u.leaves.n;
    w->leaves.u.leaves.n = 0;
}

/* A finished chunk's leaf joins the next HashLeaves; a finished unit's
 * codes go into the file or to rank 0 with the rest of its result.
 * Failures are reported once the batch is over. */
static void ship_one(void *user, pq_unit_batch *b, int i)
{
    shipper *w = user;
    if (b->st[i] || w->mpi || w->fin->tag != PQ_TAG_DONE) return;
    if (b->item[i] < 0) {
        const int64_t c = -(int64_t)b->item[i] - 1;
        pq_wire_leaves *l = &w->leaves.u.leaves;
        l->chunk[l->n] = (uint32_t)c;
        memcpy(l->leaf[l->n++], w->j->hash_leaves + (size_t)c * PQ_WIRE_LEAF_BYTES, PQ_WIRE_LEAF_BYTES);
        if (l->n == PQ_WIRE_MAX_LEAVES) send_leaves(w);
        return;
    }
    const pq_unit *u = &w->j->plan->units[b->item[i]];
    int slot = -1;
    double t0 = pq_now_s();
    pq_status st = free_slot(w->fl, &slot);
    w->j->t.xfer += pq_now_s() - t0;
    if (!st) {
        /* the slot owns the result until its sends complete */
        w->fl[slot].r = b->r[i];
        memset(&b->r[i], 0, sizeof b->r[i]);
        st = ship_unit(w->j, w->comm, w->rank, w->cn, &w->fl[slot], u);
    }
    if (st) {
        set_error(w->fin, w->rank, u->id, st);
        return;
    }
    w->units++;
    pq_worker_after_unit(w->rank);
}

/* This rank's chunks, then its units (own, then taken over), a batch at a
 * time. Returns a failed MPI call's status; other failures go to fin. */
static pq_status run_batched(shipper *w, pq_claims *claims, int width, int *taken)
{
    pq_status st = PQ_OK;
    pq_unit_batch *b = calloc(1, sizeof *b);
    int next_chunk = 0, own = 0;
    w->leaves = (pq_msg){.tag = PQ_TAG_LEAVES};
    w->leaves.u.leaves.rank = (uint32_t)w->rank;
    if (!b) {
        set_error(w->fin, w->rank, -1, pq_err(PQ_ERR_RESOURCE, "rank %d: out of memory", w->rank));
        return PQ_OK;
    }
    while (w->fin->tag == PQ_TAG_DONE && !w->cn->got_shutdown) {
        if ((st = poll_coord(w->j, w->comm, w->rank, w->cn, false, false))) {
            if (st == PQ_ERR_MPI) break;
            set_error(w->fin, w->rank, -1, st);
            st = PQ_OK;
            break;
        }
        if (w->cn->got_shutdown) break;
        pq_batch_fill(b, w->j->plan, claims, w->rank, width, &next_chunk, &own, taken);
        if (!b->n) break;
        pq_batch_run(w->j, w->rank, b, width, ship_one, w);
        send_leaves(w);
        if ((st = w->mpi)) break;
        int unit = -1;
        pq_status bad = pq_batch_status(b, &unit);
        if (bad && w->fin->tag == PQ_TAG_DONE) set_error(w->fin, w->rank, unit, bad);
        pq_batch_clear(b);
    }
    pq_batch_clear(b);
    free(b);
    return st;
}

pq_status pq_worker_main(pq_job *j, MPI_Comm comm, int rank, const char *partial, pq_claims *claims)
{
    pq_status st = PQ_OK;
    coord_news cn = {.direct = PQ_DIRECT_INIT, .partial = partial};
    uint32_t done = 0;
    pq_msg fin = {.tag = PQ_TAG_DONE};
    const pq_plan *p = j->plan;
    in_flight *fl = calloc(MAX_IN_FLIGHT, sizeof *fl);
    if (!fl) return pq_err(PQ_ERR_RESOURCE, "rank %d: out of memory", rank);
    /* The direct returns below follow a failed MPI call: the job aborts, and
     * fl stays allocated on purpose, since MPI may still own its send
     * buffers. A bad message from rank 0 ends the work with an Error. */
    uint32_t hashed = 0;
#define POLL_COORD                                                                                       \
    if ((st = poll_coord(j, comm, rank, &cn, false, false))) {                                           \
        if (st == PQ_ERR_MPI) return st;                                                                 \
        set_error(&fin, rank, -1, st);                                                                   \
        break;                                                                                           \
    }

    const int width = pq_batch_width(j);
    int taken = 0;
    if (width > 1) {
        shipper w = {.j = j, .comm = comm, .rank = rank, .cn = &cn, .fl = fl, .fin = &fin};
        if ((st = run_batched(&w, claims, width, &taken))) return st;
        hashed = w.hashed;
        done = w.units;
    }
    /* This rank's chunks of the source digest first: units come last on
     * every rank, so that whoever runs out of work first can take over the
     * small ones that are left (claims.h). */
    while (width == 1 && fin.tag == PQ_TAG_DONE && !cn.got_shutdown) {
        int n = 0;
        pq_status local = PQ_OK;
        POLL_COORD
        if (cn.got_shutdown) break;
        if ((st = hash_batch(j, comm, rank, &n, &local))) return st;
        if (local) {
            st = local;
            set_error(&fin, rank, -1, st);
            break;
        }
        if (!n) break;
        hashed += (uint32_t)n;
    }
    /* Then its own units in plan order, then other ranks' unclaimed ones. */
    int own = 0;
    while (width == 1 && fin.tag == PQ_TAG_DONE && !cn.got_shutdown) {
        bool stolen;
        int i = pq_claims_next(claims, p, rank, &own, &stolen);
        if (i < 0) break;
        taken += stolen;
        const pq_unit *u = &p->units[i];
        POLL_COORD
        if (cn.got_shutdown) break;
        /* The kernel reads the next own unit's rows while this one computes. */
        int nx = pq_plan_next_unit(p, own, rank);
        if (nx < p->n_units) pq_job_prefetch_unit(j, &p->units[nx]);
        double t0 = pq_now_s();
        int slot = -1;
        pq_status local = free_slot(fl, &slot);
        if (local) {
            st = local;
            set_error(&fin, rank, u->id, st);
            break;
        }
        st = pq_worker_run_unit(j, u, rank, &fl[slot].r);
        j->t.units += pq_now_s() - t0;
        if (!st) st = ship_unit(j, comm, rank, &cn, &fl[slot], u);
        if (st) {
            set_error(&fin, rank, u->id, st);
            break;
        }
        done++;
        pq_worker_after_unit(rank);
    }
    PQ_LOG_DEBUG("ran %u units, %d of them taken over from other ranks", done, taken);
#undef POLL_COORD
    /* rank 0 takes every announced buffer, even when stopping */
    double tw = pq_now_s();
    pq_status wst = reap(fl, true);
    j->t.xfer += pq_now_s() - tw;
    free(fl);
    if (wst && fin.tag == PQ_TAG_DONE) set_error(&fin, rank, -1, wst);
    /* the codes written here must be in the file before rank 0 commits */
    if ((wst = pq_direct_close(&cn.direct, rank)) && fin.tag == PQ_TAG_DONE) {
        st = wst;
        set_error(&fin, rank, -1, wst);
    }
    if (fin.tag == PQ_TAG_DONE) {
        fin.u.done.rank = (uint32_t)rank;
        fin.u.done.units = done;
        fin.u.done.hash_chunks = hashed;
    }
    pq_status sst = pq_msg_send(comm, PQ_ROLE_COORD, &fin);
    if (sst) return st ? st : sst;
    /* Wait for rank 0's verdict without spinning on a shared core (a layout
     * that comes only now is received unused). */
    while (!cn.got_shutdown)
        if ((sst = poll_coord(j, comm, rank, &cn, true, true))) return st ? st : sst;
    if (cn.sd.status != PQ_OK) return (pq_status)cn.sd.status;
    return st;
}
