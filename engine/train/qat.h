/* SPDX-License-Identifier: Apache-2.0 */
/* qat.h - the quantization-aware training state: which weights are fake
 * quantized (the six Linear weights of every layer, as `proteus quantize`
 * quantizes by default), their learned steps and fixed zero points, and the
 * passes that turn the master weights into the weights the forward sees
 * and the gradient of those back into master-weight and step gradients
 * (fake_quant.h). With static activations, also one learned input step
 * per static-scheme site (4 per layer: the inputs of q/k/v, out, fc1, fc2),
 * after the weights' steps in the same array. */
#ifndef PQ_QAT_H
#define PQ_QAT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "quant/qspec.h"
#include "train/train_params.h"

typedef struct pq_qat_site {
    pq_esm2_role role;
    int layer;
    int64_t w_off;          /* into the weight buffer (p's layout) */
    int64_t rows, cols, gs; /* gs = cols per channel, else the group size */
    int64_t n_groups;       /* scales per row */
    int64_t s_off;          /* into scale / zp */
} pq_qat_site;

typedef struct pq_qat {
    pq_qspec spec;          /* channel or group granularity */
    int32_t qmin, qmax;
    int n_sites;
    pq_qat_site *site;      /* owned */
    int64_t n_scales;       /* weight steps, then the input steps */
    float *scale;           /* owned [n_scales], learned */
    int32_t *zp;            /* owned [n_scales], fixed (NULL: symmetric) */
    int64_t act_off;        /* the input steps: scale[act_off + 4 l + k] */
    int n_act;              /* 4 L with static activations, else 0 */
} pq_qat;

/* k of the input step of (role, layer) at scale[act_off + 4 layer + k]:
 * 0 for q/k/v (one input), 1 out, 2 fc1, 3 fc2; -1 for other roles. */
int pq_qat_act_kind(pq_esm2_role role);

/* Sites for p's layout with steps and zero points initialised by RTN
 * (quant/rtn.h) on the weights w (borrowed): at step 0 the fake-quantized
 * weights are exactly the values of the file `proteus quantize` writes.
 * spec: per channel or grouped (per tensor is refused: PQ_ERR_CONFIG).
 * Errors: rtn's (PQ_ERR_QUANTIZATION for NaN/Inf weights), PQ_ERR_RESOURCE.
 * act_static: room for the input steps (1.0 until pq_qat_init_file sets
 * them). Returns owned *out (pq_qat_free). */
pq_status pq_qat_create(const pq_train_params *p, const float *w, const pq_qspec *spec, bool act_static,
                        pq_qat **out);
void pq_qat_free(pq_qat *q); /* NULL is fine */

/* w_hat = w with every site fake quantized (other tensors copied). Rows in
 * parallel over n_threads; the same bits for any count. */
void pq_qat_apply(const pq_qat *q, const float *w, int64_t n_floats, float *w_hat, int n_threads);

/* In place on grad (the gradient with respect to w_hat): each site's part
 * becomes the gradient with respect to w (straight through inside the
 * range, 0 outside); dscale [n_scales] gets the LSQ step gradients added. */
void pq_qat_backward(const pq_qat *q, const float *w, float *grad, float *dscale, int n_threads);

/* Start from the quantized model file at path (borrowed; `proteus
 * quantize`'s output for the same layout): weights true: every site's
 * master weights become the file's dequantized values and its steps and
 * zero points the file's (so that the first fake quantization gives the
 * file's codes); acts true: the input steps become the file's act_scale
 * (q's for q/k/v). Errors: PQ_ERR_CONFIG when the file's tensor is stored
 * with another precision, granularity or symmetry, or lacks an act_scale;
 * the reader's (PQ_ERR_FORMAT, PQ_ERR_IO); PQ_ERR_RESOURCE. */
pq_status pq_qat_init_file(pq_qat *q, const pq_train_params *p, float *w, const char *path, bool weights,
                           bool acts);

#endif
