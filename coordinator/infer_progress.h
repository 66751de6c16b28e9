/* SPDX-License-Identifier: Apache-2.0 */
/* infer_progress.h - rank 0's progress of a distributed inference run:
 * on a terminal one line redrawn after every chunk; otherwise (a Slurm log,
 * a pipe) a line at every 5 % and at least every minute. */
#ifndef PQ_INFER_PROGRESS_H
#define PQ_INFER_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct pq_infer_progress {
    FILE *out;
    bool is_tty, quiet;
    int64_t seq_total, res_total; /* the input's, from a first pass */
    int64_t seq_done, res_done;   /* written so far, resumed chunks included */
    int64_t res_resumed;          /* of them, taken from the journal */
    double t0, last_print;
    int last_pct;
} pq_infer_progress;

void pq_infer_progress_init(pq_infer_progress *p, FILE *out, bool quiet, int64_t seq_total, int64_t res_total);
/* A chunk of n_seq sequences and n_res residues is written. */
void pq_infer_progress_add(pq_infer_progress *p, int64_t n_seq, int64_t n_res, bool resumed);
void pq_infer_progress_done(pq_infer_progress *p);

#endif
