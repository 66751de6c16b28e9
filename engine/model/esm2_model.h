/* SPDX-License-Identifier: Apache-2.0 */
/* esm2_model.h - the fp32 ESM-2 forward pass (docs/esm2.md section 3) on a
 * packed batch, whole model or one pipeline stage of layers.
 *
 * A packed batch concatenates sequences along the token axis (each one
 * <cls> residues <eos>, no padding); attention runs per sequence. Each
 * sequence's outputs equal those of the same sequence inside a right-padded
 * fair-esm batch (token-dropout ratio from its own length incl. cls/eos).
 * GEMMs go through OpenBLAS; attention heads run in parallel with OpenMP. */
#ifndef PQ_ESM2_MODEL_H
#define PQ_ESM2_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "format/esm2.h"
#include "base/pq_err.h"
#include "kernels/pq_kernels.h"
#include "model/qlinear.h"

/* Called with the input of every Linear before it is applied: site is the
 * weight role (PQ_ESM2_Q, _K, _V share one input; _OUT, _FC1, _FC2, and
 * PQ_ESM2_LM_DENSE_W with layer -1). x is [n_tokens, dim] row-major, borrowed
 * for the call only; ops is the model's kernel context, for observers that
 * compute on x. Called from the forward's thread, in layer order. */
typedef void (*pq_esm2_observe_fn)(void *user, const pq_ops *ops, int layer, pq_esm2_role site,
                                   const float *x, int64_t n_tokens, int64_t dim);

/* How quantized Linear weights of a Proteus HDF5 model run (quantized_mode):
 * AUTO packs them and runs integer kernels chosen per tensor
 * (pq_qlinear_choose); DEQUANT dequantizes them to fp32 at load (the fp32
 * engine on dequantized weights, for reference); WEIGHT_ONLY packs every one
 * for the weight-only kernel (fp32 activations); DYNAMIC runs every one that
 * can take int8 activations (8-bit tensor/channel, any 4-bit) with dynamic
 * per-token quantization (W8A8/W4A8), whatever the file's scheme and stored
 * act_scales say (8-bit group weights stay weight-only). */
typedef enum pq_esm2_qmode {
    PQ_ESM2_QMODE_AUTO = 0,
    PQ_ESM2_QMODE_DEQUANT,
    PQ_ESM2_QMODE_WEIGHT_ONLY,
    PQ_ESM2_QMODE_DYNAMIC
} pq_esm2_qmode;

typedef struct pq_esm2_model_opts {
    int layer_begin, layer_end; /* stage [begin, end); both 0 = all layers */
    int n_threads;              /* 0 = all cores */
    pq_esm2_qmode quantized_mode;
    bool no_fusion;             /* enable_fusion = false: bias+GELU and the
                                   residual add run after the quantized GEMM */
    bool no_threading;          /* threading = false: one thread throughout */
    bool no_verify_checksums;   /* Proteus HDF5: skip the data's Fletcher-32
                                   check (pq_h5r_set_verify) */
    pq_ops ops;                 /* kernel context, copied at load (the model
                                   keeps it; pq_hardware_select fills one);
                                   left zero = the best this CPU runs */
} pq_esm2_model_opts;

typedef struct pq_esm2_model pq_esm2_model;

/* Load from a safetensors checkpoint (file, index or directory; borrowed
 * path). The architecture comes from pq_esm2_detect; every tensor is read
 * as fp32. The embedding (and its tied decoder) is loaded when the stage
 * begins at layer 0 or ends at L; the final LN and LM head when it ends at L.
 * Returns owned *out (pq_esm2_model_free). */
pq_status pq_esm2_model_load(const char *path, const pq_esm2_model_opts *opts,
                             pq_esm2_model **out);
/* Reads tensor `name` (Hugging Face name) as n_elems fp32 values into dst;
 * sets *found = false (and returns PQ_OK) when the tensor is absent. */
typedef pq_status (*pq_esm2_tensor_reader)(void *user, const char *name, int64_t n_elems,
                                           float *dst, bool *found);
/* Load through any reader, for the architecture cfg (borrowed, copied). */
pq_status pq_esm2_model_load_with(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd,
                                  void *user, const pq_esm2_model_opts *opts,
                                  pq_esm2_model **out);
/* For the Linear weight `name` [out_dim, in_dim]: set *ql to an owned
 * packed Linear to run it quantized, or leave it NULL to read it as fp32
 * through the tensor reader. */
typedef pq_status (*pq_esm2_linear_reader)(void *user, const char *name, int64_t out_dim,
                                           int64_t in_dim, pq_qlinear **ql);
