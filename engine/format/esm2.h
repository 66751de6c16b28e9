/* SPDX-License-Identifier: Apache-2.0 */
/* esm2.h - the ESM-2 family: published sizes, tensor names, and recognition
 * of an architecture from a checkpoint's tensor names and shapes. */
#ifndef PQ_ESM2_H
#define PQ_ESM2_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "format/safetensors.h"

typedef struct pq_esm2_arch {
    const char *name;      /* "esm2_t6_8M_UR50D" ... */
    int num_layers;        /* L */
    int embed_dim;         /* D */
    int attention_heads;   /* H */
    int ffn_dim;           /* 4D */
    int vocab_size;        /* 33 */
    int64_t n_params;      /* computed as in esm2.md section 1 (with contact head) */
} pq_esm2_arch;

/* The six published sizes, smallest first. */
const pq_esm2_arch *pq_esm2_archs(int *n);
/* By full name ("esm2_t33_650M_UR50D") or short name ("t33_650M", "650M"),
 * NULL if unknown. */
const pq_esm2_arch *pq_esm2_arch_find(const char *name);

typedef struct pq_esm2_config {
    int num_layers, embed_dim, attention_heads, head_dim, ffn_dim, vocab_size;
    float layer_norm_eps;      /* always 1e-5 for ESM-2 */
    bool token_dropout;        /* always true for ESM-2 */
    bool has_contact_head;
    bool has_decoder;          /* lm_head.decoder.weight present (else tied) */
    bool has_inv_freq;         /* rotary inv_freq buffers present */
    const pq_esm2_arch *arch;  /* the published size it matches, or NULL */
} pq_esm2_config;

/* Per-layer tensor roles. */
typedef enum pq_esm2_role {
    PQ_ESM2_ROLE_OTHER = 0,
    PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2,
    PQ_ESM2_Q_BIAS, PQ_ESM2_K_BIAS, PQ_ESM2_V_BIAS, PQ_ESM2_OUT_BIAS,
    PQ_ESM2_FC1_BIAS, PQ_ESM2_FC2_BIAS,
    PQ_ESM2_LN_ATTN_W, PQ_ESM2_LN_ATTN_B, PQ_ESM2_LN_FFN_W, PQ_ESM2_LN_FFN_B,
    PQ_ESM2_INV_FREQ,
    PQ_ESM2_EMBED,        /* esm.embeddings.word_embeddings.weight */
    PQ_ESM2_LN_FINAL_W, PQ_ESM2_LN_FINAL_B,
    PQ_ESM2_LM_DENSE_W, PQ_ESM2_LM_DENSE_B, PQ_ESM2_LM_LN_W, PQ_ESM2_LM_LN_B,
    PQ_ESM2_LM_BIAS, PQ_ESM2_LM_DECODER,
    PQ_ESM2_CONTACT_W, PQ_ESM2_CONTACT_B,
    PQ_ESM2_IGNORED,      /* position_ids, position_embeddings, pooler, lm_head.decoder.bias */
    PQ__ESM2_ROLE_COUNT
} pq_esm2_role;

/* Role of a Hugging Face tensor name; *layer gets the layer index for
 * per-layer roles, -1 otherwise. Unknown names give PQ_ESM2_ROLE_OTHER. */
pq_esm2_role pq_esm2_role_of(const char *name, int *layer);

/* Hugging Face name of a role (layer ignored for global roles) into buf.
 * Returns buf. */
char *pq_esm2_name(pq_esm2_role role, int layer, char *buf, size_t n);

/* True for the six per-layer Linear weights (q, k, v, out, fc1, fc2). */
bool pq_esm2_role_is_linear(pq_esm2_role role);

/* The rotary inv_freq vector a checkpoint would carry for `head_dim` (even):
 * out[i] = 1 / 10000^(2i/head_dim) evaluated in fp32 as torch does, then
 * rounded to fp16 and back (esm2.md 6.1). Writes head_dim/2 floats into the
 * caller's out. */
void pq_esm2_inv_freq(int head_dim, float *out);

/* Recognise the architecture from names and shapes. Checks that every
 * required tensor exists with the expected shape and that no unknown tensor
 * is present; PQ_ERR_FORMAT naming the tensor and the expected vs actual
 * shape otherwise. A missing lm_head.decoder.weight is allowed (tied). */
pq_status pq_esm2_detect(const pq_st_model *m, pq_esm2_config *cfg);

#endif
