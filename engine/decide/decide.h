/* SPDX-License-Identifier: Apache-2.0 */
/* decide.h - choosing a per-Linear recipe under constraints: the predicted
 * front of the knapsack (knapsack.h) is searched with real measurements of
 * the candidates (a callback that quantizes a choice and evaluates it), and
 * the best measured candidate that meets every constraint is chosen.
 *
 * Search: the uniform candidates (every Linear at one candidate) are
 * measured first (they also give the bytes a file holds beside the Linears).
 * --max-size walks the front down from the largest point predicted to fit
 * until a measured file fits; --min-speedup then finds the largest point
 * fast enough, --max-drop the smallest accurate enough (bisection: fewer
 * bytes are taken as faster and less accurate). Of every measured candidate
 * that meets all constraints, the choice is the smallest with --max-drop,
 * else the most accurate (ties: lower KL, then fewer bytes), or with by_kl
 * the lowest KL (ties: more accurate, then fewer bytes). */
#ifndef PQ_DECIDE_DECIDE_H
#define PQ_DECIDE_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "decide/table.h"

typedef struct pq_constraints {
    int64_t max_size;    /* bytes of the file, 0: none */
    double max_drop;     /* accuracy drop in percentage points, < 0: none */
    double min_speedup;  /* tokens/s against fp32's, 0: none */
    int64_t size_slack;  /* bytes a measured file must leave under max_size (room for what
                            a later quantize records beside it, such as its command line) */
    bool by_kl;          /* without max_drop: choose the lowest KL, not the highest accuracy */
} pq_constraints;

/* One measured candidate. */
typedef struct pq_measured {
    char label[64];      /* "uniform int8-ch", "front 12" */
    int *choice;         /* owned, [n_linears] */
    int64_t bytes;       /* of the file written */
    double accuracy, ref_accuracy; /* masked-LM accuracy, fractions */
    double kl;           /* mean logits KL against fp32 */
    double tokens_per_s, ref_tokens_per_s;
} pq_measured;

/* Quantize `choice` (candidate per Linear of t) for real and evaluate it
 * against fp32: fill bytes, accuracy, ref_accuracy, kl, tokens_per_s,
 * ref_tokens_per_s of *m (label and choice are set). */
typedef pq_status (*pq_measure_fn)(void *user, const pq_sens_table *t, pq_measured *m);

typedef struct pq_decision {
    pq_measured *m;      /* owned, in the order measured */
    int n_m;
    int chosen;          /* index into m; -1 when no candidate meets every constraint */
    int best;            /* the chosen one, else the closest attempt (-1: none measured) */
    int n_unmet;
    char unmet[3][256];  /* what the closest attempt could not meet */
} pq_decision;

double pq_measured_drop_points(const pq_measured *m);
double pq_measured_speedup(const pq_measured *m);
/* Whether m meets every constraint of c; when not, and why is not NULL,
 * the reasons (at most 3, each why[k] 256 bytes) and their count. */
bool pq_constraints_met(const pq_constraints *c, const pq_measured *m, char (*why)[256], int *n_why);
/* Whether m is on the (bytes, accuracy) Pareto front of d's measured ones. */
bool pq_decision_on_front(const pq_decision *d, int i);

/* Search and choose as above, into *out (pq_decision_free it, also after a
 * failure). PQ_ERR_CONFIG when no constraint is given; measure's errors.
 * A choice that meets nothing is not an error here: out->chosen is -1 and
 * out->unmet says why. */
pq_status pq_decide(const pq_sens_table *t, const pq_constraints *c, int resolution, pq_measure_fn measure,
                    void *user, pq_decision *out);
void pq_decision_free(pq_decision *d);

#endif
