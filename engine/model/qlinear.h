/* SPDX-License-Identifier: Apache-2.0 */
/* qlinear.h - one Linear layer y = x W^T + b in whichever arithmetic its
 * weights call for: fp32 (OpenBLAS), int8 activations with dynamic per-token
 * quantization or a static per-tensor scale on int8 weights (W8A8) or int4
 * weights (W4A8, any granularity, group scales included), or weight-only
 * int8/int4 on fp32 activations. Quantized weights are packed
 * once (kernels/gemm/pq_gemm.h); no fp32 copy is kept. */
#ifndef PQ_QLINEAR_H
#define PQ_QLINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "kernels/pq_kernels.h"
#include "model/sgemm_split.h"
#include "quant/qtensor.h"

/* The W8A8 kinds are the int8-activation kinds: with 4-bit weights they run
 * W4A8 (pq_qlinear_bits tells which). */
typedef enum pq_qlinear_kind {
    PQ_QLINEAR_F32 = 0,
    PQ_QLINEAR_W8A8_DYNAMIC,
    PQ_QLINEAR_W8A8_STATIC,
    PQ_QLINEAR_WEIGHT_ONLY
} pq_qlinear_kind;

/* What follows the bias: nothing, exact GELU, or y = residual + y. */
typedef enum pq_qlinear_post {
    PQ_QLINEAR_POST_NONE = 0,
    PQ_QLINEAR_POST_GELU,
    PQ_QLINEAR_POST_RESIDUAL
} pq_qlinear_post;

typedef struct pq_qlinear pq_qlinear;

/* fp32 Linear from w [out, in] (borrowed, copied). Returns owned *out. */
pq_status pq_qlinear_from_f32(const float *w, int64_t out_dim, int64_t in_dim, pq_qlinear **out);

/* Quantized Linear from the HDF5 codes in qt (borrowed; packed, not kept).
 * kind must be a quantized kind; the int8-activation kinds need 8-bit
 * tensor/channel weights or 4-bit weights.
 * act_scale/act_zp: the static input qparams (W8A8_STATIC only; act_zp 0 when
 * symmetric, codes then in [-127, 127], else [-128, 127]). `name` is used in
 * error details. Returns owned *out; PQ_ERR_CONFIG when the kind cannot run
 * these weights. The weights are packed by n_threads OpenMP threads (<= 0:
 * the OpenMP default); the packed bytes do not depend on it. */
pq_status pq_qlinear_from_qtensor(const char *name, const pq_qtensor *qt, pq_qlinear_kind kind,
                                  float act_scale, int32_t act_zp, int n_threads, pq_qlinear **out);

/* One Linear whose weight is the row stack of the n_parts quantized weights
 * qts[0..n_parts) (borrowed; e.g. q, k and v: out = the sum of their rows),
 * so that one GEMM computes all of them: the parts' outputs are column ranges
 * of its output, each bit-identical to the part run alone (int32 sums are
 * exact, the epilogue is per column). Per-tensor scales are expanded to one
 * per row. The parts must share bits, in_dim, zero-point presence and,
 * tensor/channel apart, granularity and group size; kind, act_scale, act_zp
 * and n_threads as pq_qlinear_from_qtensor; at most 8 parts, their codes
 * packed where they lie (not copied into one buffer first). Returns owned
 * *out; PQ_ERR_CONFIG when the parts cannot stack. */
/* Whether weights quantized as a and b can be stacked into one Linear: the
 * same bits, symmetry, granularity (tensor counting as channel) and, for
 * group scales, group size. */
bool pq_qlinear_specs_stack(const pq_qspec *a, const pq_qspec *b);

pq_status pq_qlinear_from_qtensors_stacked(const char *name, const pq_qtensor *const *qts, int n_parts,
                                           pq_qlinear_kind kind, float act_scale, int32_t act_zp, int n_threads,
                                           pq_qlinear **out);

/* A Linear for output rows [row0, row0 + n) of parent (borrowed; must outlive
 * the view): pq_qlinear_forward runs the whole parent and keeps those
 * columns, so it gives the numbers of a Linear of those rows alone, at the
 * parent's cost (for per-part diagnostics, not speed). Holds no weights
 * (pq_qlinear_weight_bytes 0). Returns owned *out. */
pq_status pq_qlinear_view_rows(const pq_qlinear *parent, int64_t row0, int64_t n, pq_qlinear **out);

/* The kind auto mode picks for a stored quantized weight: weight-only for
 * scheme "weight-only"/"w8a16"/"w4a16" and for 8-bit group scales; otherwise int8
 * activations, static (W8A8/W4A8) when an act_scale is stored, dynamic
 * (scheme "dynamic"/"w8a8"/"w4a8") else. force_weight_only picks weight-only
 * always. */
pq_qlinear_kind pq_qlinear_choose(int bits, pq_granularity gran, const char *scheme,
                                  bool has_act_scale, bool force_weight_only);

/* y[m, out] = post(x[m, in] W^T + bias) with the kernels of the context ops
 * (borrowed; the model's). bias [out] or NULL (borrowed). residual [m, out]
 * for PQ_QLINEAR_POST_RESIDUAL, must not overlap y. n_threads <= 0: OpenMP
 * default. Results do not depend on n_threads. */
pq_status pq_qlinear_forward(const pq_ops *ops, const pq_qlinear *l, const float *x, int64_t m,
                             const float *bias, pq_qlinear_post post, const float *residual, float *y,
                             int n_threads);

/* pq_qlinear_forward on rows that are the sequences rows.seg of a batch: an
 * fp32 Linear then gives each row the numbers of its sequence alone
 * (model/sgemm_split.h); the integer kernels do whatever the rows. */
pq_status pq_qlinear_forward_rows(const pq_ops *ops, const pq_qlinear *l, const float *x, int64_t m,
                                  pq_row_segs rows, const float *bias, pq_qlinear_post post,
                                  const float *residual, float *y, int n_threads);

pq_qlinear_kind pq_qlinear_get_kind(const pq_qlinear *l);
int pq_qlinear_bits(const pq_qlinear *l);      /* 32, 8 or 4 */
int64_t pq_qlinear_out_dim(const pq_qlinear *l);
int64_t pq_qlinear_in_dim(const pq_qlinear *l);
/* Bytes of weight data held: codes + scales (+ zero points, row sums) for
 * packed weights, out * in * 4 for fp32, 0 for a view. */
int64_t pq_qlinear_weight_bytes(const pq_qlinear *l);
const char *pq_qlinear_kind_name(pq_qlinear_kind k);
void pq_qlinear_free(pq_qlinear *l); /* NULL is fine */

#endif
