/* SPDX-License-Identifier: Apache-2.0 */
/* knapsack.h - the predicted size/cost front of a sensitivity table: for
 * every byte budget, the per-Linear choice of candidates with the least
 * summed cost (a multiple-choice knapsack by dynamic programming over the
 * budget in `resolution` equal steps, each candidate's bytes rounded UP to a
 * step, so a choice never exceeds the budget it was made for). */
#ifndef PQ_DECIDE_KNAPSACK_H
#define PQ_DECIDE_KNAPSACK_H

#include <stdint.h>

#include "base/pq_err.h"
#include "decide/table.h"

typedef struct pq_front_pt {
    int64_t bytes;   /* summed cell bytes of the choice */
    double cost;     /* summed cost */
    int *choice;     /* owned, [n_linears]: candidate index per Linear */
} pq_front_pt;

/* The cost of a cell: its KL, negative values (rounding) as 0. */
double pq_knapsack_cost(const pq_sens_cell *c);

/* Least-cost choice within budget bytes (cells' bytes summed) into
 * choice[n_linears]; *bytes, *cost its totals. PQ_ERR_ACCURACY when even the
 * smallest choice exceeds the budget (naming both). */
pq_status pq_knapsack_solve(const pq_sens_table *t, int64_t budget, int resolution, int *choice, int64_t *bytes,
                            double *cost);

/* Every distinct point of the front, bytes ascending and cost strictly
 * descending, from the smallest choice to the least-cost one. Returns owned
 * *pts (pq_front_free). */
pq_status pq_knapsack_front(const pq_sens_table *t, int resolution, pq_front_pt **pts, int *n);
void pq_front_free(pq_front_pt *pts, int n); /* NULL is fine */

#endif
