/* SPDX-License-Identifier: Apache-2.0 */
/* plan.c - recipe resolution, work-unit splitting and rank assignment. */
#include "pipeline/plan.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "format/st_hash.h"
#include "pipeline/fallback.h"
#include "pipeline/recipe.h"
#include "pipeline/result.h"

/* The cost model: every cost is in the units' measure, one fp32 input byte
 * of RTN. Constants, not run-time measurements: every rank must compute the
 * same plan. */

/* Hashing one source byte. Measured on the 2-core VM with esm2_t30_150M, one
 * thread (--verbose phases of bench_mpi.sh -n 1): RTN of 565 MB in 0.16-0.26
 * s, SHA-256 (SHA-NI, from the mapping) of 593 MB in 0.37-0.45 s. */
#define HASH_COST_PER_BYTE 2.2

/* Rank 0 writing one output byte while the others still work (float
 * tensors, receiving and writing unit results; the commit comes after
 * everyone and does not count). From the --verbose phases of esm2_t30_150M
 * on 2 ranks of the 2-core build machine: at 1.0 both ranks finish their
 * planned work within 2 % of each other (at 2.0 rank 0 idled 20 %). */
#define WRITE_COST_PER_BYTE 1.0

/* Rank 0 creating one stored tensor's datasets and writing a small float
 * tensor, whatever its bytes (HDF5 object headers, dataspace and
 * allocation): esm2_t30_150M's 520 tensors took rank 0 0.036 s of set-up and
 * float writes, as much as RTN of ~200 kB of fp32 input per tensor. */
#define SETUP_COST_PER_TENSOR 2.0e5

/* Rank 0 writing one quantized tensor's metrics (a group of six attributes,
 * ~50 us), between its units as tensors complete. */
#define METRICS_COST_PER_TENSOR 1.9e5

static bool matches_any(char *const *pats, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (fnmatch(pats[i], name, 0) == 0) return true;
    return false;
}

static pq_tensor_action decide(const pq_config *c, const pq_st_tensor *t, pq_esm2_role role)
{
    if (role == PQ_ESM2_IGNORED || !pq_dtype_is_float(t->dtype)) return PQ_ACT_DROP;
    bool quant = c->n_include ? (t->ndim == 2 && matches_any(c->include, c->n_include, t->name))
                              : pq_esm2_role_is_linear(role);
    if (quant && matches_any(c->exclude, c->n_exclude, t->name)) quant = false;
    return quant ? PQ_ACT_QUANT : PQ_ACT_FLOAT;
}

/* The digest chunk that holds the middle byte of u's rows in the source
 * (-1 without chunks). */
static int32_t unit_chunk(const pq_plan *p, const pq_unit *u)
{
    const pq_st_tensor *t = p->tensors[u->tensor].st;
    if (!p->n_hash || !p->file_chunk0 || t->file_idx < 0 || t->file_idx >= p->n_files) return -1;
    const uint64_t row_bytes = t->n_bytes / (uint64_t)p->tensors[u->tensor].rows;
    const uint64_t mid = t->offset + row_bytes * (uint64_t)u->row0 + row_bytes * (uint64_t)u->n_rows / 2;
    int64_t c = p->file_chunk0[t->file_idx] + (int64_t)(mid / (uint64_t)p->hash_chunk_bytes);
    return c < p->n_hash ? (int32_t)c : p->n_hash - 1;
}

