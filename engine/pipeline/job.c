/* SPDX-License-Identifier: Apache-2.0 */
/* job.c - one quantization job: open, plan, run units, write the output. */
#include "base/pq_clock.h"
#include "pipeline/job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pq_config.h"
#include "base/pq_cpu.h"
#include "kernels/pq_kernels.h"
#include "quant/rtn.h"
#include "format/st_hash.h"

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

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
            pq_kernels()->row_minmax(buf, pt->cols, &mn, &mx, &bad);
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

pq_status pq_job_set_hash_chunks(pq_job *j, int64_t chunk_bytes)
{
    pq_status st = pq_plan_set_hash_chunks(j->plan, j->model, chunk_bytes);
    return st ? st : alloc_leaves(j);
}

pq_status pq_job_open(pq_config *cfg, const char *model_path, int64_t unit_bytes, pq_job **out)
{
    pq_status st;
    pq_job *j = calloc(1, sizeof *j);
    if (!j) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    j->cfg = cfg;
    j->t_start = pq_now_s();
    if ((st = pq_config_validate(cfg))) goto fail;
    if ((st = pq_config_apply_hardware(cfg))) goto fail;
    pq_rtn_set_threads(cfg->threading ? cfg->threads : 1);
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
    j->hash_threads = 1;
    if (cfg->threading) {
        j->hash_threads = cfg->threads > 0 ? cfg->threads : pq_cpu_count();
    }
    j->t.open = pq_now_s() - j->t_start;
    *out = j;
    return PQ_OK;
fail:
    pq_job_destroy(j);
    return st;
}

void pq_job_destroy(pq_job *j)
{
    if (!j) return;
    pq_h5w_abort(j->writer);
    pq_plan_destroy(j->plan);
    pq_st_close(j->model);
    free(j->model_path);
    free(j->out_path);
    free(j->row_sum_sq);
    free(j->row_err_sq);
    free(j->row_max_err);
    free(j->tensor_row_base);
    free(j->tensor_nonfinite);
    free(j->tensor_rows_done);
    free(j->tensor_kept_float);
    free(j->hash_leaves);
    free(j->hash_have);
    free(j->stats.tensors);
    free(j);
}

void pq_unit_result_free(pq_unit_result *r)
{
    if (!r) return;
    free(r->codes);
    free(r->scale);
    free(r->zero_point);
    free(r->row_sum_sq);
    free(r->row_err_sq);
    free(r->row_max_err);
    memset(r, 0, sizeof *r);
}

static int64_t code_row_bytes(const pq_qspec *s, int64_t cols)
{
    return s->bits == 8 ? cols : (cols + 1) / 2;
}

pq_status pq_job_run_unit(pq_job *j, const pq_unit *u, pq_unit_result *r)
{
    pq_status st = PQ_OK;
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    const pq_qspec *spec = &j->plan->spec;
    float *buf = NULL;
    const float *w;
    memset(r, 0, sizeof *r);
    r->unit_id = u->id;
    r->n_rows = u->n_rows;
    r->code_bytes = u->n_rows * code_row_bytes(spec, pt->cols);
    int64_t groups = pq_qspec_groups(spec, pt->cols);
    r->n_scales = spec->gran == PQ_GRAN_TENSOR ? 1 : u->n_rows * groups;
    r->codes = malloc((size_t)r->code_bytes);
    r->scale = malloc((size_t)r->n_scales * sizeof(float));
    if (!spec->symmetric) r->zero_point = malloc((size_t)r->n_scales * sizeof(int32_t));
    r->row_sum_sq = malloc((size_t)u->n_rows * sizeof(double));
    r->row_err_sq = malloc((size_t)u->n_rows * sizeof(double));
    r->row_max_err = malloc((size_t)u->n_rows * sizeof(float));
    if (!r->codes || !r->scale || (!spec->symmetric && !r->zero_point) || !r->row_sum_sq ||
        !r->row_err_sq || !r->row_max_err) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory for unit %d of tensor '%s'", u->id, pt->st->name);
        goto cleanup;
    }
    pq_st_prefetch(j->model, pt->st, u->row0, u->n_rows);
    /* fp32 checkpoints are used in place through the mapping; other dtypes
     * are converted into a buffer. */
    const unsigned char *raw = pq_st_data(j->model, pt->st);
    size_t off = (size_t)(u->row0 * pt->cols) * 4;
    if (pt->st->dtype == PQ_DT_F32 && ((uintptr_t)(raw + off) % 4) == 0) {
        w = (const float *)(raw + off);
    } else {
        if (!(buf = malloc((size_t)(u->n_rows * pt->cols) * sizeof *buf))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory reading tensor '%s'", pt->st->name);
            goto cleanup;
        }
        if ((st = pq_st_read_rows_f32(j->model, pt->st, u->row0, u->n_rows, buf))) goto cleanup;
        w = buf;
    }
    float range[2];
    const float *rangep = NULL;
    if (spec->gran == PQ_GRAN_TENSOR) {
        int64_t bad;
        if ((st = pq_rtn_tensor_range(w, u->n_rows * pt->cols, &range[0], &range[1], &bad))) goto cleanup;
        rangep = range;
    }
    pq_rtn_rows rows = {
        .codes = r->codes, .scale = r->scale, .zero_point = r->zero_point,
        .row_sum_sq = r->row_sum_sq, .row_err_sq = r->row_err_sq, .row_max_err = r->row_max_err,
    };
    st = pq_rtn_quantize_rows(w, u->n_rows, pt->cols, spec, j->cfg->nan_policy, rangep,
                              pt->st->name, u->row0, &rows);
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

