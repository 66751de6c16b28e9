/* SPDX-License-Identifier: Apache-2.0 */
/* smooth.h - SmoothQuant (Xiao et al., 2022) for the W8A8 schemes: move the
 * activation outliers of every Linear input that has a LayerNorm in front
 * into the weights, per input channel j:
 *
 *   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
 *
 * max|X_j| from the calibration statistics (per-channel absmax of the site),
 * max|W_j| over the rows of every Linear fed by the site (q, k and v
 * together). The LayerNorm's weight and bias are divided by s, the Linears'
 * weight columns multiplied by s; the product is the same function, and the
 * smoothed activation X_j / s_j quantizes with less loss. Sites (ESM-2):
 *
 *   layer.N.attn_in  attention.LayerNorm  -> q, k, v    (smoothed)
 *   layer.N.ffn_in   layer LayerNorm      -> fc1        (smoothed)
 *   layer.N.attn_out, layer.N.ffn_mid: no LayerNorm in front, left as they are
 *
 * Numbers follow the authors' smooth_ln_fcs in fp32: weight maxima and the
 * factors are clamped below at 1e-5 (a channel that never fired gets
 * s = 1e-5, as there). Everything here is a pure function of the
 * checkpoint, the statistics and alpha, so every rank that computes it gets
 * the same bits (an MPI run computes it on rank 0 and broadcasts it). */
#ifndef PQ_SMOOTH_H
#define PQ_SMOOTH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "calib/calib_methods.h"
#include "calib/calib_stats.h"
#include "format/safetensors.h"

#define PQ_SMOOTH_MIN 1e-5f /* clamp of weight maxima and factors (as smooth_ln_fcs) */

typedef struct pq_smooth_site {
    char site[48];      /* "layer.3.attn_in" (calib_stats.h names) */
    int layer;
    pq_calib_kind kind; /* PQ_SITE_ATTN_IN or PQ_SITE_FFN_IN */
    int64_t dim;
    float *s;           /* [dim] owned: the factors applied */
    float *act_absmax;  /* [dim] owned or NULL: the max|X_j| they came from */
    float *w_absmax;    /* [dim] owned or NULL: max|W_j| over the site's Linears (clamped) */
} pq_smooth_site;

typedef struct pq_smooth {
    double alpha;
    int num_layers;
    int n_sites;           /* 2 * num_layers: index layer * 2 + (kind == FFN_IN) */
    pq_smooth_site *sites; /* owned */
} pq_smooth;

/* Empty factors (all 1) for num_layers layers of width dim. Owned *out
 * (pq_smooth_free). */
pq_status pq_smooth_create(int num_layers, int64_t dim, double alpha, pq_smooth **out);
void pq_smooth_free(pq_smooth *s); /* NULL is fine */

/* alpha in (0, 1]; PQ_ERR_CONFIG otherwise. */
bool pq_smooth_alpha_ok(double alpha);

/* The factors of one site: s[j] = clamp(act[j]^alpha / clamp(w[j])^(1-alpha)),
 * both clamps at PQ_SMOOTH_MIN, in fp32 as smooth_ln_fcs. w is the
 * unclamped max|W_j|. */
void pq_smooth_factors(const float *act_absmax, const float *w_absmax, int64_t dim, double alpha,
                       float *s);

/* max over rows of |W[:, j]| for each weight named (2-D, `dim` columns) of
 * m, combined with max: out[dim]. PQ_ERR_FORMAT when a tensor is missing or
 * has the wrong width, PQ_ERR_CALIBRATION when a weight is NaN/Inf. */
pq_status pq_smooth_weight_absmax(const pq_st_model *m, const char *const *names, int n, int64_t dim,
                                  float *out);

/* The factors of every smoothed site of the ESM-2 checkpoint m from the
 * statistics c (checked: every site fired, no NaN/Inf). Owned *out. */
pq_status pq_smooth_compute(const pq_st_model *m, const pq_calib *c, double alpha, pq_smooth **out);

/* The site of a smoothed tensor: the LayerNorm weight/bias in front of it
 * (*divide true) or a Linear weight it feeds (*divide false); NULL for any
 * other tensor. */
const pq_smooth_site *pq_smooth_site_of(const pq_smooth *s, const char *hf_name, bool *divide);

/* dst = src transformed for tensor `hf_name` ([rows, cols] fp32; dst may be
 * src): LayerNorm tensors divided by s, Linear weights' columns multiplied
 * by s. Returns false (nothing written) for a tensor smoothing leaves alone. */
bool pq_smooth_apply(const pq_smooth *s, const char *hf_name, const float *src, int64_t rows,
                     int64_t cols, float *dst);

/* A smoothed site's activation range for the static scheme: the calibrated
 * per-channel maxima rescaled, amax = max_j fp32(absmax_j / s_j), as
 * (-amax, amax). Returns false for a site smoothing leaves alone. */
bool pq_smooth_site_range(const pq_smooth *s, const pq_calib_site *cs, pq_calib_range *r);

#endif