/* (Re)build the unit list from the tensors' actions. */
static pq_status make_units(pq_plan *p)
{
    int64_t n_units = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        pq_plan_tensor *pt = &p->tensors[i];
        pt->first_unit = pt->n_units = 0;
        if (pt->action != PQ_ACT_QUANT) continue;
        int64_t rows_per_unit = pt->rows;
        if (pt->spec.gran != PQ_GRAN_TENSOR && p->unit_bytes > 0) {
            rows_per_unit = p->unit_bytes / (pt->cols * 4);
            if (rows_per_unit < 1) rows_per_unit = 1;
            if (rows_per_unit > pt->rows) rows_per_unit = pt->rows;
        }
        pt->n_units = (int)((pt->rows + rows_per_unit - 1) / rows_per_unit);
        pt->first_unit = (int)n_units;
        n_units += pt->n_units;
    }
    free(p->units);
    p->units = NULL;
    p->n_units = (int)n_units;
    if (n_units && !(p->units = calloc((size_t)n_units, sizeof *p->units)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory building the plan");
    for (int i = 0; i < p->n_tensors; i++) {
        pq_plan_tensor *pt = &p->tensors[i];
        if (pt->action != PQ_ACT_QUANT) continue;
        int64_t per = (pt->rows + pt->n_units - 1) / pt->n_units;
        for (int k = 0; k < pt->n_units; k++) {
            pq_unit *u = &p->units[pt->first_unit + k];
            u->id = pt->first_unit + k;
            u->tensor = i;
            u->row0 = k * per;
            u->n_rows = (k == pt->n_units - 1) ? pt->rows - u->row0 : per;
            u->cost = (double)u->n_rows * (double)pt->cols * 4.0;
            u->chunk = unit_chunk(p, u);
        }
    }
    pq_plan_assign(p, p->n_ranks > 0 ? p->n_ranks : 1);
    return PQ_OK;
}

pq_status pq_plan_set_hash_chunks(pq_plan *p, const pq_st_model *m, int64_t chunk_bytes)
{
    if (chunk_bytes <= 0)
        return pq_err(PQ_ERR_INTERNAL, "hash chunk size %lld", (long long)chunk_bytes);
    int64_t nh = pq_st_hash_chunk_count(m, chunk_bytes);
    const int nf = pq_st_file_count(m);
    pq_hash_unit *h = NULL;
    int64_t *f0 = calloc((size_t)(nf > 0 ? nf : 1), sizeof *f0);
    if (!f0 || nh > INT32_MAX || (nh && !(h = calloc((size_t)nh, sizeof *h)))) {
        free(f0);
        return pq_err(PQ_ERR_RESOURCE, "out of memory planning %lld hash chunks", (long long)nh);
    }
    for (int64_t i = 0; i < nh; i++) {
        h[i].chunk = i;
        h[i].n_bytes = pq_st_hash_chunk_len(m, chunk_bytes, i);
        h[i].cost = (double)h[i].n_bytes * HASH_COST_PER_BYTE;
    }
    for (int f = 0; f < nf; f++) f0[f] = pq_st_hash_first_chunk(m, chunk_bytes, f);
    free(p->hash);
    free(p->file_chunk0);
    p->hash = h;
    p->n_hash = (int)nh;
    p->hash_chunk_bytes = chunk_bytes;
    p->file_chunk0 = f0;
    p->n_files = nf;
    for (int i = 0; i < p->n_units; i++) p->units[i].chunk = unit_chunk(p, &p->units[i]);
    pq_plan_assign(p, p->n_ranks > 0 ? p->n_ranks : 1);
    return PQ_OK;
}

pq_status pq_plan_keep_float(pq_plan *p, int tensor)
{
    p->tensors[tensor].action = PQ_ACT_FLOAT;
    return make_units(p);
}

pq_status pq_plan_build(const pq_st_model *m, const pq_config *c, int64_t unit_bytes,
                        pq_plan **out)
{
    pq_status st = PQ_OK;
    pq_plan *p = calloc(1, sizeof *p);
    int64_t n = pq_st_count(m);
    if (!p || !(p->tensors = calloc((size_t)n, sizeof *p->tensors))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory building the plan");
        goto fail;
    }
    p->spec = pq_config_qspec(c);
    p->n_tensors = (int)n;
    p->unit_bytes = unit_bytes;
    for (int64_t i = 0; i < n; i++) {
        pq_plan_tensor *pt = &p->tensors[i];
        pt->st = pq_st_get(m, i);
        pt->role = pq_esm2_role_of(pt->st->name, &pt->layer);
        pt->action = decide(c, pt->st, pt->role);
        pt->spec = p->spec;
        pt->float16 = c->float16;
    }
    if (c->recipe && (st = pq_recipe_apply(c->recipe, c, p))) goto fail;
    if (c->n_overrides && (st = pq_plan_apply_overrides(c, p))) goto fail;
    for (int64_t i = 0; i < n; i++) {
        pq_plan_tensor *pt = &p->tensors[i];
        if (pt->action != PQ_ACT_QUANT) continue;
        pt->rows = pt->st->shape[0];
        pt->cols = pt->st->shape[1];
        if (pt->rows == 0 || pt->cols == 0) {
            st = pq_err(PQ_ERR_QUANTIZATION, "tensor '%s' has an empty shape and cannot be quantized",
                        pt->st->name);
            goto fail;
        }
    }
    /* the source's digest chunks: work like the units, on whichever rank */
    if ((st = pq_plan_set_hash_chunks(p, m, PQ_HASH_CHUNK_BYTES))) goto fail;
    if ((st = make_units(p))) goto fail;
    *out = p;
    return PQ_OK;
fail:
    pq_plan_destroy(p);
    return st;
}

void pq_plan_destroy(pq_plan *p)
{
    if (!p) return;
    free(p->tensors);
    free(p->units);
    free(p->hash);
    free(p->file_chunk0);
    free(p);
}

/* Work items of the assignment: k < n_units is unit k, else hash chunk
 * k - n_units. */
static const pq_plan *sort_plan;

static double item_cost(const pq_plan *p, int k)
{
    return k < p->n_units ? p->units[k].cost : p->hash[k - p->n_units].cost;
}

static int by_cost_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    double cx = item_cost(sort_plan, x), cy = item_cost(sort_plan, y);
    if (cx != cy) return cx > cy ? -1 : 1;
    return x < y ? -1 : x > y; /* equal costs: lower id (units before chunks) */
}

