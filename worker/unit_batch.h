/* SPDX-License-Identifier: Apache-2.0 */
/* unit_batch.h - several work items at once on a rank with several
 * threads, one item per thread: its source-digest chunks and its units. The
 * rank's own thread ships each finished item (writes or sends its result)
 * between its own items, and the rest once the batch is over.
 *
 * Splitting each unit's rows over the threads leaves them idle whenever the
 * rank writes, and a unit of a few MB gains little from it; hashing chunks
 * a batch at a time leaves threads idle when fewer chunks than threads are
 * left. A batch keeps every thread on whole items, chunks first, and hides
 * most of the writing behind them. A result lives from its item's end to
 * the calling thread's next look, so memory grows by about one item per
 * thread. An item's result does not depend on the thread that computed it. */
#ifndef PQ_UNIT_BATCH_H
#define PQ_UNIT_BATCH_H

#include <stdbool.h>

#include "worker/claims.h"
#include "pipeline/job.h"
#include "base/pq_err.h"

#define PQ_BATCH_MAX 256

/* An item: unit k is k >= 0, digest chunk c is -(c + 1). */
#define PQ_BATCH_CHUNK(c) (-(int)(c) - 1)

typedef struct pq_unit_batch {
    int n;                                /* items in the batch */
    int item[PQ_BATCH_MAX];               /* units and chunks (PQ_BATCH_CHUNK) */
    pq_unit_result r[PQ_BATCH_MAX];       /* the units' results until shipped */
    pq_status st[PQ_BATCH_MAX];           /* their outcomes */
    char *detail[PQ_BATCH_MAX];           /* a failure's message (owned) */
    int ready[PQ_BATCH_MAX];              /* set (atomically) when the item is over */
    bool shipped[PQ_BATCH_MAX];
} pq_unit_batch;

/* Ship finished item i of b (its status in b->st[i]); runs on the calling
 * thread of pq_batch_run only, so it may use HDF5 and MPI. */
typedef void (*pq_batch_ship)(void *user, pq_unit_batch *b, int i);

/* Threads of a batch for a job: its thread count, at most PQ_BATCH_MAX; 1
 * (one unit at a time, its rows over the threads) with one thread, or when
 * that many of its largest units would exceed 1 GiB of input. */
int pq_batch_width(const pq_job *j);

/* Fill the empty batch b for `rank`: its digest chunks from *next_chunk on,
 * then the units pq_claims_next gives it (*own as there; *taken counts the
 * units taken over from other ranks). A batch ends with a barrier, so it is
 * filled until its cost is twice what `width` threads need for its largest
 * item (at most PQ_BATCH_MAX items): units beside the last chunks, small
 * units by the dozen. Leaves b empty when nothing is left. */
void pq_batch_fill(pq_unit_batch *b, const pq_plan *p, pq_claims *claims, int rank, int width,
                   int *next_chunk, int *own, int *taken);

/* Run b's items on up to `threads` threads (one item per thread, dynamic
 * order), as rank `rank`: a chunk's leaf goes to the job's leaves (marked
 * known on success), a unit's result to b. The calling thread takes items
 * too, and after each of its own calls ship for every item over and not yet
 * shipped; after the batch, for the rest. A failed item leaves its status
 * and message in b. Adds the time to the job's hash and units phases
 * (ship's own time excluded). */
void pq_batch_run(pq_job *j, int rank, pq_unit_batch *b, int threads, pq_batch_ship ship, void *user);

/* The first failure of b in batch order (PQ_OK when none), its message
 * made the calling thread's error detail; *unit is its unit, -1 for a chunk
 * (unit may be NULL). */
pq_status pq_batch_status(const pq_unit_batch *b, int *unit);

/* Free every result of b and empty it. */
void pq_batch_clear(pq_unit_batch *b);

#endif
