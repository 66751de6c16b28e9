/* SPDX-License-Identifier: Apache-2.0 */
/* bench.h - forward-pass timing: the loop of `proteus bench`, on uniform
 * synthetic batches or on packed real sequences. Never prints. */
#ifndef PQ_EVAL_BENCH_H
#define PQ_EVAL_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "model/esm2_model.h"
#include "model/fasta.h"

typedef struct pq_eval_bench_opts {
    const pq_fasta_record *recs; /* borrowed; NULL: the uniform shape */
    int64_t n_recs;
    int64_t batch_tokens;        /* recs: tokens per packed batch (at least 3) */
    int64_t batch, length;       /* uniform: batch sequences of length tokens (<cls>, length-2
                                    residues cycling through the 20 standard ones, <eos>) */
    int64_t reps, warmup;        /* timed runs of the whole set (at least 1), untimed before */
    bool logits;                 /* run the LM head too (else the final representation only) */
    pq_esm2_profile *profile;    /* borrowed; non-NULL: filled over the timed reps (not the warm-up) */
} pq_eval_bench_opts;

typedef struct pq_eval_bench_result {
    int64_t n_batches, n_tokens;
    double median_s, min_s;      /* over the reps, of the whole set of batches */
} pq_eval_bench_result;

pq_status pq_eval_bench(pq_esm2_model *m, const pq_eval_bench_opts *o, pq_eval_bench_result *r);

#endif
