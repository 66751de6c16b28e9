/* SPDX-License-Identifier: Apache-2.0 */
/* qat.h - the quantization-aware training state: which weights are fake
 * quantized (the six Linear weights of every layer, as `proteus quantize`
 * quantizes by default), their learned steps and fixed zero points, and the
 * passes that turn the master weights into the weights the forward sees
 * and the gradient of those back into master-weight and step gradients
 * (fake_quant.h). */
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
    int64_t n_scales;
    float *scale;           /* owned [n_scales], learned */
    int32_t *zp;            /* owned [n_scales], fixed (NULL: symmetric) */
} pq_qat;

/* Sites for p's layout with steps and zero points initialised by RTN
 * (quant/rtn.h) on the weights w (borrowed): at step 0 the fake-quantized
 * weights are exactly the values of the file `proteus quantize` writes.
 * spec: per channel or grouped (per tensor is refused: PQ_ERR_CONFIG).
 * Errors: rtn's (PQ_ERR_QUANTIZATION for NaN/Inf weights), PQ_ERR_RESOURCE.
 * Returns owned *out (pq_qat_free). */
pq_status pq_qat_create(const pq_train_params *p, const float *w, const pq_qspec *spec, pq_qat **out);
void pq_qat_free(pq_qat *q); /* NULL is fine */

/* w_hat = w with every site fake quantized (other tensors copied). Rows in
 * parallel over n_threads; the same bits for any count. */
void pq_qat_apply(const pq_qat *q, const float *w, int64_t n_floats, float *w_hat, int n_threads);

/* In place on grad (the gradient with respect to w_hat): each site's part
 * becomes the gradient with respect to w (straight through inside the
 * range, 0 outside); dscale [n_scales] gets the LSQ step gradients added. */
void pq_qat_backward(const pq_qat *q, const float *w, float *grad, float *dscale, int n_threads);

#endif