static void emit(pq_job *j, const char *phase, const char *tensor, double sqnr)
{
    if (!j->progress) return;
    pq_progress ev = {
        .phase = phase, .units_done = j->units_done, .units_total = j->plan->n_units,
        .bytes_done = j->bytes_done, .bytes_total = pq_plan_total_cost(j->plan),
        .elapsed_s = pq_now_s() - j->t_start, .tensor = tensor, .sqnr_db = sqnr,
    };
    j->progress(j->progress_user, &ev);
}

pq_status pq_job_hash_source(pq_job *j, char hex[65])
{
    double t0 = pq_now_s();
    pq_status st = pq_st_hash_tree(j->model, j->plan->hash_chunk_bytes, j->hash_threads, hex);
    j->t.hash += pq_now_s() - t0;
    return st;
}

static pq_status injected_hash_failure(int rank, int64_t chunk)
{
    const char *inj = getenv("PQ_TEST_FAIL_HASH");
    if (inj && *inj && atoi(inj) == rank)
        return pq_err(PQ_ERR_IO, "hashing the source, chunk %lld: injected failure (PQ_TEST_FAIL_HASH)",
                      (long long)chunk);
    return PQ_OK;
}

pq_status pq_job_hash_chunk(pq_job *j, int rank, int64_t chunk)
{
    pq_status st = injected_hash_failure(rank, chunk);
    if (st) return st;
    st = pq_st_hash_chunk(j->model, j->plan->hash_chunk_bytes, chunk,
                          j->hash_leaves + (size_t)chunk * PQ_HASH_LEAF_BYTES);
    return st ? pq_err_replace(st, "hashing the source: SHA-256 of chunk %lld failed", (long long)chunk) : PQ_OK;
}

pq_status pq_job_hash_own(pq_job *j, int rank, int max_chunks, int64_t *chunks, int *n_done)
{
    const pq_plan *p = j->plan;
    int n = 0;
    double t0 = pq_now_s();
    for (int i = 0; i < p->n_hash && n < max_chunks; i++)
        if (p->hash[i].rank == rank && !j->hash_have[i]) chunks[n++] = i;
    *n_done = n;
    if (!n) return PQ_OK;
    pq_status inj = injected_hash_failure(rank, chunks[0]);
    if (inj) return inj;
    pq_status st = pq_st_hash_chunks(j->model, p->hash_chunk_bytes, chunks, n, j->hash_threads, j->hash_leaves);
    j->t.hash += pq_now_s() - t0;
    if (st) return pq_err_replace(st, "hashing the source: SHA-256 of a chunk failed");
    for (int k = 0; k < n; k++) j->hash_have[chunks[k]] = true;
    return PQ_OK;
}

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
    return PQ_OK;
}

static pq_status write_float_tensor(pq_job *j, const pq_plan_tensor *pt)
{
    pq_status st;
    const pq_st_tensor *t = pt->st;
    float *buf = malloc((size_t)(t->n_elems ? t->n_elems : 1) * sizeof *buf);
    if (!buf) return pq_err(PQ_ERR_RESOURCE, "out of memory reading tensor '%s'", t->name);
    int64_t rows = t->ndim >= 2 ? t->shape[0] : 1; /* the reader's 2-D view */
    if (t->n_elems == 0) rows = 0;
    st = pq_st_read_rows_f32(j->model, t, 0, rows, buf);
    if (!st) st = pq_h5w_put_float(j->writer, t->name, t->ndim, t->shape, buf, j->cfg->float16);
    free(buf);
    if (j->cfg->optimize_memory) pq_st_release(j->model, t);
    return st;
}