/* pq_esm2_model_load_with, with Linear weights offered to lrd first. */
pq_status pq_esm2_model_load_with_linears(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd,
                                          pq_esm2_linear_reader lrd, void *user,
                                          const pq_esm2_model_opts *opts, pq_esm2_model **out);
/* For layer `layer`'s q, k and v weights ([dim, dim] each): set *ql to an
 * owned packed Linear of the three stacked ([3 dim, dim], rows q, k, v), or
 * leave it NULL when they cannot run as one. */
typedef pq_status (*pq_esm2_qkv_reader)(void *user, int layer, int64_t dim, pq_qlinear **ql);
/* pq_esm2_model_load_with_linears, with each layer's q/k/v offered to qrd
 * first when fusion is on at load (opts->no_fusion false): stacked, they run
 * as one GEMM on h quantized once, with bit-identical results.
 * pq_esm2_model_qlinear then returns views of the stack for them. With
 * fusion off at load they are loaded one by one (the unfused path); a later
 * pq_esm2_model_set_fusion(false) runs them as three Linears through the
 * views (same numbers, three times the q/k/v work). */
pq_status pq_esm2_model_load_with_qkv(const pq_esm2_config *cfg, pq_esm2_tensor_reader rd,
                                      pq_esm2_linear_reader lrd, pq_esm2_qkv_reader qrd, void *user,
                                      const pq_esm2_model_opts *opts, pq_esm2_model **out);
/* Same from a Proteus HDF5 model: quantized Linears packed and run on integer
 * kernels, or dequantized to fp32 (opts->quantized_mode). */
pq_status pq_esm2_model_load_h5(const char *path, const pq_esm2_model_opts *opts,
                                pq_esm2_model **out);
/* Either: a path ending in .h5/.hdf5 is read as Proteus HDF5. */
pq_status pq_esm2_model_open(const char *path, const pq_esm2_model_opts *opts,
                             pq_esm2_model **out);
void pq_esm2_model_free(pq_esm2_model *m); /* NULL is fine */

const pq_esm2_config *pq_esm2_model_config(const pq_esm2_model *m);
void pq_esm2_model_stage(const pq_esm2_model *m, int *layer_begin, int *layer_end);
void pq_esm2_model_set_observer(pq_esm2_model *m, pq_esm2_observe_fn fn, void *user);
void pq_esm2_model_set_threads(pq_esm2_model *m, int n_threads); /* 0 = all cores */
void pq_esm2_model_set_fusion(pq_esm2_model *m, bool enable_fusion);

/* Where a forward's time goes (`proteus bench --profile`): wall seconds of
 * each part, added up over the forwards run while a profile is set. The
 * GEMM parts include their activation quantization and fused epilogues
 * (bias, GELU for fc1 when fused, residual adds for out and fc2). */
typedef enum pq_esm2_prof_op {
    PQ_PROF_EMBED = 0,
    PQ_PROF_LAYERNORM,  /* the two per layer and the final one */
    PQ_PROF_QKV,        /* q/k/v projections */
    PQ_PROF_ATTENTION,  /* scores, softmax, weighted sum, per (sequence, head) */
    PQ_PROF_OUT,        /* attention output projection (+ residual) */
    PQ_PROF_FC1,        /* (+ bias + GELU when fused) */
    PQ_PROF_GELU,       /* GELU passes that are not fused */
    PQ_PROF_FC2,        /* (+ residual) */
    PQ_PROF_HEAD,       /* LM head: dense, GELU, LayerNorm, decoder */
    PQ_PROF_N_OPS
} pq_esm2_prof_op;

/* Inside attention, thread-seconds summed over the threads. */
typedef enum pq_esm2_prof_attn {
    PQ_PROF_ATTN_ROTARY = 0, /* q scaling and rotary embedding */
    PQ_PROF_ATTN_SCORES,     /* q k^T (fp32 SGEMM) */
    PQ_PROF_ATTN_SOFTMAX,
    PQ_PROF_ATTN_VALUES,     /* softmax(.) v (fp32 SGEMM) */
    PQ_PROF_ATTN_FUSED,      /* all of the above in the kernels' fused attention */
    PQ_PROF_ATTN_FUSED_BF16, /* the same with bf16 products (attention_bf16) */
    PQ_PROF_ATTN_N
} pq_esm2_prof_attn;

typedef struct pq_esm2_profile {
    double wall_s[PQ_PROF_N_OPS];
    double attn_thread_s[PQ_PROF_ATTN_N];
    int64_t forwards;
} pq_esm2_profile;

/* Accumulate into p (borrowed, must outlive its use; NULL stops). Timing
 * only: outputs are the same with or without a profile. */
