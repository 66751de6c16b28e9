/* SPDX-License-Identifier: Apache-2.0 */
/* unit_batch.c - a batch of chunks and units, one per thread (unit_batch.h). */
#include "worker/unit_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/pq_clock.h"
#include "base/pq_fault.h"

/* Input bytes of `width` units in flight at most: each thread maps its
 * unit's rows while it runs it. */
#define BATCH_INPUT_BYTES (1024.0 * 1024 * 1024)

int pq_batch_width(const pq_plan *p, int threads)
{
    int t = threads < 1 ? 1 : threads;
    if (t > PQ_BATCH_MAX) t = PQ_BATCH_MAX;
    double largest = 0;
    for (int i = 0; i < p->n_units; i++) largest = p->units[i].cost > largest ? p->units[i].cost : largest;
    /* big units: their rows split over the threads, one unit at a time */
    return largest * t > BATCH_INPUT_BYTES ? 1 : t;
}

int pq_batch_plan_pick(void *user, const pq_plan *p, int rank, int *own, bool *stolen, int *next)
{
    (void)user;
    *stolen = false;
    *next = -1;
    *own = pq_plan_next_unit(p, *own, rank);
    if (*own >= p->n_units) return -1;
    int u = (*own)++, nx = pq_plan_next_unit(p, *own, rank);
    *next = nx < p->n_units ? nx : -1;
    return u;
}

/* This rank's digest chunks from *next_chunk up to index horizon, while
 * the batch has fewer than max_chunks items. */
static void take_chunks(pq_unit_batch *b, const pq_plan *p, int rank, int max_chunks, int *next_chunk,
                        int64_t horizon, double *cost, double *largest)
{
    for (; *next_chunk < p->n_hash && *next_chunk <= horizon && b->n < max_chunks; ++*next_chunk) {
        const pq_hash_unit *h = &p->hash[*next_chunk];
        if (h->rank != rank) continue;
        b->item[b->n++] = PQ_BATCH_CHUNK(*next_chunk);
        *cost += h->cost;
        *largest = h->cost > *largest ? h->cost : *largest;
    }
}

void pq_batch_fill(pq_unit_batch *b, const pq_plan *p, pq_pick_fn pick, void *pick_user, int rank, int width,
                   int max_chunks, int *next_chunk, int *own, int *taken)
{
    double cost = 0, largest = 0;
    /* The digest chunks go just ahead of the units that read the same
     * bytes (up to max_chunks past the next own unit's chunk), not all
     * first: each byte of a checkpoint larger than the page cache is then
     * read from disk once, for the digest and the quantization together.
     * Once no unit is left to this rank, the rest of the chunks. */
    int nx = pq_plan_next_unit(p, *own, rank);
    int64_t horizon = nx < p->n_units && p->units[nx].chunk >= 0 ? (int64_t)p->units[nx].chunk + max_chunks
                                                                   : INT64_MAX;
    take_chunks(b, p, rank, max_chunks, next_chunk, horizon, &cost, &largest);
    b->next = -1;
    if (width == 1 && b->n) return; /* width 1: chunks on their own */
    while (b->n < PQ_BATCH_MAX && (b->n < width || cost < 2.0 * width * largest)) {
        bool stolen;
        int k = pick ? pick(pick_user, p, rank, own, &stolen, &b->next)
                     : pq_batch_plan_pick(NULL, p, rank, own, &stolen, &b->next);
        if (k < 0) break;
        *taken += stolen;
        b->item[b->n++] = k;
        cost += p->units[k].cost;
        largest = p->units[k].cost > largest ? p->units[k].cost : largest;
        if (width == 1) break;
    }
    if (!b->n) take_chunks(b, p, rank, max_chunks, next_chunk, INT64_MAX, &cost, &largest);
}

/* Unit u as rank `rank`, its failure named by rank, unit and rows. The
 * fault switches make a chosen unit fail, or a chosen rank slow (tests). */
static pq_status run_unit(pq_job *j, const pq_unit *u, int rank, pq_unit_result *r)
{
    const pq_plan_tensor *pt = &pq_job_plan(j)->tensors[u->tensor];
    pq_status st;
    if (pq_fault_at(PQ_FAULT_FAIL_UNIT, u->id)) {
        memset(r, 0, sizeof *r);
        st = pq_err(PQ_ERR_IO, "injected read failure (PQ_TEST_FAIL_UNIT)");
    } else {
        if (pq_fault_at(PQ_FAULT_SLOW_RANK, rank)) nanosleep(&(struct timespec){0, 20000000}, NULL);
        st = pq_job_run_unit(j, u, r);
    }
    if (st) {
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", pq_err_detail());
        pq_err_replace(st, "rank %d, unit %d (tensor '%s' rows %lld..%lld): %s", rank, u->id, pt->st->name,
                       (long long)u->row0, (long long)(u->row0 + u->n_rows - 1), detail);
    }
    return st;
}

