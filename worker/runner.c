/* SPDX-License-Identifier: Apache-2.0 */
/* runner.c - the one unit runner (runner.h). */
#include "worker/runner.h"

#include <signal.h>
#include <stdlib.h>

#include "base/pq_clock.h"
#include "base/pq_fault.h"

/* Digest chunks hashed at once by a rank whose units run one at a time:
 * one per thread, at most a HashLeaves message's worth. */
#define MAX_CHUNKS_AT_ONCE 64

typedef struct run_state {
    pq_job *j;
    int rank;
    const pq_sink *s;
    pq_run_counts *n;
    pq_status err;         /* the first failure of the sink */
} run_state;

/* A resumed run's pick: the inner pick's units that the journal lacks. */
typedef struct skip_pick {
    const pq_job *j;
    pq_pick_fn pick;
    void *user;
} skip_pick;

static int pick_missing(void *user, const pq_plan *p, int rank, int *own, bool *stolen, int *next)
{
    skip_pick *s = user;
    for (;;) {
        int k = s->pick(s->user, p, rank, own, stolen, next);
        if (k < 0 || !pq_job_unit_done(s->j, k)) {
            if (*next >= 0 && pq_job_unit_done(s->j, *next)) *next = -1; /* not read for nothing */
            return k;
        }
    }
}

/* A finished item, on the calling thread: to the sink, unless it failed or
 * the sink already did (the batch's failures are looked at once it is over). */
static void ship(void *user, pq_unit_batch *b, int i)
{
    run_state *rs = user;
    if (b->st[i] || rs->err) return;
    pq_job_drop_item(rs->j, b->item[i]); /* its bytes are read */
    if (b->item[i] < 0) {
        rs->n->chunks++;
        if (rs->s->chunk) rs->err = rs->s->chunk(rs->s->user, -(int64_t)b->item[i] - 1);
        return;
    }
    const pq_unit *u = &pq_job_plan(rs->j)->units[b->item[i]];
    if ((rs->err = rs->s->unit(rs->s->user, u, &b->r[i]))) {
        rs->n->failed_unit = u->id;
        return;
    }
    rs->n->units++;
    if (pq_fault_at(PQ_FAULT_KILL_RANK, rs->rank)) raise(SIGKILL);
}

pq_status pq_run_units(pq_job *j, int rank, pq_pick_fn pick, void *pick_user, const pq_sink *s, pq_run_counts *n)
{
    const pq_plan *p = pq_job_plan(j);
    const int threads = pq_job_threads(j), width = pq_batch_width(p, threads);
    int max_chunks = width > 1 ? width : threads > MAX_CHUNKS_AT_ONCE ? MAX_CHUNKS_AT_ONCE : threads;
    int next_chunk = pq_job_hashes_chunks(j) ? 0 : p->n_hash, own = 0;
    run_state rs = {.j = j, .rank = rank, .s = s, .n = n};
    skip_pick sp = {.j = j, .pick = pick ? pick : pq_batch_plan_pick, .user = pick_user};
    *n = (pq_run_counts){.failed_unit = -1};
    pq_unit_batch *b = calloc(1, sizeof *b);
    if (!b) return pq_err(PQ_ERR_RESOURCE, "out of memory for a batch of work items");
    pq_job_drop_plan(j);
    for (;;) {
        bool stop = false;
        if (s->poll && ((rs.err = s->poll(s->user, &stop)) || stop)) break;
        pq_batch_fill(b, p, pick_missing, &sp, rank, width, max_chunks, &next_chunk, &own, &n->taken);
        if (!b->n) break;
        bool chunks = b->item[0] < 0;
        /* the kernel reads the rows of the unit the pick gives next meanwhile */
        if (width == 1 && !chunks && b->next >= 0) pq_job_prefetch_unit(j, &p->units[b->next]);
        pq_batch_run(j, rank, b, width > 1 || chunks ? max_chunks : 1, ship, &rs);
        if (!rs.err && s->flush) rs.err = s->flush(s->user);
        if (!rs.err) rs.err = pq_batch_status(b, &n->failed_unit);
        pq_batch_clear(b);
        if (rs.err) break;
    }
    free(b);
    return rs.err;
}

static pq_status put_unit(void *user, const pq_unit *u, pq_unit_result *r)
{
    pq_status st = pq_job_put_result(user, u, r);
    pq_unit_result_free(r);
    return st;
}

pq_status pq_run_local(pq_job *j)
{
    const pq_sink s = {.unit = put_unit, .user = j};
    pq_run_counts n;
    double t0 = pq_now_s();
    pq_status st = pq_run_units(j, 0, NULL, NULL, &s, &n);
    pq_job_set_quantize_seconds(j, pq_now_s() - t0);
    return st;
}