void pq_esm2_model_set_profile(pq_esm2_model *m, pq_esm2_profile *p);
const char *pq_esm2_prof_op_name(pq_esm2_prof_op op);
const char *pq_esm2_prof_attn_name(pq_esm2_prof_attn op);
/* The kernel context the model runs with (borrowed, lives as long as m). */
const pq_ops *pq_esm2_model_ops(const pq_esm2_model *m);

/* The packed Linear of a weight role (layer -1 for PQ_ESM2_LM_DENSE_W);
 * borrowed; NULL when that weight runs in fp32. */
const pq_qlinear *pq_esm2_model_qlinear(const pq_esm2_model *m, pq_esm2_role role, int layer);
/* Bytes of weights held in memory: every tensor (fp32 4 bytes per value,
 * packed Linears pq_qlinear_weight_bytes) into *total, and the Linear
 * weights of the layers and the LM dense alone into *linear. */
void pq_esm2_model_weight_bytes(const pq_esm2_model *m, int64_t *total, int64_t *linear);

/* Mutable access to a loaded float tensor (layer < 0 for global roles), NULL
 * when not loaded. Lets callers substitute fake-quantized weights. */
float *pq_esm2_model_tensor(pq_esm2_model *m, pq_esm2_role role, int layer, int64_t *n_elems);

typedef struct pq_esm2_batch {
    int64_t n_seqs;
    const int64_t *offsets; /* [n_seqs + 1], token offsets, offsets[0] = 0 */
    const int32_t *ids;     /* [offsets[n_seqs]] token ids, each sequence <cls> ... <eos> */
} pq_esm2_batch;

typedef struct pq_esm2_outputs {
    /* requests (set by the caller) */
    bool want_logits;         /* needs a stage ending at L */
    int n_repr;               /* representations: layer indices 0..L (negative counts */
    int repr_layers[64];      /* from L+1: -1 = L); 0 = embeddings, L = after final LN */
    bool want_attn;           /* attention probabilities of the stage's layers */
    bool want_contacts;       /* contact map (whole model with the contact head) */

    /* results (owned; pq_esm2_outputs_clear frees them) */
    float *logits;            /* [n_tokens, 33] */
    float *repr[64];          /* [n_tokens, D] each, in request order */
    float *attn;              /* per sequence s at attn_off[s]: [n_layers][H][T_s][T_s] */
    int64_t *attn_off;        /* [n_seqs + 1] */
    float *contacts;          /* per sequence at contact_off[s]: [T_s-2][T_s-2] */
    int64_t *contact_off;     /* [n_seqs + 1] */
    float *x_out;             /* stage not ending at L: output activations [n_tokens, D] */
} pq_esm2_outputs;

void pq_esm2_outputs_clear(pq_esm2_outputs *o); /* frees results, keeps requests */

/* Run the model's stage on a packed batch. x_in: the input activations
 * [n_tokens, D] of layer layer_begin (borrowed), NULL for a stage beginning
 * at 0 (the embedding is computed from ids). Results go into *out.
 * The scratch activations stay in m for the next call (freed with m), so
 * one model runs one forward at a time.
 * Errors: PQ_ERR_CONFIG for a request the stage cannot serve or bad batch
 * layout; PQ_ERR_FORMAT for a token id outside the vocabulary or <pad>;
 * PQ_ERR_RESOURCE. */
pq_status pq_esm2_forward(pq_esm2_model *m, const pq_esm2_batch *b, const float *x_in,
                          pq_esm2_outputs *out);
/* The same from layer `from` of the stage on: x_in the input activations of
 * that layer (the representation of layer `from` of a forward over the
 * same batch), NULL only for layer 0; the same bits as the whole stage's
 * forward given the same activations. No attention maps or contacts
 * unless from is the stage's first layer. */
pq_status pq_esm2_forward_from(pq_esm2_model *m, const pq_esm2_batch *b, int from, const float *x_in,
                               pq_esm2_outputs *out);

/* The checks pq_esm2_forward makes of a packed batch for cfg (also the
 * training forward's, engine/train): sequences of at least 3 tokens, ids
 * inside the vocabulary and not <pad>. *max_T: the longest sequence.
 * Errors: PQ_ERR_CONFIG, PQ_ERR_FORMAT. */
pq_status pq_esm2_check_batch(const pq_esm2_config *cfg, const pq_esm2_batch *b, int64_t *max_T);

/* Token dropout's denominator of sequence s: 1 - n_mask / n_tokens (cls and
 * eos counted), in fp32 (esm2.md 3.1). */
float pq_esm2_td_denom(const pq_esm2_batch *b, int64_t s);

/* x [N, D] = the embedding rows E[id] of b's tokens, with token dropout
 * when cfg has it: <mask> rows zero, x * 0.88f / pq_esm2_td_denom. */
void pq_esm2_embed(const pq_esm2_config *cfg, const float *E, const pq_esm2_batch *b, float *x);

#endif
