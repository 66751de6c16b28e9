/* SPDX-License-Identifier: Apache-2.0 */
/* trainer.h - masked-LM training of ESM-2, fp32 or quantization-aware: the
 * state (master weights, AdamW moments, LSQ steps and their moments, step)
 * and one step split so that micro-batches can run anywhere.
 *
 * A step covers batch_size sequences (train_data.h), cut into micro-batches
 * of micro_size sequences. Each micro-batch's gradient is computed whole,
 * then the micro-batch gradients are added in micro-batch order into the
 * step's gradient: the same bits whichever process computed each one
 * (pq_trainer_step on one process; worker/train_mpi.c over ranks). The loss
 * is the mean cross-entropy over the step's targets. Then, for QAT, the
 * straight-through and LSQ backward; clipping of the global gradient norm
 * (weights and steps together); AdamW (weight decay on the 2-D weights only;
 * steps clamped to at least PQ_SCALE_EPS). The input steps of static
 * activations are a few floats every process holds and updates alike:
 * their micro-batch gradients ride after the weights' (grad_floats) and
 * are summed in micro-batch order; their squared norm comes after the
 * chunks' in the global norm. */
#ifndef PQ_TRAINER_H
#define PQ_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "model/fasta.h"
#include "quant/qspec.h"
#include "train/adamw.h"
#include "train/qat.h"
#include "train/train_data.h"
#include "train/train_params.h"

typedef struct pq_train_opts {
    int64_t steps;          /* planned steps (the schedule) */
    int64_t batch_size;     /* sequences per step */
    int64_t micro_size;     /* sequences per micro-batch */
    int64_t max_residues;   /* crop length */
    uint64_t seed;
    double lr, min_lr_frac, weight_decay, clip; /* clip <= 0: none */
    int64_t warmup;
    pq_adamw adam;
    bool qat;               /* fake-quantize the Linear weights (spec) */
    pq_qspec spec;
    bool act_int8;          /* and their inputs, int8 per token */
    bool act_static;        /* with act_int8: int8 with one learned step
                               per input site instead (fake_quant.h),
                               1.0 until pq_qat_init_file sets them */
    bool distill;           /* loss: KL(fp32 teacher || model) at every
                               residue instead of cross-entropy at the
                               targets; the teacher is the starting model */
    int n_threads;
} pq_train_opts;

/* The defaults: batch 8, micro 4, 512 residues, lr 1e-4, warm-up 10 % of
 * the steps, cosine to 10 %, weight decay 0.01, clip 1.0, betas (0.9,
 * 0.999), eps 1e-8, seed 0. */
pq_train_opts pq_train_defaults(void);

typedef struct pq_trainer {
    pq_train_opts o;
    pq_train_params *p;     /* owned: layout and master weights */
    float *m, *v;           /* owned: AdamW moments of the weights */
    pq_qat *q;              /* owned; NULL without QAT */
    float *sm, *sv;         /* owned: moments of the steps */
    int64_t step;           /* steps done */
    double *curve;          /* owned [steps]: mean loss of each step done */
    int64_t curve_cap;
    /* working state */
    pq_train_data data;
    pq_train_ws *ws;
    pq_train_mb mb;
    float *w_hat;           /* fake-quantized weights (QAT) or NULL */
    float *grad, *dscale;   /* the step's sums */
    float *w_teacher;       /* distillation: the starting weights */
    pq_train_ws *ws_t;      /* distillation: the teacher's forward */
    float *t_logits;        /* distillation: teacher logits of a micro-batch */
    int64_t t_cap;
    int64_t step_targets;   /* targets of the current step */
    /* the update's fixed chunks (train_update.h) */
    int64_t n_chunks;
    struct pq_train_chunk *chunk; /* owned [n_chunks] */
    double *chunk_sq;       /* owned [n_chunks]: squared gradient norms */
} pq_trainer;

/* Takes p (freed with the trainer, also on failure); borrows recs (they
 * must outlive tr). QAT state from RTN on p's weights when o->qat.
 * Errors: PQ_ERR_CONFIG for bad options, qat's, PQ_ERR_RESOURCE. Returns
 * owned *out (pq_trainer_free). */
pq_status pq_trainer_create(pq_train_params *p, const pq_fasta_record *recs, int64_t n_recs,
                            const pq_train_opts *o, pq_trainer **out);
void pq_trainer_free(pq_trainer *tr); /* NULL is fine */

int64_t pq_trainer_n_micro(const pq_trainer *tr);

/* Floats of one micro-batch gradient: the layout's, then the input steps'. */
int64_t pq_trainer_grad_floats(const pq_trainer *tr);

/* The input steps' gradient tr->dscale[act_off..] from the micro-batch
 * gradients' tails: tail(mb) points to micro-batch mb's, added from zero
 * in micro-batch order. */
void pq_trainer_sum_act(pq_trainer *tr, const float *(*tail)(void *user, int64_t mb), void *user);

/* Start step tr->step + 1: fake-quantize the weights (QAT) and count the
 * step's targets. */
pq_status pq_trainer_begin_step(pq_trainer *tr);

/* The gradient of micro-batch mb of the current step into g
 * (pq_trainer_grad_floats, overwritten; with respect to the fake-quantized weights under QAT), with
 * the loss weighted by 1 / (the step's targets); *loss_sum gets its
 * weighted cross-entropy. Errors: PQ_ERR_ACCURACY when the loss is NaN or
 * Inf (the detail names the step and the first tensor that overflowed),
 * the forward's. */
pq_status pq_trainer_micro_grad(pq_trainer *tr, int64_t mb, float *g, double *loss_sum);

/* Finish the step from the summed gradient tr->grad and mean loss: QAT
 * backward, clipping, AdamW, step + 1, loss on the curve (every chunk of
 * train_update.h on this process). PQ_ERR_ACCURACY
 * naming the step and tensor when the gradient or an updated weight is not
 * finite (the trainer is then unusable; the last checkpoint holds the last
 * good state). */
pq_status pq_trainer_finish_step(pq_trainer *tr, double loss);

/* begin + every micro-batch in order + finish, on this process. */
pq_status pq_trainer_step(pq_trainer *tr, double *loss);

/* Mean masked-LM cross-entropy of the model as it trains (fake-quantized
 * weights under QAT) on recs (borrowed), every sequence once with the
 * masking of a fixed step (the same for every call), micro_size sequences
 * at a time. Errors: the forward's. */
pq_status pq_trainer_eval(pq_trainer *tr, const pq_fasta_record *recs, int64_t n_recs, double *mean_loss);

#endif
