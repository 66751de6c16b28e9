/* SPDX-License-Identifier: Apache-2.0 */
/* output.c - one quantization job's writer side (rank 0): create
 * OUT.partial, write the float tensors, put every unit's rows, write the
 * metrics in plan order, commit (job.h). */
#include "pipeline/job_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_clock.h"
#include "base/pq_fault.h"
#include "pq_config.h"
#include "format/h5smooth.h"
#include "quant/qtensor.h"

/* The rounding a quantized tensor gets: GPTQ for the layers' Linears when
 * the configuration asks for it (worker/gptq_run.h), RTN otherwise. */
static const char *method_of(const pq_job *j, const pq_plan_tensor *pt)
{
    return !strcmp(j->cfg->method, "gptq") && pq_esm2_role_is_linear(pt->role) ? "gptq" : "rtn";
}

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void emit(pq_job *j, const char *phase, const char *tensor, double sqnr)
{
    pq_output *o = &j->out;
    if (!o->progress) return;
    pq_progress ev = {
        .phase = phase, .units_done = o->units_done, .units_total = j->plan->n_units,
        .bytes_done = o->bytes_done, .bytes_total = pq_plan_total_cost(j->plan),
        .elapsed_s = pq_now_s() - j->t_start, .tensor = tensor, .sqnr_db = sqnr,
    };
    o->progress(o->progress_user, &ev);
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
    if (!st && j->smooth) pq_smooth_apply(j->smooth, t->name, buf, rows, t->n_elems / (rows ? rows : 1), buf);
    if (!st) st = pq_h5w_put_float(j->out.writer, t->name, t->ndim, t->shape, buf, pt->float16);
    free(buf);
    if (j->cfg->optimize_memory) pq_st_release(j->model, t);
    return st;
}

static pq_status put_rows(pq_job *j, const pq_unit *u, const pq_unit_result *r);

/* Where unit u's codes lie in OUT.partial. */
static pq_status codes_at(pq_job *j, const pq_unit *u, uint64_t *at)
{
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    pq_status st = pq_h5w_codes_offset(j->out.writer, pt->st->name, at);
    *at += (uint64_t)(u->row0 * pq_qspec_row_bytes(&pt->spec, pt->cols));
    return st;
}

/* A resumed run: every unit the journal holds, its codes from the stopped
 * run's OUT.partial, into the new one (at the same offsets: the layout
 * depends on the plan alone; a unit placed elsewhere is recorded again). */
static pq_status replay(pq_job *j)
{
    const pq_plan *p = j->plan;
    pq_status st = PQ_OK;
    const bool *done = pq_journal_done(j->out.journal);
    for (int i = 0; i < p->n_units && !st; i++) {
        if (!done[i]) continue;
        pq_unit_result r;
        uint64_t was = 0, now = 0;
        if ((st = pq_journal_read_unit(j->out.journal, p, &p->units[i], &r, &was))) break;
        st = put_rows(j, &p->units[i], &r);
        if (!st) emit(j, "quantize", p->tensors[p->units[i].tensor].st->name, NAN);
        if (!st) st = codes_at(j, &p->units[i], &now);
        if (!st && now != was) {
            uint8_t sum[32];
            pq_unit_layout l;
            pq_unit_layout_of(p, &p->units[i], &l);
            if (!(st = pq_journal_codes_sum(j->out.journal, r.codes, l.codes, sum)))
                st = pq_journal_add_unit(j->out.journal, p, &p->units[i], &r, now, sum);
        }
        pq_unit_result_free(&r);
    }
    /* the tensors now complete are ended with the others' (pq_job_end_next):
     * the workers' layout still needs their codes' offsets */
    return st;
}