void pq_plan_assign(pq_plan *p, int n_ranks)
{
    pq_plan_assign_loaded(p, n_ranks, NULL);
}

void pq_plan_assign_loaded(pq_plan *p, int n_ranks, const double *preload)
{
    if (n_ranks < 1) n_ranks = 1;
    p->n_ranks = n_ranks;
    int n_items = p->n_units + p->n_hash;
    int *order = malloc((size_t)(n_items ? n_items : 1) * sizeof *order);
    double *load = calloc((size_t)n_ranks, sizeof *load);
    if (!order || !load) {
        /* fall back to round robin: still deterministic */
        for (int i = 0; i < p->n_units; i++) p->units[i].rank = i % n_ranks;
        for (int i = 0; i < p->n_hash; i++) p->hash[i].rank = i % n_ranks;
        free(order);
        free(load);
        return;
    }
    if (preload)
        for (int r = 0; r < n_ranks; r++) load[r] = preload[r];
    for (int i = 0; i < n_items; i++) order[i] = i;
    sort_plan = p;
    qsort(order, (size_t)n_items, sizeof *order, by_cost_desc);
    double mean = 0;
    for (int r = 0; r < n_ranks; r++) mean += load[r];
    for (int k = 0; k < n_items; k++) mean += item_cost(p, k);
    mean /= n_ranks;
    /* chunks, then units: a unit's chunk has its rank before the unit */
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < n_items; k++) {
            const int it = order[k];
            if ((it >= p->n_units) != (pass == 0)) continue;
            const double cost = item_cost(p, it);
            int best = 0;
            for (int r = 1; r < n_ranks; r++)
                if (load[r] < load[best]) best = r;
            if (it < p->n_units) {
                const int32_t c = p->units[it].chunk;
                if (c >= 0 && c < p->n_hash && load[p->hash[c].rank] + cost <= mean) best = p->hash[c].rank;
                p->units[it].rank = best;
            } else {
                p->hash[it - p->n_units].rank = best;
            }
            load[best] += cost;
        }
    free(order);
    free(load);
}

int pq_plan_next_unit(const pq_plan *p, int i, int rank)
{
    while (i < p->n_units && p->units[i].rank != rank) i++;
    return i;
}

double pq_plan_colocated(const pq_plan *p)
{
    double same = 0, all = 0;
    for (int i = 0; i < p->n_units; i++) {
        const pq_unit *u = &p->units[i];
        if (u->chunk < 0 || u->chunk >= p->n_hash) continue;
        all += u->cost;
        if (p->hash[u->chunk].rank == u->rank) same += u->cost;
    }
    return all > 0 ? same / all : 1.0;
}

double pq_plan_total_cost(const pq_plan *p)
{
    double s = 0;
    for (int i = 0; i < p->n_units; i++) s += p->units[i].cost;
    return s;
}

void pq_plan_assign_ranks(pq_plan *p, int n_ranks, const bool *same_node)
{
    double *pre = n_ranks > 1 ? calloc((size_t)n_ranks, sizeof *pre) : NULL;
    if (pre) {
        /* Ranks on rank 0's machine write their own codes (as rank 0 does):
         * that part is in every rank's units alike. Rank 0 writes the rest:
         * float tensors, scales, and the codes of ranks on other machines,
         * taken as their share of the units. */
        int remote = 0;
        for (int r = 1; r < n_ranks; r++) remote += !(same_node && same_node[r]);
        double out = 0, stored = 0, quantized = 0;
        for (int i = 0; i < p->n_tensors; i++) {
            const pq_plan_tensor *pt = &p->tensors[i];
            if (pt->action == PQ_ACT_FLOAT) out += (double)pt->st->n_bytes;
            stored += pt->action != PQ_ACT_DROP;
            quantized += pt->action == PQ_ACT_QUANT;
        }
        for (int i = 0; i < p->n_units; i++) {
            pq_unit_layout l;
            pq_unit_layout_of(p, &p->units[i], &l);
            out += (double)l.codes * remote / n_ranks + (double)(l.scale + l.zero_point);
        }
        pre[0] = WRITE_COST_PER_BYTE * out + SETUP_COST_PER_TENSOR * stored + METRICS_COST_PER_TENSOR * quantized;
    }
    pq_plan_assign_loaded(p, n_ranks, pre);
    free(pre);
}
