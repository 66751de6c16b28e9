/* SPDX-License-Identifier: Apache-2.0 */
/* calib_stats.h - activation statistics at every Linear input of ESM-2,
 * exactly mergeable: whatever the split of the calibration set over ranks
 * and threads, the merged statistics are the same bits.
 *
 * Sites (one per distinct Linear input, docs/CALIBRATION.md):
 *   layer.N.attn_in   input of q_proj, k_proj, v_proj (one shared tensor)
 *   layer.N.attn_out  input of attention.output.dense (out_proj)
 *   layer.N.ffn_in    input of intermediate.dense (fc1)
 *   layer.N.ffn_mid   input of output.dense (fc2)
 *
 * Per site: exact min/max over finite values, per-channel max |x|, element
 * counts (finite, NaN, +Inf, -Inf), tokens seen, and a histogram on a grid
 * fixed by the float format rather than the data: one bin per (sign,
 * exponent, top PQ_HIST_MBITS mantissa bits) of the fp32 value, uint64
 * counts. Collection counts into a flat uint32 table per site first (small
 * enough to stay in cache, which the scatter-increments need) and moves the
 * counts into the uint64 blocks at pq_calib_flush / before a wrap. Because the grid never depends on the data, merging two
 * statistics (two ranks, or a stored file and new data) is integer
 * addition and min/max, which is exact, associative and commutative. */
#ifndef PQ_CALIB_STATS_H
#define PQ_CALIB_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "format/esm2.h"
#include "base/pq_err.h"
#include "kernels/pq_kernels.h"

typedef enum pq_calib_kind {
    PQ_SITE_ATTN_IN = 0, PQ_SITE_ATTN_OUT, PQ_SITE_FFN_IN, PQ_SITE_FFN_MID, PQ_SITE_KINDS
} pq_calib_kind;

typedef struct pq_calib_site {
    char name[48];        /* "layer.3.ffn_mid" */
    int layer;
    pq_calib_kind kind;
    int64_t dim;          /* features of the input (D, or F for ffn_mid) */
    float min, max;       /* finite values only; +inf / -inf while count == 0 */
    uint64_t count;       /* finite elements */
    uint64_t n_nan, n_posinf, n_neginf;
    uint64_t n_tokens;    /* rows observed */
    float *chan_absmax;   /* [dim], owned; max |x| per input channel */
    uint64_t *blocks[PQ_HIST_NBLOCKS]; /* owned; NULL = no value there yet */
    uint32_t *pending;    /* owned, [PQ_HIST_NBINS] or NULL: counts not yet in blocks */
    uint64_t n_pending;   /* elements counted in pending (<= UINT32_MAX) */
} pq_calib_site;

/* Whole-run statistics plus the provenance that travels with them. */
typedef struct pq_calib {
    int num_layers, embed_dim, ffn_dim;
    int n_sites;                /* 4 * num_layers, index layer * 4 + kind */
    pq_calib_site *sites;       /* owned */
    char model_sha256[65];      /* "" when unknown */
    char *model_path;           /* owned, may be NULL */
    char *datasets;             /* owned: "sha256:<hex> name" entries joined by ";" */
    uint64_t n_sequences, n_skipped;
    bool failed;                /* an observe() ran out of memory */
} pq_calib;

/* Empty statistics for an architecture. Returns owned *out (pq_calib_free). */
pq_status pq_calib_create(int num_layers, int embed_dim, int ffn_dim, pq_calib **out);
void pq_calib_free(pq_calib *c); /* NULL is fine */

/* Site index of a Linear input, -1 when the role is not a per-layer Linear. */
int pq_calib_site_index(const pq_calib *c, int layer, pq_esm2_role role);
/* Name of the site feeding a Linear weight (Hugging Face name) into buf;
 * returns false for tensors that are not one of the six per-layer Linears. */
bool pq_calib_site_of_weight(const char *hf_name, char *buf, size_t n);
const pq_calib_site *pq_calib_find(const pq_calib *c, const char *site_name);

/* Add x [n_tokens, dim] to site s with the histogram kernel of ops (the
 * caller's context; every context counts the same). Out of memory: returns
 * PQ_ERR_RESOURCE. Histogram counts may stay pending until
 * pq_calib_site_flush. */
pq_status pq_calib_site_add(const pq_ops *ops, pq_calib_site *s, const float *x, int64_t n_tokens,
                            int64_t dim);

/* Move pending histogram counts into the uint64 blocks (exact). Readers of
 * blocks (store, reduction, merge) need flushed statistics;
 * pq_calib_collect and pq_calib_merge flush. PQ_ERR_RESOURCE when out of
 * memory (the counts stay pending, nothing is lost). */
pq_status pq_calib_site_flush(pq_calib_site *s);
pq_status pq_calib_flush(pq_calib *c);

/* An observer for pq_esm2_model_set_observer: user is the pq_calib, ops the
 * model's context. q/k/v share one input, so only the q call is counted.
 * Sets c->failed on error. */
void pq_calib_observe(void *user, const pq_ops *ops, int layer, pq_esm2_role role, const float *x,
                      int64_t n_tokens, int64_t dim);

/* dst += src (same architecture): counts added, min/max combined, provenance
 * counters added; both are flushed first. PQ_ERR_CALIBRATION when the shapes
 * differ. */
pq_status pq_calib_merge(pq_calib *dst, pq_calib *src);

/* Usability check before any method runs: every site fired, and no NaN/Inf
 * unless allow_nonfinite. PQ_ERR_CALIBRATION naming the site and cause. */
pq_status pq_calib_check(const pq_calib *c, bool allow_nonfinite);

/* Value of the lower edge of fine bin (block, index): the fp32 whose low
 * 23 - PQ_HIST_MBITS mantissa bits are zero, i.e. x rounded toward zero. */
float pq_calib_bin_value(int block, int index);
/* x rounded toward zero to PQ_HIST_MBITS mantissa bits (the value the
 * histogram methods see). */
float pq_calib_trunc(float x);

/* Visit the non-empty fine bins in increasing order of value (negative
 * values from -max toward -0, then +0 upward); pending counts included. */
typedef void (*pq_calib_bin_fn)(void *user, float value, uint64_t count);
void pq_calib_site_bins(const pq_calib_site *s, pq_calib_bin_fn fn, void *user);

#endif
