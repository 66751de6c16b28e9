/* SPDX-License-Identifier: Apache-2.0 */
/* fallback.h - quantize's fallback (--allow-accuracy-drop, --fallback-scheme):
 * when a quantized model loses more masked-LM accuracy than allowed, or its
 * calibration fails, the next recipe to try, in a fixed order, and the trail
 * of every attempt. Pure logic over plans and evaluation reports; the
 * coordinator quantizes and evaluates the attempts
 * (coordinator/fallback_run.h).
 *
 * The order, each step on top of the one before:
 *   1. requested: the configuration as given;
 *   2. "fallback scheme S": the scheme replaced (with S not static,
 *      calibration_method back to minmax; with S weight-only, SmoothQuant
 *      off); skipped when no fallback scheme is given;
 *   3. "int4 -> int8": every tensor the last attempt held at int4 becomes
 *      int8 with its own granularity; skipped when none is int4;
 *   4. "keep NAME fp32" (fp16 with float_dtype fp16), once per attempt: the
 *      quantized Linear with the lowest output SQNR in the last evaluation
 *      (pq_eval_compare's per-Linear SQNR: that Linear applied to the very
 *      input the reference Linear sees; ties: the first in the plan), until
 *      no measured Linear is quantized.
 * An attempt meets the budget when the reference's correct masked
 * predictions exceed the quantized model's by at most budget x masked
 * positions (drop <= budget); without a budget every attempt that quantizes
 * meets it. A calibration failure moves on only with a fallback scheme. */
#ifndef PQ_FALLBACK_H
#define PQ_FALLBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "eval/compare.h"
#include "pipeline/config.h"
#include "pipeline/plan.h"

typedef enum pq_fb_kind {
    PQ_FB_NONE = 0,    /* nothing left to try */
    PQ_FB_REQUESTED,
    PQ_FB_SCHEME,
    PQ_FB_INT8,
    PQ_FB_KEEP_FLOAT,
} pq_fb_kind;

/* What to try next: a kind and, for PQ_FB_KEEP_FLOAT, the plan tensor. The
 * same step applied on every rank gives every rank the same configuration. */
typedef struct pq_fb_step {
    int32_t kind;     /* pq_fb_kind */
    int32_t tensor;   /* plan index (PQ_FB_KEEP_FLOAT), else -1 */
} pq_fb_step;

typedef struct pq_fb_attempt {
    int number;                  /* from 1 */
    pq_fb_kind kind;
    char what[320];              /* "requested", "fallback scheme dynamic", "int4 -> int8",
                                  * "keep esm.encoder.layer.3.output.dense.weight fp32" */
    char scheme[16];
    pq_qspec global;             /* the configuration's global recipe */
    int n_kept;
    char **kept;                 /* owned: the tensors kept in float by the steps so far */
    pq_status status;            /* PQ_OK, or why it did not quantize */
    char error[512];
    bool evaluated;
    int64_t n_masked, correct_reference, correct;
    double accuracy, reference_accuracy, drop, kl;
    int64_t bytes;               /* the tensors' stored bytes (codes, scales, float data) */
    bool met, written;
} pq_fb_attempt;

/* A tensor of the last attempt's plan and the last SQNR measured for it. */
typedef struct pq_fb_tensor {
    char *name;                  /* owned */
    pq_esm2_role role;
    int layer;
    pq_tensor_action action;
    pq_qspec spec;
    double sqnr_db;              /* NaN when never measured */
    bool measured;
} pq_fb_tensor;

typedef struct pq_fallback {
    char scheme[16];             /* the fallback scheme; "": none */
    double budget;               /* NaN: none */
    int max_attempts;            /* 0: no limit */
    bool float16;                /* Linears kept as fp16 rather than fp32 */
    int n_attempts;
    pq_fb_attempt *attempts;     /* the last one is the current attempt */
    int n_tensors;
    pq_fb_tensor *tensors;
    bool scheme_tried, int8_tried;
} pq_fallback;

/* Start with attempt 1 ("requested") of configuration c (borrowed);
 * max_attempts 0: no limit. pq_fallback_free it, also after a failure. */
pq_status pq_fallback_init(pq_fallback *fb, const pq_config *c, int max_attempts);
void pq_fallback_free(pq_fallback *fb);

/* Whether c asks for a fallback (a budget or a fallback scheme). */
bool pq_fallback_wanted(const pq_config *c);

/* c with scheme `scheme` as the fallback scheme's step sets it (with a
 * scheme other than static, calibration_method minmax; with weight-only,
 * smoothquant_alpha 0). */
void pq_fallback_set_scheme(pq_config *c, const char *scheme);

/* The current attempt. */
pq_fb_attempt *pq_fallback_current(pq_fallback *fb);

/* Every rank, once the current attempt's plan is built: what each tensor
 * is (SQNRs measured earlier are kept for tensors of the same name). */
pq_status pq_fallback_snapshot(pq_fallback *fb, const pq_plan *p);

/* The current attempt did not quantize: status st and its detail. */
void pq_fallback_failed(pq_fallback *fb, pq_status st, const char *detail);

/* The current attempt's evaluation against the reference (r borrowed) and
 * its stored bytes: accuracy, drop, KL, whether it meets the budget, and the
 * SQNR of every quantized Linear. PQ_ERR_CONFIG when nothing was masked
 * (too few or too short evaluation sequences). */
pq_status pq_fallback_measured(pq_fallback *fb, const pq_eval_report *r, int64_t bytes);
/* The SQNR part alone (nothing when r->sqnr is NULL): the fallback measures
 * it only for an attempt that misses the budget, the only ones whose SQNRs
 * a later step reads. */
void pq_fallback_measured_sqnr(pq_fallback *fb, const pq_eval_report *r);

/* Whether an attempt that drops `drop_count` correct predictions out of
 * n_masked meets budget (NaN: always). */
bool pq_fallback_within(double budget, int64_t drop_count, int64_t n_masked);

/* The step after the current attempt (PQ_FB_NONE when nothing is left or
 * max_attempts is reached). A current attempt that failed moves on only
 * with a fallback scheme. Needs the SQNRs: rank 0 decides, every rank
 * applies. */
pq_fb_step pq_fallback_next(const pq_fallback *fb);

/* Every rank: turn c into the configuration of step s (scheme, global
 * precision, per-tensor overrides, see above) and start its attempt.
 * PQ_ERR_INTERNAL for a step that does not apply. */
pq_status pq_fallback_apply(pq_fallback *fb, pq_fb_step s, pq_config *c);

/* The measured attempt with the smallest drop (ties: smaller KL, then the
 * earlier), as an index into fb->attempts; -1 when none was measured. */
int pq_fallback_best(const pq_fallback *fb);

/* The trail as JSON text (docs/FORMAT.md, /provenance fallback_trail):
 * [{"attempt", "what", "scheme", "recipe": {"precision", "group_size",
 * "symmetric", "per_channel"}, "kept_float", "accuracy",
 * "reference_accuracy", "drop", "kl", "bytes", "accepted", "written"
 * (+ "error" when it did not quantize; numbers null then)}]. Returns owned
 * text (free()), NULL when out of memory. */
char *pq_fallback_trail_json(const pq_fallback *fb);

/* Set the action, spec and float16 of every tensor c->overrides names
 * (pq_plan_build calls it after the recipe). PQ_ERR_CONFIG naming a tensor
 * that does not exist, or a quantized override of a tensor that is not 2-D. */
pq_status pq_plan_apply_overrides(const pq_config *c, pq_plan *p);

#endif
