/* SPDX-License-Identifier: Apache-2.0 */
/* unit_batch.h - a batch of a rank's work items (its source-digest chunks
 * and its units), run one item per thread, each finished item shipped by
 * the calling thread between its own items (runner.h drives the batches).
 *
 * Splitting each unit's rows over the threads leaves them idle whenever the
 * rank writes, and a unit of a few MB gains little from it; hashing chunks
 * a batch at a time leaves threads idle when fewer chunks than threads are
 * left. A batch keeps every thread on whole items, chunks first, and hides
 * most of the writing behind them. A result lives from its item's end to
 * the calling thread's next look, so memory grows by about one item per
 * thread. An item's result does not depend on the thread that computed it.
 * Width 1 is a batch of one unit (its rows split over the threads inside
 * RTN), or of the chunks the threads hash at once. */
#ifndef PQ_UNIT_BATCH_H
#define PQ_UNIT_BATCH_H

#include <stdbool.h>

#include "base/pq_err.h"
#include "pipeline/job.h"

#define PQ_BATCH_MAX 256

/* An item: unit k is k >= 0, digest chunk c is -(c + 1). */
#define PQ_BATCH_CHUNK(c) (-(int)(c) - 1)

typedef struct pq_unit_batch {
    int n;                                /* items in the batch */
    int item[PQ_BATCH_MAX];               /* units and chunks (PQ_BATCH_CHUNK) */
    int next;                             /* the unit the pick expects to give after the batch's
                                             (its rows may be read ahead), -1: none known */
    pq_unit_result r[PQ_BATCH_MAX];       /* the units' results until shipped */
    pq_status st[PQ_BATCH_MAX];           /* their outcomes */
    char *detail[PQ_BATCH_MAX];           /* a failure's message (owned) */
    int ready[PQ_BATCH_MAX];              /* set (atomically) when the item is over */
    bool shipped[PQ_BATCH_MAX];
} pq_unit_batch;

/* The next unit `rank` runs: its own in the pick's order from *own on (*own
 * is the pick's cursor, moved past what was looked at: a plan position for
 * the plan's and the claims' picks, a position in a round for GPTQ's), then,
 * where ranks share claims, another rank's unclaimed one (*stolen set); -1
 * when none is left. *next: the unit the pick expects to give after it (a
 * hint to read its rows ahead: another rank may still claim it), -1 when
 * none is known. NULL: the plan's own units in order (pq_claims_pick has
 * this shape). */
typedef int (*pq_pick_fn)(void *user, const pq_plan *p, int rank, int *own, bool *stolen, int *next);

/* The plan's own units of rank in order (the pick of NULL). */
int pq_batch_plan_pick(void *user, const pq_plan *p, int rank, int *own, bool *stolen, int *next);

/* Ship finished item i of b (its status in b->st[i]); runs on the calling
 * thread of pq_batch_run only, so it may use HDF5 and MPI. */
typedef void (*pq_batch_ship)(void *user, pq_unit_batch *b, int i);

/* Threads of a batch for a plan run with `threads` threads: at most
 * PQ_BATCH_MAX; 1 (one unit at a time, its rows over the threads) with one
 * thread, or when that many of the plan's largest units would exceed 1 GiB
 * of input. */
int pq_batch_width(const pq_plan *p, int threads);

/* Fill the empty batch b for `rank`: up to max_chunks of its digest chunks
 * from *next_chunk on, then the units `pick` gives it, b->next the last
 * pick's hint (*own as there; *taken
 * counts the units taken over from other ranks). Width 1: a batch of chunks,
 * else one unit. Wider: a batch ends with a barrier, so it is filled until
 * its cost is twice what `width` threads need for its largest item (at most
 * PQ_BATCH_MAX items): units beside the last chunks, small units by the
 * dozen. Leaves b empty when nothing is left. */
void pq_batch_fill(pq_unit_batch *b, const pq_plan *p, pq_pick_fn pick, void *pick_user, int rank, int width,
                   int max_chunks, int *next_chunk, int *own, int *taken);

/* Run b's items on up to `threads` threads (one item per thread, dynamic
 * order), as rank `rank`: a chunk's leaf goes to the job's leaves, a unit's
 * result to b. A unit's failure names the rank, the unit and its rows (a
 * chunk's does not name the rank: rank 0 adds it). The calling thread takes items too, and after each of its own
 * calls ship for every item over and not yet shipped (a hashed chunk is
 * marked known first); after the batch, for the rest. Adds the time to the
 * job's hash and units phases (ship's own time excluded). */
void pq_batch_run(pq_job *j, int rank, pq_unit_batch *b, int threads, pq_batch_ship ship, void *user);

/* The first failure of b in batch order (PQ_OK when none), its message
 * made the calling thread's error detail; *unit is its unit, -1 for a chunk
 * (unit may be NULL). */
pq_status pq_batch_status(const pq_unit_batch *b, int *unit);

/* Free every result of b and empty it. */
void pq_batch_clear(pq_unit_batch *b);

#endif
