/* SPDX-License-Identifier: Apache-2.0 */
/* plan.h - which tensors are quantized (the recipe) and the work units that
 * do it, with a cost-balanced assignment of units to ranks. Pure functions of
 * the checkpoint's tensor directory and the config: every rank computes the
 * same plan. */
#ifndef PQ_PLAN_H
#define PQ_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/config.h"
#include "format/esm2.h"
#include "base/pq_err.h"
#include "format/safetensors.h"
#include "pipeline/stats.h"

typedef struct pq_plan_tensor {
    const pq_st_tensor *st;   /* borrowed from the checkpoint */
    pq_esm2_role role;
    int layer;
    pq_tensor_action action;
    pq_qspec spec;            /* its recipe when quantized (the config's, or the recipe file's) */
    bool float16;             /* its storage when kept in float */
    int64_t rows, cols;       /* 2-D view for quantized tensors */
    int first_unit, n_units;  /* units of a quantized tensor are contiguous */
} pq_plan_tensor;

typedef struct pq_unit {
    int32_t id;
    int32_t tensor;   /* index into pq_plan.tensors */
    int64_t row0, n_rows;
    double cost;      /* bytes of fp32 input: the work is linear in it */
    int32_t rank;     /* set by pq_plan_assign */
    int32_t chunk;    /* the digest chunk that holds the unit's middle byte
                       * (-1 when the plan has no chunks) */
} pq_unit;

/* One chunk of the source's tree digest (st_hash.h): hashed by one rank,
 * its 32-byte leaf combined on rank 0 in chunk order. */
typedef struct pq_hash_unit {
    int64_t chunk;    /* index in digest order */
    int64_t n_bytes;
    double cost;      /* in the units' measure (plan.c's cost model) */
    int32_t rank;     /* set by pq_plan_assign */
} pq_hash_unit;

typedef struct pq_plan {
    pq_qspec spec;            /* the config's; each tensor carries its own (pq_plan_tensor.spec) */
    int n_tensors;
    pq_plan_tensor *tensors;  /* checkpoint order (sorted by name) */
    int n_units;
    pq_unit *units;           /* tensor order, then row order */
    int n_ranks;
    int64_t unit_bytes;
    int64_t hash_chunk_bytes; /* PQ_HASH_CHUNK_BYTES */
    int n_hash;
    pq_hash_unit *hash;       /* chunk order */
    int n_files;
    int64_t *file_chunk0;     /* digest index of each source file's first chunk */
} pq_plan;

/* Default recipe: the six per-layer Linear weights are quantized, legacy
 * extras dropped, everything else kept in float. With include patterns, the
 * 2-D float tensors matching any of them are quantized instead of the
 * default set; exclude patterns then remove tensors (fnmatch on HF names).
 * Quantized tensors of more than unit_bytes of fp32 are split into row
 * blocks (except per-tensor granularity, whose single scale needs the whole
 * tensor). A recipe file (c->recipe, pipeline/recipe.h) then sets each
 * matched tensor's own precision. Returns owned *out (pq_plan_destroy). */
pq_status pq_plan_build(const pq_st_model *m, const pq_config *c, int64_t unit_bytes,
                        pq_plan **out);
void pq_plan_destroy(pq_plan *p);

/* (Re)cut the source's digest into chunks of chunk_bytes (pq_plan_build
 * uses PQ_HASH_CHUNK_BYTES; tests use small ones to get many chunks) and
 * assign everything again over p->n_ranks. */
pq_status pq_plan_set_hash_chunks(pq_plan *p, const pq_st_model *m, int64_t chunk_bytes);

/* Turn a quantized tensor into a float one (nan_policy keep) and rebuild
 * the units. */
pq_status pq_plan_keep_float(pq_plan *p, int tensor);

/* Cost-balanced and deterministic. The hash chunks first, largest first to
 * the least-loaded rank; then the units, largest first, each to the rank
 * that hashes its chunk while that rank's load stays within the mean, else
 * to the least-loaded rank (ties: lowest rank; equal costs: lowest id). A
 * rank thus quantizes mostly bytes it has hashed: on a cluster they come
 * from the shared file system once, the second time from its node's page
 * cache. Only a rank whose preload alone exceeds the mean ends more than
 * the largest item above it. */
void pq_plan_assign(pq_plan *p, int n_ranks);

/* The same with a starting load per rank (n_ranks entries, in the units'
 * cost measure, or NULL for none): work a rank does besides its planned
 * items, such as rank 0's writing, so that the total per rank stays
 * balanced. */
void pq_plan_assign_loaded(pq_plan *p, int n_ranks, const double *preload);

/* Assign units and chunks to n_ranks ranks with rank 0's writing counted
 * as load (plan.c's cost model): rank 0 writes the float tensors, every
 * tensor's datasets and metrics, the scales, and the codes of the ranks
 * that are not on its machine (same_node[r] false; same_node NULL: none
 * is), so that every rank finishes at about the same time. */
void pq_plan_assign_ranks(pq_plan *p, int n_ranks, const bool *same_node);

/* The share (0..1) of the units' cost that runs on the rank hashing the
 * unit's chunk (1 without units or chunks). */
double pq_plan_colocated(const pq_plan *p);

/* Sum of the fp32 bytes of all quantized units (hash chunks excluded). */
double pq_plan_total_cost(const pq_plan *p);

/* The first unit at or after i that the plan gives to rank; n_units when
 * none is left. */
int pq_plan_next_unit(const pq_plan *p, int i, int rank);

#endif
