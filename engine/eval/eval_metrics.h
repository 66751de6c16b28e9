/* SPDX-License-Identifier: Apache-2.0 */
/* eval_metrics.h - numbers that compare a quantized model's outputs with a
 * reference: logits KL divergence and cosine, embedding cosine, SQNR, top-1
 * predictions, confidence and its calibration. All sums in double. */
#ifndef PQ_EVAL_METRICS_H
#define PQ_EVAL_METRICS_H

#include <stdbool.h>
#include <stdint.h>

/* KL(p_ref || p_q) of the softmax distributions of two logit rows of V
 * values, in nats (>= 0 up to rounding; 0 for identical rows). */
double pq_eval_kl(const float *ref, const float *q, int V);

/* Cosine similarity of two vectors; 1 when both are zero. */
double pq_eval_cosine(const float *a, const float *b, int64_t n);

/* Running signal and error energies: SQNR = 10 log10(sig / err), +inf when
 * err is 0. */
typedef struct pq_eval_sqnr {
    double sig, err;
} pq_eval_sqnr;
void pq_eval_sqnr_add(pq_eval_sqnr *s, const float *ref, const float *test, int64_t n);
double pq_eval_sqnr_db(const pq_eval_sqnr *s);

/* Masked-LM tallies: positions scored, argmax hits over all V logits, and
 * the sum of -log softmax(true id) in double. */
typedef struct pq_eval_mlm {
    int64_t n_masked, n_correct;
    double nll;
} pq_eval_mlm;
/* Add the positions t < N of logits [N, V] whose orig[t] >= 0 (the true id
 * of a masked position; -1 elsewhere). */
void pq_eval_mlm_add(pq_eval_mlm *s, const float *logits, const int32_t *orig, int64_t N, int V);
/* n_correct / n_masked, and exp(nll / n_masked) (NaN when nothing was masked). */
double pq_eval_mlm_accuracy(const pq_eval_mlm *s);
double pq_eval_mlm_perplexity(const pq_eval_mlm *s);

/* The index of the largest of V logits (the first one on ties). */
int pq_eval_argmax(const float *row, int V);

/* Confidence and its calibration at masked positions: the probability of
 * the top prediction p = max softmax(logits) (in double), and the expected
 * calibration error over PQ_EVAL_ECE_BINS equal-width bins of p (Guo et al.
 * 2017): bin b holds the p in (b/15, (b+1)/15], i.e. b = ceil(15 p) - 1
 * clamped to [0, 14], and
 *   ECE = sum_b (n_b / n) |accuracy_b - mean p_b|
 *       = (1 / n) sum_b |correct_b - sum of p over bin b|,
 * accuracy_b the fraction of bin b whose top prediction is the true token. */
#define PQ_EVAL_ECE_BINS 15
typedef struct pq_eval_calib {
    int64_t n;       /* positions */
    double conf;     /* sum of p */
    int64_t bin_n[PQ_EVAL_ECE_BINS], bin_correct[PQ_EVAL_ECE_BINS];
    double bin_conf[PQ_EVAL_ECE_BINS]; /* sum of p per bin */
} pq_eval_calib;
int pq_eval_ece_bin(double p);
/* One prediction of probability p, right or not. */
void pq_eval_calib_add_one(pq_eval_calib *c, double p, bool correct);
/* The positions t < N of logits [N, V] whose orig[t] >= 0, as pq_eval_mlm_add. */
void pq_eval_calib_add(pq_eval_calib *c, const float *logits, const int32_t *orig, int64_t N, int V);
/* into += c, bin by bin. */
void pq_eval_calib_merge(pq_eval_calib *into, const pq_eval_calib *c);
/* Mean p and the ECE (NaN when n is 0). */
double pq_eval_calib_confidence(const pq_eval_calib *c);
double pq_eval_calib_ece(const pq_eval_calib *c);

/* Mean over the residue rows 1..T-2 of one sequence's [T, D] rows (drops
 * <cls> and <eos>) into out[D]. */
void pq_eval_mean_pool(const float *rows, int64_t T, int64_t D, float *out);

#endif
