/* SPDX-License-Identifier: Apache-2.0 */
/* calib_methods.h - activation ranges from merged statistics: minmax,
 * percentile, entropy (KL) and mse, as docs/CALIBRATION.md (Methods) states.
 *
 * Histogram methods work on a 2048-bin histogram derived from the site's
 * fixed IEEE-bit grid (calib_stats.h). Each fine bin is counted at its lower
 * edge, so the derived histogram is exactly np.histogram of the activations
 * rounded toward zero to PQ_HIST_MBITS mantissa bits (pq_calib_trunc):
 *   |x| histogram:  range [0, A], A = largest truncated |x|;
 *   signed:         range [-T, T], T = A;
 * edges e_k = fp32(k * ((hi - lo) / B) + lo) computed in double (numpy's
 * linspace), e_B = hi; a value v goes to the k with e_k <= v < e_{k+1}
 * (binary search on the fp32 edges), the last bin closed.
 *
 * Symmetric ranges (NVIDIA pytorch-quantization, |x| histogram):
 *   minmax      amax = max(|min|, |max|) (exact, not truncated)
 *   percentile  amax = e_i, first i with cdf[i] >= p/100 (cdf: sequential double sums)
 *   entropy     KL search, 2048 bins -> 128 levels: bins[0] = bins[1], candidates
 *               i = 128..2048, right tail folded into bin i-1, expansion averaged over
 *               non-empty source bins, last argmin; amax = e_i
 *   mse         bin centres c_k; candidates amax = c_i, i = 128..2047; fake-quantise
 *               every centre with narrow range [-127, 127]; first argmin of
 *               sum count_k * (fq(c_k) - c_k)^2
 * Asymmetric ranges (ONNX Runtime, signed histogram), clamped to [min, max]:
 *   minmax      (min, max)
 *   percentile  cut = (100-p)/200: (e_{search(cut)}, e_{search(1-cut)})
 *   entropy     ORT get_entropy_threshold with 128 quantized bins (eps-smoothing,
 *               int64-truncated expansion, first argmin)
 *   mse         the symmetric mse amax, as (-amax, amax)
 * All-zero data gives amax 0 / range (0, 0) for every method. */
#ifndef PQ_CALIB_METHODS_H
#define PQ_CALIB_METHODS_H

#include <stdbool.h>
#include <stdint.h>

#include "calib/calib_stats.h"
#include "base/pq_err.h"

#define PQ_CALIB_BINS 2048
#define PQ_CALIB_LEVELS 128
#define PQ_CALIB_START_BIN 128

typedef enum pq_calib_method {
    PQ_CALIB_MINMAX = 0, PQ_CALIB_PERCENTILE, PQ_CALIB_ENTROPY, PQ_CALIB_MSE, PQ_CALIB_N_METHODS
} pq_calib_method;

/* "minmax" ... ; -1 when unknown. */
int pq_calib_method_parse(const char *name);
const char *pq_calib_method_name(pq_calib_method m);

typedef struct pq_calib_range {
    float lo, hi;        /* asymmetric: the range; symmetric: (-amax, amax) */
    float amax;          /* symmetric threshold (max(|lo|, |hi|) when asymmetric) */
    double kl;           /* KL divergence at the choice (entropy), else NAN */
    double mse;          /* histogram MSE of int8 fake-quantisation at amax */
    double saturation;   /* fraction of finite values with |trunc(x)| > amax
                            (symmetric) or trunc(x) outside [lo, hi] */
} pq_calib_range;

/* Derived histograms (layout above). hist: PQ_CALIB_BINS counts, edges:
 * PQ_CALIB_BINS + 1 floats, both caller-owned. */
void pq_calib_abs_hist(const pq_calib_site *s, uint64_t *hist, float *edges);
void pq_calib_signed_hist(const pq_calib_site *s, uint64_t *hist, float *edges);

/* The raw searches on a histogram (exposed for the tests). */
int pq_calib_entropy_nvidia(const uint64_t *hist, int n, int nq, int start_bin, double *kl);
int pq_calib_mse_nvidia(const uint64_t *hist, const float *edges, int n, int start_bin,
                        double *mse);
int pq_calib_percentile_index(const uint64_t *hist, int n, double frac);
/* Returns the half-width index i (thresholds (e_{z-i}, e_{min(z+i+1, n)})). */
int pq_calib_entropy_ort(const uint64_t *hist, int n, int nq, double *kl);

/* The range of site s by method m. percentile in (0, 100] (ignored by the
 * others). PQ_ERR_CALIBRATION when the site has no finite value. */
pq_status pq_calib_compute(const pq_calib_site *s, pq_calib_method m, bool symmetric,
                           double percentile, pq_calib_range *out);

/* Activation qparams of a range: symmetric scale = amax / 127 (zp none,
 * narrow int8 [-127, 127]); asymmetric int8 [-128, 127] with 0 included:
 * scale = (max(hi,0) - min(lo,0)) / 255, zp = clamp(-128 - rne(min(lo,0) /
 * scale)). A zero scale (all-zero data) becomes 1.0 with zp 0, as in ONNX
 * Runtime's compute_scale_zp. */
void pq_calib_qparams(const pq_calib_range *r, bool symmetric, float *scale, int32_t *zp);

#endif
