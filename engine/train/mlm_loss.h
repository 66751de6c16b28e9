/* SPDX-License-Identifier: Apache-2.0 */
/* mlm_loss.h - masked-LM cross-entropy over the logits of the target rows
 * and its gradient. */
#ifndef PQ_MLM_LOSS_H
#define PQ_MLM_LOSS_H

#include <stdint.h>

/* logits [n, V] of n target rows with target ids tgt[n]: returns the sum
 * over rows of -log softmax(logits)[tgt] (in double), and writes dlogits
 * [n, V] = weight * (softmax - onehot(tgt)) (dlogits may equal logits).
 * The mean loss of a batch is weight = 1/n. */
double pq_mlm_loss(const float *logits, int64_t n, int64_t V, const int32_t *tgt, float weight,
                   float *dlogits);

/* Distillation: the sum over rows of KL(softmax(teacher) || softmax(logits))
 * (in double), and dlogits = weight * (softmax(logits) - softmax(teacher))
 * (dlogits may equal logits). */
double pq_kd_loss(const float *logits, const float *teacher, int64_t n, int64_t V, float weight,
                  float *dlogits);

#endif
