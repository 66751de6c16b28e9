/* SPDX-License-Identifier: Apache-2.0 */
/* claims.h - units that a rank on rank 0's machine may take over from
 * another rank there once its own work is done (work stealing).
 *
 * The plan's cost-balanced assignment is where every unit starts; costs are
 * estimates, and a rank slowed by anything else on its cores (a shared node,
 * a noisy VM) would hold everyone up. Ranks on rank 0's machine therefore
 * share one claim word per unit (an MPI-3 shared-memory window): a rank runs
 * a unit only after claiming it with an atomic compare-and-swap, its own
 * units in plan order first, then the unclaimed units of the others from the
 * end of the plan backwards. Every unit is run exactly once, by whoever
 * claimed it; rank 0 accepts a result only from that rank. Ranks on other
 * machines keep the plan's assignment. Which rank ran a unit never changes
 * the output. */
#ifndef PQ_CLAIMS_H
#define PQ_CLAIMS_H

#include <mpi.h>
#include <stdbool.h>

#include "pipeline/plan.h"
#include "base/pq_err.h"

typedef struct pq_claims pq_claims;

/* Collective over comm, after the plan is agreed: *out shares the claims of
 * the ranks r with same_node[r] (rank 0's machine). *out is NULL, and every
 * unit stays with its planned rank, when there is no one to share with or
 * no shared window could be made (the reason is logged). */
pq_status pq_claims_open(MPI_Comm comm, const pq_plan *p, const bool *same_node, pq_claims **out);

/* Collective over the sharing ranks (every rank calls it): release the
 * window. NULL is fine. */
void pq_claims_close(pq_claims *c);

/* Claim unit u for rank: true when rank may run it (it was unclaimed, or,
 * without sharing, it is rank's by the plan). */
bool pq_claims_take(pq_claims *c, const pq_plan *p, int u, int rank);

/* Claim for rank the last unclaimed unit (in plan order) of another sharing
 * rank; -1 when none is left or rank does not share. */
int pq_claims_steal(pq_claims *c, const pq_plan *p, int rank);

/* The next unit rank runs: its own in plan order from *own on, claimed
 * (*own moves past what was looked at), then another sharing rank's
 * unclaimed one (*stolen set); -1 when none is left. */
int pq_claims_next(pq_claims *c, const pq_plan *p, int rank, int *own, bool *stolen);

/* pq_claims_next in the runner's pick shape (unit_batch.h); user is the
 * claims (NULL: the plan's assignment). *next: rank's next own unit in plan
 * order (-1 once it steals). */
int pq_claims_pick(void *claims, const pq_plan *p, int rank, int *own, bool *stolen, int *next);

/* The rank that claimed unit u (-1: no one yet); without sharing, or for a
 * rank that does not share, its planned rank. */
int pq_claims_holder(const pq_claims *c, const pq_plan *p, int u);

#endif
