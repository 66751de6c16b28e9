/* SPDX-License-Identifier: Apache-2.0 */
/* job.c - one quantization job's read side: open, plan, run units, hash the
 * source (job.h). The writer side is output.c. */
#include "pipeline/job_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/pq_clock.h"
#include "base/pq_cpu.h"
#include "base/pq_fault.h"
#include "kernels/pq_kernels.h"
#include "quant/rtn.h"

/* nan_policy keep: a tensor with NaN/Inf anywhere stays float. Decided before
 * any unit runs so that every rank agrees on the plan. */
static pq_status scan_nonfinite(pq_job *j)
{
    pq_status st = PQ_OK;
    float *buf = NULL;
    int64_t cap = 0;
    for (int i = 0; i < j->plan->n_tensors; i++) {
        pq_plan_tensor *pt = &j->plan->tensors[i];
        if (pt->action != PQ_ACT_QUANT) continue;
        if (pt->cols > cap) {
            free(buf);
            cap = pt->cols;
            if (!(buf = malloc((size_t)cap * sizeof *buf))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        }
        int64_t bad = 0;
        for (int64_t r = 0; r < pt->rows && !bad; r++) {
            float mn, mx;
            if ((st = pq_st_read_rows_f32(j->model, pt->st, r, 1, buf))) goto cleanup;
            j->ops.row_minmax(buf, pt->cols, &mn, &mx, &bad);
        }
        pq_st_release(j->model, pt->st);
        if (bad) {
            if ((st = pq_plan_keep_float(j->plan, i))) goto cleanup;
            j->tensor_kept_float[i] = true;
        }
    }
cleanup:
    free(buf);
    return st;
}

static pq_status alloc_leaves(pq_job *j)
{
    size_t n = (size_t)j->plan->n_hash + 1;
    free(j->hash_leaves);
    free(j->hash_have);
    j->hash_leaves = malloc(n * PQ_HASH_LEAF_BYTES);
    j->hash_have = calloc(n, sizeof(bool));
    if (!j->hash_leaves || !j->hash_have) return pq_err(PQ_ERR_RESOURCE, "out of memory for the hash leaves");
    return PQ_OK;
}

pq_status pq_job_open(pq_config *cfg, const char *model_path, int64_t unit_bytes, pq_job **out)
{
    pq_status st;
    pq_job *j = calloc(1, sizeof *j);
    if (!j) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    j->cfg = cfg;
    j->t_start = pq_now_s();
    if ((st = pq_config_validate(cfg))) goto fail;
    if ((st = pq_config_apply_hardware(cfg, &j->ops))) goto fail;
    pq_job_set_threads(j, !cfg->threading ? 1 : cfg->threads > 0 ? cfg->threads : pq_cpu_count());
    if (!(j->model_path = strdup(model_path))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto fail; }
    if ((st = pq_st_open(model_path, &j->model))) goto fail;
    if ((st = pq_esm2_detect(j->model, &j->arch))) goto fail;
    if ((st = pq_plan_build(j->model, cfg, unit_bytes, &j->plan))) goto fail;
    if (!(j->tensor_kept_float = calloc((size_t)j->plan->n_tensors, sizeof(bool)))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto fail;
    }
    if (cfg->nan_policy == PQ_NAN_KEEP_FLOAT && (st = scan_nonfinite(j))) goto fail;
    if ((st = alloc_leaves(j))) goto fail;
    j->phase[PQ_PHASE_OPEN] = pq_now_s() - j->t_start;
    *out = j;
    return PQ_OK;
fail:
    pq_job_destroy(j);
    return st;
}

void pq_job_destroy(pq_job *j)
{
    if (!j) return;
    pq_job_output_free(j);
    pq_plan_destroy(j->plan);
    pq_st_close(j->model);
    free(j->model_path);
    free(j->tensor_kept_float);
    free(j->gptq);
    free(j->hash_leaves);
    free(j->hash_have);
    free(j->done);
    free(j->src_users);
    free(j->stats.tensors);
    free(j);
}

const pq_plan *pq_job_plan(const pq_job *j) { return j->plan; }
const pq_config *pq_job_config(const pq_job *j) { return j->cfg; }
const pq_st_model *pq_job_model(const pq_job *j) { return j->model; }
const pq_esm2_config *pq_job_arch(const pq_job *j) { return &j->arch; }
int pq_job_threads(const pq_job *j) { return j->threads; }
const pq_ops *pq_job_ops(const pq_job *j) { return &j->ops; }
const pq_job_stats *pq_job_stats_of(const pq_job *j) { return &j->stats; }
double pq_job_phase(const pq_job *j, pq_phase ph) { return j->phase[ph]; }
void pq_job_phase_add(pq_job *j, pq_phase ph, double s) { j->phase[ph] += s; }
bool pq_job_hashes_chunks(const pq_job *j) { return j->defer_source_hash; }

void pq_job_set_smooth(pq_job *j, const pq_smooth *sm) { j->smooth = sm; }

void pq_job_set_threads(pq_job *j, int threads)
{
    j->threads = threads < 1 ? 1 : threads;
}

void pq_job_assign(pq_job *j, int n_ranks, const bool *same_node)
{
    /* many chunks from a small model (tests); a failure keeps the default */
    long chunk_bytes = pq_fault_value(PQ_FAULT_HASH_CHUNK_BYTES, 0);
    if (chunk_bytes > 0 && !pq_plan_set_hash_chunks(j->plan, j->model, chunk_bytes)) alloc_leaves(j);
    pq_plan_assign_ranks(j->plan, n_ranks, same_node);
    j->defer_source_hash = true;
}

pq_status pq_job_run_unit(pq_job *j, const pq_unit *u, pq_unit_result *r)
{
    pq_status st;
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    const pq_qspec *spec = &pt->spec;
    float *buf = NULL;
    const float *w;
    pq_unit_layout l;
    pq_unit_layout_of(j->plan, u, &l);
    if ((st = pq_unit_result_alloc(r, u, &l, true)))
        return pq_err_replace(st, "out of memory for unit %d of tensor '%s'", u->id, pt->st->name);
    pq_st_prefetch(j->model, pt->st, u->row0, u->n_rows);
    /* fp32 checkpoints are used in place through the mapping; other dtypes
     * are converted a block of rows at a time where rounding each row on its
     * own is all there is to do (RTN per channel or group, no smoothing),
     * else into a buffer of the unit's rows. */
    const unsigned char *raw = pq_st_data(j->model, pt->st);
    size_t off = (size_t)(u->row0 * pt->cols) * 4;
    const bool in_place = pt->st->dtype == PQ_DT_F32 && ((uintptr_t)(raw + off) % 4) == 0;
    pq_rtn_rows rows = {
        .codes = r->codes, .scale = r->scale, .zero_point = r->zero_point,
        .row_sum_sq = r->row_sum_sq, .row_err_sq = r->row_err_sq, .row_max_err = r->row_max_err,
    };
    if (!in_place && spec->gran != PQ_GRAN_TENSOR && !(j->gptq && j->gptq[u->tensor]) &&
        !pq_smooth_site_of(j->smooth, pt->st->name, &(bool){false})) {
        st = pq_unit_quantize_blocks(j, u, pt, &rows);
        goto quantized;
    }
    if (in_place) {
        w = (const float *)(raw + off);
    } else {
        if (!(buf = malloc((size_t)(u->n_rows * pt->cols) * sizeof *buf))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory reading tensor '%s'", pt->st->name);
            goto cleanup;
        }
        if ((st = pq_st_read_rows_f32(j->model, pt->st, u->row0, u->n_rows, buf))) goto cleanup;
        w = buf;
    }
    if (pq_smooth_site_of(j->smooth, pt->st->name, &(bool){false})) { /* SmoothQuant: columns times s */
        if (!buf && !(buf = malloc((size_t)(u->n_rows * pt->cols) * sizeof *buf))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory smoothing tensor '%s'", pt->st->name);
            goto cleanup;
        }
        pq_smooth_apply(j->smooth, pt->st->name, w, u->n_rows, pt->cols, buf);
        w = buf;
    }
    float range[2];
    const float *rangep = NULL;
    if (spec->gran == PQ_GRAN_TENSOR) {
        int64_t bad;
        if ((st = pq_rtn_tensor_range(&j->ops, w, u->n_rows * pt->cols, &range[0], &range[1], &bad))) goto cleanup;
        rangep = range;
    }
    if (j->gptq && j->gptq[u->tensor])
        st = pq_gptq_quantize_rows(&j->ops, j->gptq[u->tensor], w, u->n_rows, pt->cols, spec, j->threads, &rows);
    else
        st = pq_rtn_quantize_rows(&j->ops, j->threads, w, u->n_rows, pt->cols, spec, j->cfg->nan_policy,
                                  rangep, pt->st->name, u->row0, &rows);
quantized:
    r->n_nonfinite = rows.n_nonfinite;
    if (j->cfg->optimize_memory) pq_st_release(j->model, pt->st);
cleanup:
    free(buf);
    if (st) pq_unit_result_free(r);
    return st;
}

void pq_job_prefetch_unit(pq_job *j, const pq_unit *u)
{
    pq_st_prefetch(j->model, j->plan->tensors[u->tensor].st, u->row0, u->n_rows);
}

static void journal_leaf(pq_job *j, int64_t chunk);

pq_status pq_job_hash_source(pq_job *j, char hex[65])
{
    double t0 = pq_now_s();
    const pq_plan *p = j->plan;
    pq_status st;
    if (j->out.journal && p->n_hash == pq_st_hash_chunk_count(j->model, p->hash_chunk_bytes)) {
        /* leaf by leaf, each recorded in (or checked against) the journal */
        st = pq_st_hash_chunks(j->model, j->cfg->digest, p->hash_chunk_bytes, NULL, p->n_hash, j->threads,
                               j->hash_leaves);
        for (int64_t i = 0; i < p->n_hash && !st; i++) journal_leaf(j, i);
        if (!st) st = j->out.leaf_err;
        if (!st) st = pq_hash_tree_combine(j->cfg->digest, j->hash_leaves, p->n_hash, hex);
    } else {
        st = pq_st_digest_tree(j->model, j->cfg->digest, p->hash_chunk_bytes, j->threads, hex);
    }
    j->phase[PQ_PHASE_HASH] += pq_now_s() - t0;
    return st;
}

pq_status pq_job_hash_chunk(pq_job *j, int rank, int64_t chunk)
{
    if (pq_fault_at(PQ_FAULT_FAIL_HASH, rank))
        return pq_err(PQ_ERR_IO, "hashing the source, chunk %lld: injected failure (PQ_TEST_FAIL_HASH)",
                      (long long)chunk);
    pq_status st = pq_st_hash_chunk(j->model, j->cfg->digest, j->plan->hash_chunk_bytes, chunk,
                                    j->hash_leaves + (size_t)chunk * PQ_HASH_LEAF_BYTES);
    return st ? pq_err_replace(st, "hashing the source: the %s of chunk %lld failed", pq_digest_name(j->cfg->digest),
                               (long long)chunk)
              : PQ_OK;
}

const uint8_t *pq_job_leaf(const pq_job *j, int64_t chunk)
{
    return j->hash_leaves + (size_t)chunk * PQ_HASH_LEAF_BYTES;
}

bool pq_job_leaf_known(const pq_job *j, int64_t chunk) { return j->hash_have[chunk]; }
/* Rank 0 with a journal: a leaf it learns is recorded there, or checked. */
static void journal_leaf(pq_job *j, int64_t chunk)
{
    if (!j->out.journal || j->out.leaf_err) return;
    j->out.leaf_err = pq_journal_leaf(j->out.journal, chunk, j->hash_leaves + (size_t)chunk * PQ_HASH_LEAF_BYTES);
}

void pq_job_mark_leaf(pq_job *j, int64_t chunk)
{
    j->hash_have[chunk] = true;
    journal_leaf(j, chunk);
}

pq_status pq_job_journal_result(pq_job *j, const pq_unit *u, pq_unit_result *r)
{
    if (!j->out.journal || !pq_job_unit_done(j, u->id))
        return pq_err(PQ_ERR_INTERNAL, "unit %d is not in a journal", u->id);
    return pq_journal_read_unit(j->out.journal, j->plan, u, r, NULL);
}

pq_status pq_job_set_done(pq_job *j, const bool *done)
{
    free(j->done);
    if (!(j->done = malloc(((size_t)j->plan->n_units + 1) * sizeof *j->done)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    memcpy(j->done, done, (size_t)j->plan->n_units * sizeof *done);
    return PQ_OK;
}

bool pq_job_unit_done(const pq_job *j, int unit) { return j->done && j->done[unit]; }

pq_status pq_job_put_leaf(pq_job *j, int src, int64_t chunk, const uint8_t leaf[PQ_HASH_LEAF_BYTES])
{
    const pq_plan *p = j->plan;
    if (chunk < 0 || chunk >= p->n_hash)
        return pq_err(PQ_ERR_PROTO, "rank %d sent the hash of chunk %lld; the source has %d chunks", src,
                      (long long)chunk, p->n_hash);
    if (p->hash[chunk].rank != src || j->hash_have[chunk])
        return pq_err(PQ_ERR_PROTO, "rank %d sent the hash of chunk %lld, which %s", src, (long long)chunk,
                      p->hash[chunk].rank != src ? "the plan gave to another rank" : "was already known");
    memcpy(j->hash_leaves + (size_t)chunk * PQ_HASH_LEAF_BYTES, leaf, PQ_HASH_LEAF_BYTES);
    j->hash_have[chunk] = true;
    journal_leaf(j, chunk);
    return PQ_OK;
}

pq_status pq_job_set_gptq(pq_job *j, int tensor, const pq_gptq_factor *f)
{
    if (!j->gptq && !(j->gptq = calloc((size_t)j->plan->n_tensors, sizeof *j->gptq)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    j->gptq[tensor] = f;
    return PQ_OK;
}
