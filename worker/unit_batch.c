/* SPDX-License-Identifier: Apache-2.0 */
/* unit_batch.c - a batch of chunks and units, one per thread (unit_batch.h). */
#include "base/pq_clock.h"
#include "worker/unit_batch.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "worker/worker.h"

/* Input bytes of `width` units in flight at most: each thread maps its
 * unit's rows while it runs it. */
#define BATCH_INPUT_BYTES (1024.0 * 1024 * 1024)

int pq_batch_width(const pq_job *j)
{
    int t = j->hash_threads < 1 ? 1 : j->hash_threads;
    if (t > PQ_BATCH_MAX) t = PQ_BATCH_MAX;
    double largest = 0;
    for (int i = 0; i < j->plan->n_units; i++)
        largest = j->plan->units[i].cost > largest ? j->plan->units[i].cost : largest;
    /* big units: their rows split over the threads, one unit at a time */
    return largest * t > BATCH_INPUT_BYTES ? 1 : t;
}

void pq_batch_fill(pq_unit_batch *b, const pq_plan *p, pq_claims *claims, int rank, int width,
                   int *next_chunk, int *own, int *taken)
{
    double cost = 0, largest = 0;
    for (; *next_chunk < p->n_hash && b->n < width; ++*next_chunk) {
        const pq_hash_unit *h = &p->hash[*next_chunk];
        if (h->rank != rank) continue;
        b->item[b->n++] = PQ_BATCH_CHUNK(*next_chunk);
        cost += h->cost;
        largest = h->cost > largest ? h->cost : largest;
    }
    while (b->n < PQ_BATCH_MAX && (b->n < width || cost < 2.0 * width * largest)) {
        bool stolen;
        int k = pq_claims_next(claims, p, rank, own, &stolen);
        if (k < 0) break;
        *taken += stolen;
        b->item[b->n++] = k;
        cost += p->units[k].cost;
        largest = p->units[k].cost > largest ? p->units[k].cost : largest;
    }
}

/* One item on the calling thread; its seconds. */
static double run_item(pq_job *j, int rank, pq_unit_batch *b, int i)
{
    double t0 = pq_now_s();
    const int it = b->item[i];
    if (it >= 0) b->st[i] = pq_worker_run_unit(j, &j->plan->units[it], rank, &b->r[i]);
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
        if (b->item[i] < 0 && !b->st[i]) j->hash_have[-(int64_t)b->item[i] - 1] = true;
        if (ship) ship(user, b, i);
        b->shipped[i] = true;
    }
    return pq_now_s() - t0;
}

void pq_batch_run(pq_job *j, int rank, pq_unit_batch *b, int threads, pq_batch_ship ship, void *user)
{
    double ship_s = 0, hash_s = 0, unit_s = 0, t0 = pq_now_s();
    if (threads < 1) threads = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(+ : hash_s, unit_s)
#endif
    {
#ifdef _OPENMP
        const bool first = omp_get_thread_num() == 0;
#else
        const bool first = true;
#endif
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
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
    /* the calling thread's wall time besides shipping, split between the
     * phases by the items' thread seconds */
    const double wall = pq_now_s() - t0 - ship_s, busy = hash_s + unit_s;
    if (busy > 0) {
        j->t.hash += wall * hash_s / busy;
        j->t.units += wall * unit_s / busy;
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
