/* SPDX-License-Identifier: Apache-2.0 */
/* esm2_grad.h - the training forward of ESM-2 on a packed batch, keeping
 * the activations its backward needs, and the backward pass: gradients of
 * the masked-LM loss with respect to every trainable tensor.
 *
 * Kept per layer and token: the layer input, both LayerNorm outputs and
 * their statistics, q/k/v after scale and rotary, the attention output, the
 * residual after attention and the fc1 output before GELU: 12 D + 4 floats,
 * plus the attention probabilities, n_heads T floats per token (T its
 * sequence's length). GELU(fc1) is recomputed in the backward instead of
 * kept (4 D floats less). The LM head runs on the target rows only: the
 * loss reads no other row, so neither does its gradient.
 *
 * A packed batch has no padding; its gradients equal those of the same
 * sequences in a right-padded fair-esm batch (pad rows reach no loss). */
#ifndef PQ_ESM2_GRAD_H
#define PQ_ESM2_GRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "model/esm2_model.h"
#include "train/train_params.h"

typedef struct pq_train_batch {
    pq_esm2_batch b;         /* packed ids as the model sees them (masked) */
    int64_t n_targets;       /* rows that enter the loss */
    const int64_t *tgt_pos;  /* [n_targets] token index into b.ids, distinct */
    const int32_t *tgt_id;   /* [n_targets] the id to predict there */
    /* distillation (both NULL: cross-entropy on tgt_id): teacher logits
     * [n_targets, V] for the loss KL(softmax(teacher) || softmax(logits));
     * logits_out [n_targets, V] receives this forward's logits */
    const float *teacher;
    float *logits_out;
} pq_train_batch;

typedef struct pq_train_ws pq_train_ws;

/* A workspace for the parameters' architecture (p borrowed; it must outlive
 * ws), running on n_threads (0 = all cores). Grows with the batches it
 * sees. Returns owned *out (pq_train_ws_free). */
pq_status pq_train_ws_create(const pq_train_params *p, int n_threads, pq_train_ws **out);
void pq_train_ws_free(pq_train_ws *ws); /* NULL is fine */

/* on: every Linear input of the layers (q/k/v, out, fc1, fc2) is fake
 * quantized to int8 per token (fake_quant.h) in the forward, with a
 * straight-through gradient; off (the default): fp32. */
void pq_train_ws_set_act_int8(pq_train_ws *ws, bool on);

/* Static int8 activations instead (fake_quant.h): scale [4 L] (borrowed;
 * per layer the inputs of q/k/v, out, fc1 and fc2, the sites of the static
 * scheme) steps every Linear input; the backward adds their LSQ gradients
 * into dscale [4 L] (borrowed). scale NULL: off. */
void pq_train_ws_set_act_static(pq_train_ws *ws, const float *scale, float *dscale);

/* After a forward whose loss is not finite: where the activations first
 * hold NaN or Inf ("the output of layer 3", "the LM head") into what. */
void pq_train_ws_first_nonfinite(const pq_train_ws *ws, char *what, size_t n);

/* Floats the forward keeps for batch tb (activations and head rows). */
int64_t pq_train_ws_floats(const pq_train_ws *ws, const pq_train_batch *tb);

/* Training forward with weights w (a buffer of p's layout, borrowed: the
 * master weights, or fake-quantized ones): keeps the activations in ws and
 * the gradient of weight * loss with respect to the logits. *loss_sum gets
 * the sum over targets of the cross-entropy (the batch mean is weight =
 * 1/n_targets). Errors: PQ_ERR_CONFIG (malformed batch, target outside it
 * or repeated), PQ_ERR_FORMAT (token id outside the vocabulary),
 * PQ_ERR_RESOURCE, pq_sgemm's. */
pq_status pq_train_forward(pq_train_ws *ws, const float *w, const pq_train_batch *tb, float weight,
                           double *loss_sum);

/* Backward of the last pq_train_forward (same w and batch): adds the
 * gradient of weight * loss into grad (p's layout). The same bits for any
 * thread count. Errors: pq_sgemm's. */
pq_status pq_train_backward(pq_train_ws *ws, const float *w, const pq_train_batch *tb, float *grad);

/* After pq_train_backward: the gradient with respect to the embedding rows
 * looked up for each token (E[id], before token dropout), [N, D]; zero for
 * <mask> tokens. Borrowed from ws. */
const float *pq_train_ws_dembed(const pq_train_ws *ws);

#endif
