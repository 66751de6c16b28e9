/* SPDX-License-Identifier: Apache-2.0 */
/* train_params.h - the trainable fp32 tensors of an ESM-2 model in one flat
 * buffer, so that gradients, optimizer moments and checkpoints share one
 * layout (the same offsets index the weights, the gradients and each moment).
 *
 * Trained: every per-layer Linear weight and bias and both LayerNorms, the
 * token embedding (tied with the LM decoder unless the checkpoint has its own
 * decoder), the final LayerNorm and the LM head (dense, LayerNorm, bias).
 * Kept fixed and outside the buffer: the rotary inv_freq buffers. The contact
 * head is not loaded (masked-LM training does not reach it).
 *
 * Per layer the tensors lie in role order (q, k, v, out, fc1, fc2, then the
 * biases, then the LayerNorms), so q/k/v weights form one [3D, D] block and
 * their biases one [3D] block, used as a single Linear. */
#ifndef PQ_TRAIN_PARAMS_H
#define PQ_TRAIN_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "format/esm2.h"

typedef struct pq_train_tensor {
    pq_esm2_role role;
    int layer;        /* -1 for global tensors */
    int64_t off;      /* floats from the buffer start */
    int64_t n_elems;
    int64_t rows, cols; /* 2-D shape ([n, 1] for vectors) */
} pq_train_tensor;

typedef struct pq_train_params {
    pq_esm2_config cfg;
    int64_t n_floats;      /* length of data */
    float *data;           /* owned: every trainable float */
    float *inv_freq;       /* owned: [L][head_dim/2], not trained */
    int n_tensors;
    pq_train_tensor *t;    /* owned: [n_tensors], layers in order, then globals */
    int64_t *idx;          /* owned: [(L+1) * role count] tensor index or -1 */
} pq_train_params;

/* Load the trainable tensors of a safetensors ESM-2 checkpoint (path
 * borrowed) as fp32. Returns owned *out (pq_train_params_free). Errors:
 * pq_st_open's and pq_esm2_detect's, PQ_ERR_RESOURCE. */
pq_status pq_train_params_load(const char *path, pq_train_params **out);

/* An empty layout for cfg (borrowed, copied): data zeroed, inv_freq from
 * pq_esm2_inv_freq. Returns owned *out. */
pq_status pq_train_params_create(const pq_esm2_config *cfg, pq_train_params **out);

void pq_train_params_free(pq_train_params *p); /* NULL is fine */

/* The tensor of (role, layer) (layer ignored for global roles), NULL when
 * it is not trained. */
const pq_train_tensor *pq_train_find(const pq_train_params *p, pq_esm2_role role, int layer);

/* base + the offset of (role, layer): the same tensor in any buffer of the
 * layout (weights, gradients, moments). NULL when it is not trained. */
float *pq_train_at(const pq_train_params *p, float *base, pq_esm2_role role, int layer);

/* The decoder weight [V, D] inside base: its own tensor when the checkpoint
 * has one, else the token embedding it is tied to. */
float *pq_train_decoder(const pq_train_params *p, float *base);

/* The first tensor of p's layout in buf (a buffer of the layout) holding NaN
 * or Inf: its name into name, true; false when every value is finite. */
bool pq_train_first_nonfinite(const pq_train_params *p, const float *buf, char *name, size_t n);

#endif