pq_status pq_job_begin_output(pq_job *j, const char *out_path, int num_ranks, const char *command_line)
{
    pq_output *o = &j->out;
    pq_status st;
    char sha[65];
    char *cfg_json = NULL;
    const pq_plan *p = j->plan;
    if (!j->defer_source_hash && (st = pq_job_hash_source(j, sha))) return st;
    double t_setup = pq_now_s(), floats0 = j->phase[PQ_PHASE_FLOATS];
    if (!(cfg_json = pq_config_to_json(j->cfg))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_h5_meta meta = {
        .architecture = j->arch.arch ? j->arch.arch->name : "esm2_custom",
        .model_name = basename_of(j->model_path),
        .source_sha256 = j->defer_source_hash ? NULL : sha,
        .source_digest_alg = j->cfg->digest,
        .source_hash_chunk_bytes = j->plan->hash_chunk_bytes,
        .created_by = "proteus " PQ_VERSION,
        .config_json = cfg_json,
        .num_ranks = num_ranks,
        .cfg = j->arch,
    };
    if (!(o->path = strdup(out_path))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    if ((st = pq_h5w_create(out_path, &meta, &o->writer))) goto cleanup;
    if (o->journal && (st = pq_journal_watch_partial(o->journal, pq_h5w_partial_path(o->writer)))) goto cleanup;
    if (command_line && (st = pq_h5w_provenance(o->writer, "command_line", command_line))) goto cleanup;
    if (j->cfg->recipe && (st = pq_h5w_provenance(o->writer, "recipe_file", j->cfg->recipe))) goto cleanup;
    if (j->smooth && (st = pq_h5w_put_smooth(o->writer, j->smooth))) goto cleanup;

    /* Row arrays for the metrics of every quantized tensor. */
    int64_t total_rows = 0;
    o->tensor_row_base = calloc((size_t)p->n_tensors, sizeof(int64_t));
    o->tensor_nonfinite = calloc((size_t)p->n_tensors, sizeof(int64_t));
    o->tensor_rows_done = calloc((size_t)p->n_tensors, sizeof(int64_t));
    j->stats.tensors = calloc((size_t)p->n_tensors, sizeof(pq_tensor_stats));
    if (!o->tensor_row_base || !o->tensor_nonfinite || !o->tensor_rows_done || !j->stats.tensors) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < p->n_tensors; i++) {
        o->tensor_row_base[i] = total_rows;
        if (p->tensors[i].action == PQ_ACT_QUANT) total_rows += p->tensors[i].rows;
    }
    o->row_sum_sq = malloc((size_t)(total_rows + 1) * sizeof(double));
    o->row_err_sq = malloc((size_t)(total_rows + 1) * sizeof(double));
    o->row_max_err = malloc((size_t)(total_rows + 1) * sizeof(float));
    if (!o->row_sum_sq || !o->row_err_sq || !o->row_max_err) {
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
            j->phase[PQ_PHASE_FLOATS] += pq_now_s() - t0;
            if (st) goto cleanup;
            ts->bytes_after = (uint64_t)pt->st->n_elems * (pt->float16 ? 2u : 4u);
        } else if (pt->action == PQ_ACT_QUANT) {
            if ((st = pq_h5w_quant_begin(o->writer, pt->st->name, &pt->spec, pt->rows, pt->cols,
                                         j->cfg->scheme, method_of(j, pt))))
                goto cleanup;
            int64_t n_scales = pq_qspec_n_scales(&pt->spec, pt->rows, pt->cols);
            ts->bytes_after = (uint64_t)(pt->rows * pq_qspec_row_bytes(&pt->spec, pt->cols)) +
                              (uint64_t)n_scales * (pt->spec.symmetric ? 4u : 8u);
        }
    }
    if (!st) st = pq_h5w_preallocate(o->writer);
    if (!st && o->journal) st = replay(j);
    if (!st && pq_fault_at(PQ_FAULT_KILL_AT, 3)) raise(SIGKILL);
cleanup:
    j->phase[PQ_PHASE_SETUP] += pq_now_s() - t_setup - (j->phase[PQ_PHASE_FLOATS] - floats0);
    free(cfg_json);
    return st;
}

/* The codes a worker on this machine wrote into OUT.partial itself (at
 * off), read back (from the page cache) for their checksum: owned *codes. */
