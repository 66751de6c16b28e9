/* SPDX-License-Identifier: Apache-2.0 */
/* utilization.h - how much of the CPU a model's forward uses: the GEMM
 * operations of its Linears that run on one kernel (the kernel that carries
 * most of them), per second of forward, against the peak of that same
 * kernel measured here with the project's own GEMM (kernels/gemm/pq_gemm.h,
 * or pq_sgemm for fp32) on a large shape. Never prints. */
#ifndef PQ_EVAL_UTILIZATION_H
#define PQ_EVAL_UTILIZATION_H

#include "base/pq_err.h"
#include "model/esm2_model.h"

typedef struct pq_eval_util_probe {
    char kernel[64];      /* "avx512vnni int8 (W8A8)", "avx2 int4 (W4A8)",
                             "avx2 weight-only int8", "sgemm fp32", ... */
    double ops_per_token; /* 2 x multiply-adds per token of the Linears on that kernel */
    double peak_gops;     /* the kernel alone: best of a few runs of
                             [PQ_EVAL_PEAK_M x PQ_EVAL_PEAK_K] x [PQ_EVAL_PEAK_K x PQ_EVAL_PEAK_N] */
} pq_eval_util_probe;

#define PQ_EVAL_PEAK_M 256
#define PQ_EVAL_PEAK_N 1024
#define PQ_EVAL_PEAK_K 1024

/* Which kernel the Linears of m (borrowed) run on and the operations per
 * token on it (no timing). */
void pq_eval_util_kernel(const pq_esm2_model *m, pq_eval_util_probe *u);

/* pq_eval_util_kernel, then the peak of that kernel on n_threads threads
 * (0: the OpenMP default), in about a second at most.
 * PQ_ERR_RESOURCE when out of memory. */
pq_status pq_eval_util_measure(const pq_esm2_model *m, int n_threads, pq_eval_util_probe *u);

#endif