/* One item on the calling thread; its seconds. */
static double run_item(pq_job *j, int rank, pq_unit_batch *b, int i)
{
    double t0 = pq_now_s();
    const int it = b->item[i];
    if (it >= 0) b->st[i] = run_unit(j, &pq_job_plan(j)->units[it], rank, &b->r[i]);
    else b->st[i] = pq_job_hash_chunk(j, rank, -(int64_t)it - 1);
    b->detail[i] = b->st[i] ? strdup(pq_err_detail()) : NULL;
    return pq_now_s() - t0;
}

static bool all_ready(pq_unit_batch *b)
{
    for (int i = 0; i < b->n; i++)
        if (!__atomic_load_n(&b->ready[i], __ATOMIC_ACQUIRE)) return false;
    return true;
}

/* Ship, on the calling thread, every item over and not yet shipped; the
 * seconds it took. */
static double ship_ready(pq_job *j, pq_unit_batch *b, pq_batch_ship ship, void *user)
{
    double t0 = pq_now_s();
    for (int i = 0; i < b->n; i++) {
        if (b->shipped[i] || !__atomic_load_n(&b->ready[i], __ATOMIC_ACQUIRE)) continue;
        if (b->item[i] < 0 && !b->st[i]) pq_job_mark_leaf(j, -(int64_t)b->item[i] - 1);
        if (ship) ship(user, b, i);
        b->shipped[i] = true;
    }
    return pq_now_s() - t0;
}

void pq_batch_run(pq_job *j, int rank, pq_unit_batch *b, int threads, pq_batch_ship ship, void *user)
{
    double ship_s = 0, hash_s = 0, unit_s = 0, t0 = pq_now_s();
    if (threads > b->n) threads = b->n;
    if (threads <= 1) {
        /* one thread: no parallel region, so RTN may split a unit's rows */
        for (int i = 0; i < b->n; i++) {
            double s = run_item(j, rank, b, i);
            *(b->item[i] < 0 ? &hash_s : &unit_s) += s;
            b->ready[i] = 1;
            ship_s += ship_ready(j, b, ship, user);
        }
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : hash_s, unit_s)
#endif
        {
#ifdef _OPENMP
            const bool first = omp_get_thread_num() == 0;
#pragma omp for schedule(dynamic, 1) nowait
#else
            const bool first = true;
#endif
            for (int i = 0; i < b->n; i++) {
                double s = run_item(j, rank, b, i);
                if (b->item[i] < 0) hash_s += s;
                else unit_s += s;
                __atomic_store_n(&b->ready[i], 1, __ATOMIC_RELEASE);
                if (first) ship_s += ship_ready(j, b, ship, user);
            }
            /* out of items: ship the others' as they finish, not after all */
            while (first && !all_ready(b)) {
                ship_s += ship_ready(j, b, ship, user);
                nanosleep(&(struct timespec){0, 50000}, NULL);
            }
        }
        ship_s += ship_ready(j, b, ship, user);
    }
    /* the calling thread's wall time besides shipping, split between the
     * phases by the items' thread seconds */
    const double wall = pq_now_s() - t0 - ship_s, busy = hash_s + unit_s;
    if (busy > 0) {
        pq_job_phase_add(j, PQ_PHASE_HASH, wall * hash_s / busy);
        pq_job_phase_add(j, PQ_PHASE_UNITS, wall * unit_s / busy);
    }
}

pq_status pq_batch_status(const pq_unit_batch *b, int *unit)
{
    for (int i = 0; i < b->n; i++)
        if (b->st[i]) {
            if (unit) *unit = b->item[i] >= 0 ? b->item[i] : -1;
            return pq_err_replace(b->st[i], "%s", b->detail[i] ? b->detail[i] : "work item failed");
        }
    return PQ_OK;
}

void pq_batch_clear(pq_unit_batch *b)
{
    for (int i = 0; i < b->n; i++) {
        if (b->item[i] >= 0) pq_unit_result_free(&b->r[i]);
        free(b->detail[i]);
        b->detail[i] = NULL;
        b->st[i] = PQ_OK;
        b->ready[i] = 0;
        b->shipped[i] = false;
    }
    b->n = 0;
}