static pq_status codes_back(pq_job *j, const pq_unit *u, uint64_t off, void **codes)
{
    pq_output *o = &j->out;
    const char *path = pq_h5w_partial_path(o->writer);
    pq_unit_layout l;
    pq_unit_layout_of(j->plan, u, &l);
    *codes = NULL;
    if (o->codes_fd <= 0 && (o->codes_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        o->codes_fd = 0;
        return pq_err(PQ_ERR_IO, "%s: cannot open to read codes back: %s", path, strerror(errno));
    }
    if (!(*codes = malloc(l.codes ? l.codes : 1))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (size_t got = 0; got < l.codes;) {
        ssize_t n = pread(o->codes_fd, (char *)*codes + got, l.codes - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            free(*codes);
            *codes = NULL;
            return pq_err(PQ_ERR_IO, "%s: reading back the codes of unit %d: %s", path, u->id,
                          n < 0 ? strerror(errno) : "end of file");
        }
        got += (size_t)n;
    }
    return PQ_OK;
}

/* Unit u's record in the journal: its scales and metrics, where its codes
 * lie in OUT.partial and their checksum. */
static pq_status journal_unit(pq_job *j, const pq_unit *u, const pq_unit_result *r)
{
    pq_output *o = &j->out;
    double t0 = pq_now_s();
    uint64_t at = 0;
    uint8_t sum[32];
    void *back = NULL;
    pq_status st = codes_at(j, u, &at);
    if (!st && !r->codes) st = codes_back(j, u, at, &back);
    pq_unit_layout l;
    pq_unit_layout_of(j->plan, u, &l);
    if (!st) st = pq_journal_codes_sum(o->journal, r->codes ? r->codes : back, l.codes, sum);
    if (!st) st = pq_journal_add_unit(o->journal, j->plan, u, r, at, sum);
    free(back);
    j->phase[PQ_PHASE_WRITE] += pq_now_s() - t0;
    return st;
}

pq_status pq_job_put_result(pq_job *j, const pq_unit *u, const pq_unit_result *r)
{
    pq_output *o = &j->out;
    if (o->leaf_err) return o->leaf_err;
    pq_status st = put_rows(j, u, r);
    if (!st && o->journal) st = journal_unit(j, u, r);
    if (st) return st;
    /* the progress event after the unit's record: the handler may take it
     * as the sign that the journal holds a unit (quantize_run.c disarms the
     * removal of OUT.partial at the first) */
    emit(j, "quantize", j->plan->tensors[u->tensor].st->name, NAN);
    if (o->journal && ++o->journaled == pq_fault_value(PQ_FAULT_KILL_AFTER, -1)) raise(SIGKILL);
    return PQ_OK;
}

static pq_status put_rows(pq_job *j, const pq_unit *u, const pq_unit_result *r)
{
    pq_output *o = &j->out;
    const pq_plan_tensor *pt = &j->plan->tensors[u->tensor];
    double t0 = pq_now_s();
    if (r->n_rows != u->n_rows)
        return pq_err(PQ_ERR_INTERNAL, "unit %d of '%s': %lld rows returned, %lld expected", u->id,
                      pt->st->name, (long long)r->n_rows, (long long)u->n_rows);
    pq_status st = pq_h5w_quant_rows(o->writer, pt->st->name, u->row0, u->n_rows, r->codes,
                                     r->scale, r->zero_point);
    j->phase[PQ_PHASE_WRITE] += pq_now_s() - t0;
    if (st) return st;
    int64_t base = o->tensor_row_base[u->tensor] + u->row0;
    memcpy(o->row_sum_sq + base, r->row_sum_sq, (size_t)u->n_rows * sizeof(double));
    memcpy(o->row_err_sq + base, r->row_err_sq, (size_t)u->n_rows * sizeof(double));
    memcpy(o->row_max_err + base, r->row_max_err, (size_t)u->n_rows * sizeof(float));
    o->tensor_nonfinite[u->tensor] += r->n_nonfinite;
    o->tensor_rows_done[u->tensor] += u->n_rows;
    o->units_done++;
    o->bytes_done += u->cost;
    return PQ_OK;
}

pq_status pq_job_codes_offsets(pq_job *j, uint64_t *offsets)
{
    pq_output *o = &j->out;
    const pq_plan *p = j->plan;
    for (int i = 0; i < p->n_tensors; i++) {
        offsets[i] = 0;
        if (p->tensors[i].action != PQ_ACT_QUANT) continue;
        pq_status st = pq_h5w_codes_offset(o->writer, p->tensors[i].st->name, &offsets[i]);
        if (st) return st;
    }
    return PQ_OK;
}

pq_status pq_job_end_next(pq_job *j, bool *did)
{
    pq_output *o = &j->out;
    const pq_plan *p = j->plan;
    *did = false;
    while (o->n_ended < p->n_tensors && p->tensors[o->n_ended].action != PQ_ACT_QUANT) o->n_ended++;
    int i = o->n_ended;
    if (i == p->n_tensors || o->tensor_rows_done[i] < p->tensors[i].rows) return PQ_OK;
    const pq_plan_tensor *pt = &p->tensors[i];
    pq_tensor_stats *ts = &j->stats.tensors[i];
    int64_t base = o->tensor_row_base[i];
    pq_qmetrics_from_rows(o->row_sum_sq + base, o->row_err_sq + base, o->row_max_err + base, pt->rows,
                          o->tensor_nonfinite[i], &ts->metrics);
    pq_status st = pq_h5w_quant_end(o->writer, pt->st->name, &ts->metrics);
    if (st) return st;
    o->n_ended++;
    *did = true;
    return PQ_OK;
}

pq_status pq_job_finish_output(pq_job *j)
{
    pq_output *o = &j->out;
    pq_status st;
    const pq_plan *p = j->plan;
    pq_job_stats *s = &j->stats;
    double sum_sqnr = 0, t0 = pq_now_s();
    /* the metrics first, for any number of ranks (see pq_job_end_next) */
    for (bool did = true; did;)
        if ((st = pq_job_end_next(j, &did))) return st;
    if (o->n_ended < p->n_tensors) {
        const pq_plan_tensor *pt = &p->tensors[o->n_ended];
        return pq_err(PQ_ERR_INTERNAL, "tensor '%s': %lld of %lld rows quantized at the commit", pt->st->name,
                      (long long)o->tensor_rows_done[o->n_ended], (long long)pt->rows);
    }
    if (j->defer_source_hash) {
        char source_hash[65];
        for (int i = 0; i < p->n_hash; i++)
            if (!j->hash_have[i])
                return pq_err(PQ_ERR_INTERNAL, "the hash of source chunk %d (rank %d) never reached the writer",
                              i, p->hash[i].rank);
        if ((st = pq_hash_tree_combine(j->cfg->digest, j->hash_leaves, p->n_hash, source_hash))) return st;
        if ((st = pq_h5w_set_source_digest(o->writer, j->cfg->digest, source_hash, p->hash_chunk_bytes))) return st;
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
    if (o->leaf_err) return o->leaf_err;
    if (o->before_commit && (st = o->before_commit(o->before_commit_user, o->writer, j->plan))) return st;
    if (o->journal && (st = pq_journal_sync(o->journal))) return st;
    if (pq_fault_at(PQ_FAULT_KILL_AT, 4)) raise(SIGKILL);
    st = pq_h5w_commit(o->writer);
    o->writer = NULL;
    j->phase[PQ_PHASE_COMMIT] = pq_now_s() - t0;
    s->seconds_total = pq_now_s() - j->t_start;
    emit(j, "done", NULL, s->mean_sqnr_db);
    return st;
}

void pq_job_output_free(pq_job *j)
{
    pq_output *o = &j->out;
    if (o->keep_partial) pq_h5w_close_keep(o->writer);
    else pq_h5w_abort(o->writer);
    o->writer = NULL;
    if (o->codes_fd > 0) close(o->codes_fd);
    o->codes_fd = 0;
    free(o->path);
    free(o->row_sum_sq);
    free(o->row_err_sq);
    free(o->row_max_err);
    free(o->tensor_row_base);
    free(o->tensor_nonfinite);
    free(o->tensor_rows_done);
}

void pq_job_set_before_commit(pq_job *j, pq_before_commit_fn fn, void *user)
{
    j->out.before_commit = fn;
    j->out.before_commit_user = user;
}

void pq_job_set_journal(pq_job *j, pq_journal *jr) { j->out.journal = jr; }
void pq_job_keep_partial(pq_job *j, bool keep) { if (j) j->out.keep_partial = keep; }

void pq_job_set_progress(pq_job *j, pq_progress_fn fn, void *user)
{
    j->out.progress = fn;
    j->out.progress_user = user;
}

const char *pq_job_partial_path(const pq_job *j) { return pq_h5w_partial_path(j->out.writer); }
double pq_job_bytes_done(const pq_job *j) { return j->out.bytes_done; }
void pq_job_start_writeback(pq_job *j) { pq_h5w_start_writeback(j->out.writer); }
int pq_job_tensors_ended(const pq_job *j) { return j->out.n_ended; }
void pq_job_set_quantize_seconds(pq_job *j, double s) { j->stats.seconds_quantize = s; }
