/* SPDX-License-Identifier: Apache-2.0 */
/* table.h - a per-Linear sensitivity table: for every Linear weight of the
 * layers and every candidate recipe, the bytes it stores, the measured
 * increase of the masked-LM loss and the logits KL when only that Linear is
 * quantized so, and the second-order estimate; read and written as the
 * "sensitivity" array of `proteus optimize --json` (docs/DECISIONS.md). */
#ifndef PQ_DECIDE_TABLE_H
#define PQ_DECIDE_TABLE_H

#include <jansson.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "decide/cand.h"

#define PQ_DECIDE_MAX_CANDS 8
#define PQ_DECIDE_NAME 96

/* One (Linear, candidate) cell. fp32 cells cost nothing (all zero). */
typedef struct pq_sens_cell {
    int64_t bytes;
    double d_loss;   /* mean masked-LM loss (nats) with this Linear quantized, minus fp32's */
    double kl;       /* mean KL(fp32 || quantized) of the logits over residue positions, nats */
    double estimate; /* sum_j diag(H)_j sum_i (w_ij - q_ij)^2, H = 2/n X^T X of the input */
} pq_sens_cell;

typedef struct pq_sens_linear {
    char tensor[PQ_DECIDE_NAME]; /* Hugging Face weight name */
    int layer;
    int linear;                  /* 0..5: q, k, v, o, fc1, fc2 */
    int64_t rows, cols;
} pq_sens_linear;

typedef struct pq_sens_table {
    int n_linears, n_cands;
    pq_cand cands[PQ_DECIDE_MAX_CANDS];
    pq_sens_linear *lin;  /* owned, [n_linears] */
    pq_sens_cell *cell;   /* owned, [n_linears * n_cands], Linear-major */
} pq_sens_table;

/* Allocate lin and cell (zeroed) for n_linears x n_cands. PQ_ERR_RESOURCE. */
pq_status pq_sens_table_alloc(pq_sens_table *t, int n_linears, int n_cands);
void pq_sens_table_free(pq_sens_table *t); /* NULL-safe; leaves t empty */
static inline pq_sens_cell *pq_sens_at(const pq_sens_table *t, int lin, int cand)
{
    return &t->cell[(int64_t)lin * t->n_cands + cand];
}
/* The short name of Linear index 0..5 ("q" .. "fc2"). */
const char *pq_sens_linear_name(int linear);

/* The "sensitivity" array (returns owned JSON, NULL when out of memory). */
json_t *pq_sens_table_to_json(const pq_sens_table *t);
/* Read a "sensitivity" array (as pq_sens_table_to_json writes it): every
 * Linear must list the same candidates in the same order. PQ_ERR_CONFIG
 * naming `what` (the file) and the entry on a bad one. */
pq_status pq_sens_table_from_json(const json_t *a, const char *what, pq_sens_table *t);

/* Spearman's rank correlation of x and y (n values; ties get mean ranks);
 * NaN for n < 2 or a constant series. */
double pq_spearman(const double *x, const double *y, int n);
/* Spearman of estimate against kl over the cells that are not fp32 kept. */
double pq_sens_table_rank_correlation(const pq_sens_table *t);

#endif