pq_status pq_job_begin_output(pq_job *j, const char *out_path, int num_ranks, const char *command_line)
{
    pq_status st;
    char sha[65];
    char *cfg_json = NULL;
    const pq_plan *p = j->plan;
    if (!j->defer_source_hash && (st = pq_job_hash_source(j, sha))) return st;
    double t_setup = pq_now_s(), floats0 = j->t.floats;
    if (!(cfg_json = pq_config_to_json(j->cfg))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_h5_meta meta = {
        .architecture = j->arch.arch ? j->arch.arch->name : "esm2_custom",
        .model_name = basename_of(j->model_path),
        .source_sha256 = j->defer_source_hash ? NULL : sha,
        .source_hash_chunk_bytes = j->plan->hash_chunk_bytes,
        .created_by = "proteus " PQ_VERSION,
        .config_json = cfg_json,
        .num_ranks = num_ranks,
        .cfg = j->arch,
    };
    if (!(j->out_path = strdup(out_path))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    if ((st = pq_h5w_create(out_path, &meta, &j->writer))) goto cleanup;
    if (command_line && (st = pq_h5w_provenance(j->writer, "command_line", command_line))) goto cleanup;

    /* Row arrays for the metrics of every quantized tensor. */
    int64_t total_rows = 0;
    j->tensor_row_base = calloc((size_t)p->n_tensors, sizeof(int64_t));
    j->tensor_nonfinite = calloc((size_t)p->n_tensors, sizeof(int64_t));
    j->tensor_rows_done = calloc((size_t)p->n_tensors, sizeof(int64_t));
    j->stats.tensors = calloc((size_t)p->n_tensors, sizeof(pq_tensor_stats));
    if (!j->tensor_row_base || !j->tensor_nonfinite || !j->tensor_rows_done || !j->stats.tensors) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < p->n_tensors; i++) {
        j->tensor_row_base[i] = total_rows;
        if (p->tensors[i].action == PQ_ACT_QUANT) total_rows += p->tensors[i].rows;
    }
    j->row_sum_sq = malloc((size_t)(total_rows + 1) * sizeof(double));
    j->row_err_sq = malloc((size_t)(total_rows + 1) * sizeof(double));
    j->row_max_err = malloc((size_t)(total_rows + 1) * sizeof(float));
    if (!j->row_sum_sq || !j->row_err_sq || !j->row_max_err) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *pt = &p->tensors[i];
        pq_tensor_stats *ts = &j->stats.tensors[i];
        ts->name = pt->st->name;
        ts->action = pt->action;
        ts->ndim = pt->st->ndim;
        memcpy(ts->shape, pt->st->shape, sizeof ts->shape);
        ts->bytes_before = pt->st->n_bytes;
        if (pt->action == PQ_ACT_FLOAT) {
            double t0 = pq_now_s();
            st = write_float_tensor(j, pt);
            j->t.floats += pq_now_s() - t0;
            if (st) goto cleanup;
            ts->bytes_after = (uint64_t)pt->st->n_elems * (j->cfg->float16 ? 2u : 4u);
        } else if (pt->action == PQ_ACT_QUANT) {
            if ((st = pq_h5w_quant_begin(j->writer, pt->st->name, &p->spec, pt->rows, pt->cols,
                                         j->cfg->scheme, "rtn")))
                goto cleanup;
            int64_t groups = pq_qspec_groups(&p->spec, pt->cols);
            int64_t n_scales = p->spec.gran == PQ_GRAN_TENSOR ? 1 : pt->rows * groups;
            ts->bytes_after = (uint64_t)(pt->rows * code_row_bytes(&p->spec, pt->cols)) +
                              (uint64_t)n_scales * (p->spec.symmetric ? 4u : 8u);
        }
    }
    if (!st) st = pq_h5w_preallocate(j->writer);
cleanup:
    j->t.setup += pq_now_s() - t_setup - (j->t.floats - floats0);
    free(cfg_json);
    return st;
}

pq_status pq_job_put_result(pq_job *j, const pq_unit *u, const pq_unit_result *r)
{
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    double t0 = pq_now_s();
    if (r->n_rows != u->n_rows)
        return pq_err(PQ_ERR_INTERNAL, "unit %d of '%s': %lld rows returned, %lld expected", u->id,
                      pt->st->name, (long long)r->n_rows, (long long)u->n_rows);
    pq_status st = pq_h5w_quant_rows(j->writer, pt->st->name, u->row0, u->n_rows, r->codes,
                                     r->scale, r->zero_point);
    j->t.write += pq_now_s() - t0;
    if (st) return st;
    int64_t base = j->tensor_row_base[u->tensor] + u->row0;
    memcpy(j->row_sum_sq + base, r->row_sum_sq, (size_t)u->n_rows * sizeof(double));
    memcpy(j->row_err_sq + base, r->row_err_sq, (size_t)u->n_rows * sizeof(double));
    memcpy(j->row_max_err + base, r->row_max_err, (size_t)u->n_rows * sizeof(float));
    j->tensor_nonfinite[u->tensor] += r->n_nonfinite;
    j->tensor_rows_done[u->tensor] += u->n_rows;
    j->units_done++;
    j->bytes_done += u->cost;
    emit(j, "quantize", pt->st->name, NAN);
    return PQ_OK;
}

