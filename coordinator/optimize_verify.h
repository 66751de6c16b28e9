/* SPDX-License-Identifier: Apache-2.0 */
/* optimize_verify.h - rank 0's end-to-end check of a candidate of
 * `proteus optimize`: the choice is written as a recipe, the model really
 * quantized with it on this process (the quantize pipeline, `quantize
 * --recipe` with the default global options) into a temporary file, that
 * file evaluated against the fp32 model on held-out sequences (the loop of
 * `proteus evaluate`), and both temporaries removed. */
#ifndef PQ_OPTIMIZE_VERIFY_H
#define PQ_OPTIMIZE_VERIFY_H

#include <stdint.h>

#include "decide/decide.h"
#include "eval/compare.h"

typedef struct pq_optimize_verify {
    const char *model;      /* the float checkpoint, borrowed */
    const char *tmp_dir;    /* where the temporaries go, borrowed */
    pq_eval_compare_opts eval; /* fasta, max_seqs, max_length, batch_tokens, seed, mask_frac, model opts */
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
