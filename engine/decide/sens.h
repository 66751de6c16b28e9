/* SPDX-License-Identifier: Apache-2.0 */
/* sens.h - per-Linear sensitivity measured with the engine: the fp32 model
 * is loaded once, the calibration sequences are masked (15 % by default, the
 * masking of `proteus score`) and run once through it for the reference
 * logits and loss; then a unit quantizes ONE Linear weight at ONE candidate
 * in memory (round to nearest with the quantizer's own rtn and dequantized
 * back, or rounded to fp16), runs the same batches, and puts the weight back.
 *
 * With cache_layers the reference pass keeps every layer's input
 * activations (every stride-th layer's when all would take more than
 * PQ_SENS_CACHE_BYTES), and a unit of layer l runs the forward from there
 * (the layers before l hold their fp32 weights): the same bits as the
 * whole forward, a fraction of its time.
 *
 * A unit's numbers depend only on the model, the data and the unit: the
 * forward is the same code on every rank and for any thread count, so a
 * table filled by any split of the units over ranks is the same bytes. */
#ifndef PQ_DECIDE_SENS_H
#define PQ_DECIDE_SENS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "decide/table.h"
#include "eval/eval_metrics.h"
#include "model/esm2_model.h"

typedef struct pq_sens_opts {
    const char *model;      /* float checkpoint (safetensors, .pt), borrowed */
    const char *fasta;      /* calibration sequences, borrowed */
    int64_t max_seqs;       /* first N sequences (0: all) */
    int64_t max_length;     /* residues per sequence, longer ones cropped */
    int64_t batch_tokens;   /* tokens per forward batch (at least 3) */
    uint64_t seed;          /* masking seed */
    double mask_frac;       /* masking probability, in (0, 1) */
    pq_esm2_model_opts model_opts;
    bool cache_layers;      /* keep the layer inputs for pq_sens_measure (see above) */
} pq_sens_opts;

/* The most bytes of layer inputs kept with cache_layers. */
#define PQ_SENS_CACHE_BYTES ((int64_t)2 << 30)

typedef struct pq_sens pq_sens;

/* Load the model and the data and run the reference pass (which also sums
 * the squares of every Linear's input per column, for the estimate).
 * Returns owned *out (pq_sens_close). The loaders' errors; PQ_ERR_FORMAT
 * when the FASTA has no usable sequence. */
pq_status pq_sens_open(const pq_sens_opts *o, pq_sens **out);
void pq_sens_close(pq_sens *s); /* NULL is fine */

/* Allocate *t for the model's Linears (layer-major: q, k, v, o, fc1, fc2)
 * and the candidates cands[0..n) (copied), with every cell's bytes filled.
 * PQ_ERR_CONFIG for a candidate that does not fit a Linear. */
pq_status pq_sens_layout(const pq_sens *s, const pq_cand *cands, int n, pq_sens_table *t);

/* Units: one per (Linear, candidate that is not fp32), Linear-major. */
int pq_sens_n_units(const pq_sens_table *t);
void pq_sens_unit_cell(const pq_sens_table *t, int unit, int *lin, int *cand);

/* Measure unit `unit` of t into *out (bytes from t; d_loss, kl, estimate).
 * The model is left as it was. PQ_ERR_RESOURCE, the forward's errors. */
pq_status pq_sens_measure(pq_sens *s, const pq_sens_table *t, int unit, pq_sens_cell *out);

/* Run model m (NULL: the loaded one, with whatever weights it holds now)
 * over the masked batches: its masked-LM tallies into *mlm, the mean
 * KL(reference || m) of the logits over the residue positions of the masked
 * sequences into *kl, the forward wall seconds into *seconds. m must have
 * the loaded model's vocabulary. The forward's errors. */
pq_status pq_sens_run(pq_sens *s, pq_esm2_model *m, pq_eval_mlm *mlm, double *kl, double *seconds);
/* Tokens in the batches. */
int64_t pq_sens_tokens(const pq_sens *s);
/* The loaded fp32 model (borrowed). */
pq_esm2_model *pq_sens_model(pq_sens *s);

/* The reference's masked-LM loss (mean nats) and accuracy on the data. */
void pq_sens_reference(const pq_sens *s, double *loss, double *accuracy, int64_t *n_seqs, int64_t *n_masked);

#endif
