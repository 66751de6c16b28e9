/* SPDX-License-Identifier: Apache-2.0 */
/* optimize_verify.h - rank 0's end-to-end check of a candidate of
 * `proteus optimize`: the choice is written as a recipe, the model really
 * quantized with it on this process (the quantize pipeline, `quantize
 * --recipe` with the default global options) into a temporary file, that
 * file loaded as `proteus evaluate` loads it and run on the held-out
 * sequences, masked as `proteus score` masks them, against the fp32 model's
 * results kept from one reference pass (decide/sens.h), and both
 * temporaries removed. */
#ifndef PQ_OPTIMIZE_VERIFY_H
#define PQ_OPTIMIZE_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "decide/decide.h"
#include "decide/sens.h"

typedef struct pq_optimize_verify {
    const char *model;      /* the float checkpoint, borrowed */
    const char *tmp_dir;    /* where the temporaries go, borrowed */
    pq_sens *eval;          /* the held-out sequences and the fp32 results on them, borrowed */
    pq_esm2_model_opts model_opts; /* how the quantized model runs */
    bool time_reference;    /* time the fp32 model again beside each candidate (else once) */
    double ref_seconds;     /* fp32's forward seconds on eval, when not timed again */
    int threads;            /* quantize threads (0: all cores) */
    const char *hardware;   /* hardware target of quantize ("cpu") */
    int progress;           /* print a line per candidate to stderr */
} pq_optimize_verify;

/* A pq_measure_fn: user is a pq_optimize_verify. Errors of the quantize
 * pipeline and of the evaluation; the temporaries are removed in any case. */
pq_status pq_optimize_verify_measure(void *user, const pq_sens_table *t, pq_measured *m);

/* Quantize choice to out_path with the recipe at recipe_path (already
 * written). The pipeline's errors. */
pq_status pq_optimize_quantize(const pq_optimize_verify *v, const char *recipe_path, const char *out_path);

#endif
