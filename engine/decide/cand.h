/* SPDX-License-Identifier: Apache-2.0 */
/* cand.h - the candidate recipes of one Linear that optimize weighs (int4
 * per-channel, int4 groups, int8 per-channel, fp16, fp32 kept) and the
 * bytes each one stores. */
#ifndef PQ_DECIDE_CAND_H
#define PQ_DECIDE_CAND_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/qspec.h"

typedef struct pq_cand {
    int precision;   /* 4, 8 (integer codes), 16 (fp16), 32 (fp32 kept) */
    int group_size;  /* int4/int8 with group scales: 32..256; 0 otherwise */
    bool per_channel;
    bool symmetric;
} pq_cand;

/* The recipe name of the precision: "int4", "int8", "fp16", "fp32". */
const char *pq_cand_precision_name(const pq_cand *c);
/* precision by name (as above); -1 for an unknown one. */
int pq_cand_precision_parse(const char *s);
/* A short label: "int4-ch", "int4-g64", "int8-ch", "int8-t", "fp16", "fp32". */
void pq_cand_label(const pq_cand *c, char *buf, int n);
/* The quantization spec of an integer candidate. */
pq_qspec pq_cand_qspec(const pq_cand *c);
/* Bytes stored for a [rows, cols] weight: codes (4-bit two per byte, each row
 * on its own), fp32 scales and int32 zero points; 2 or 4 bytes a value for
 * fp16 and fp32. */
int64_t pq_cand_bytes(const pq_cand *c, int64_t rows, int64_t cols);
/* Whether the candidate can be applied to a weight of cols columns (a group
 * size must divide them). */
bool pq_cand_fits(const pq_cand *c, int64_t cols);

/* The default candidates for weights whose columns are all multiples of
 * `col_gcd`: int4 per-channel, int4 with the largest group of 128, 64, 32 that
 * divides col_gcd (left out when none does), int8 per-channel, fp16, fp32; all
 * symmetric. Writes at most 5 into out and returns how many. */
int pq_cand_defaults(int64_t col_gcd, pq_cand out[5]);

#endif