pq_status pq_job_codes_offsets(pq_job *j, uint64_t *offsets)
{
    const pq_plan *p = j->plan;
    for (int i = 0; i < p->n_tensors; i++) {
        offsets[i] = 0;
        if (p->tensors[i].action != PQ_ACT_QUANT) continue;
        pq_status st = pq_h5w_codes_offset(j->writer, p->tensors[i].st->name, &offsets[i]);
        if (st) return st;
    }
    return PQ_OK;
}

pq_status pq_job_end_next(pq_job *j, bool *did)
{
    const pq_plan *p = j->plan;
    *did = false;
    while (j->n_ended < p->n_tensors && p->tensors[j->n_ended].action != PQ_ACT_QUANT) j->n_ended++;
    int i = j->n_ended;
    if (i == p->n_tensors || j->tensor_rows_done[i] < p->tensors[i].rows) return PQ_OK;
    const pq_plan_tensor *pt = &p->tensors[i];
    pq_tensor_stats *ts = &j->stats.tensors[i];
    int64_t base = j->tensor_row_base[i];
    pq_qmetrics_from_rows(j->row_sum_sq + base, j->row_err_sq + base, j->row_max_err + base, pt->rows,
                          j->tensor_nonfinite[i], &ts->metrics);
    pq_status st = pq_h5w_quant_end(j->writer, pt->st->name, &ts->metrics);
    if (st) return st;
    j->n_ended++;
    *did = true;
    return PQ_OK;
}

pq_status pq_job_finish_output(pq_job *j)
{
    pq_status st;
    const pq_plan *p = j->plan;
    pq_job_stats *s = &j->stats;
    double sum_sqnr = 0, t0 = pq_now_s();
    /* the metrics first, for any number of ranks (see pq_job_end_next) */
    for (bool did = true; did;)
        if ((st = pq_job_end_next(j, &did))) return st;
    if (j->n_ended < p->n_tensors) {
        const pq_plan_tensor *pt = &p->tensors[j->n_ended];
        return pq_err(PQ_ERR_INTERNAL, "tensor '%s': %lld of %lld rows quantized at the commit", pt->st->name,
                      (long long)j->tensor_rows_done[j->n_ended], (long long)pt->rows);
    }
    if (j->defer_source_hash) {
        for (int i = 0; i < p->n_hash; i++)
            if (!j->hash_have[i])
                return pq_err(PQ_ERR_INTERNAL, "the hash of source chunk %d (rank %d) never reached the writer",
                              i, p->hash[i].rank);
        if ((st = pq_hash_tree_combine(j->hash_leaves, p->n_hash, j->source_hash))) return st;
        if ((st = pq_h5w_set_source_sha256(j->writer, j->source_hash, p->hash_chunk_bytes))) return st;
    }
    s->min_sqnr_db = INFINITY;
    s->n_tensors = p->n_tensors;
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *pt = &p->tensors[i];
        pq_tensor_stats *ts = &s->tensors[i];
        if (pt->action == PQ_ACT_DROP) { s->n_dropped++; continue; }
        s->bytes_before += ts->bytes_before;
        s->bytes_after += ts->bytes_after;
        if (pt->action == PQ_ACT_FLOAT) { s->n_float++; continue; }
        s->n_quantized++;
        double q = ts->metrics.sqnr_db;
        if (q < s->min_sqnr_db) s->min_sqnr_db = q;
        sum_sqnr += isfinite(q) ? q : 0;
    }
    s->mean_sqnr_db = s->n_quantized ? sum_sqnr / s->n_quantized : NAN;
    if (!s->n_quantized) s->min_sqnr_db = NAN;
    if (j->before_commit && (st = j->before_commit(j->before_commit_user, j))) return st;
    st = pq_h5w_commit(j->writer);
    j->writer = NULL;
    j->t.commit = pq_now_s() - t0;
    s->seconds_total = pq_now_s() - j->t_start;
    emit(j, "done", NULL, s->mean_sqnr_db);
    return st;
}

pq_status pq_job_run_all(pq_job *j)
{
    double t0 = pq_now_s(), tw = j->t.write;
    for (int i = 0; i < j->plan->n_units; i++) {
        pq_unit_result r;
        const pq_unit *u = &j->plan->units[i];
        if (i + 1 < j->plan->n_units) pq_job_prefetch_unit(j, &j->plan->units[i + 1]);
        pq_status st = pq_job_run_unit(j, u, &r);
        if (!st) st = pq_job_put_result(j, u, &r);
        pq_unit_result_free(&r);
        if (st) return st;
    }
    j->stats.seconds_quantize = pq_now_s() - t0;
    j->t.units += j->stats.seconds_quantize - (j->t.write - tw);
    return PQ_OK;
}
