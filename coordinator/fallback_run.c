/* SPDX-License-Identifier: Apache-2.0 */
/* fallback_run.c - quantize's fallback over the ranks (quantize_job.h): each
 * attempt quantized by every rank into OUT.attemptN.h5 beside OUT, evaluated
 * against the checkpoint on rank 0 (the others wait without spinning), the
 * next step chosen there (pipeline/fallback.h) and applied everywhere. The
 * accepted attempt gets the trail in /provenance and is renamed to OUT;
 * every other attempt file is removed, also after a failure or a signal
 * (rank 0's watcher, cleanup.h, removes them if rank 0 dies). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/bundled.h"
#include "base/log.h"
#include "base/pq_io.h"
#include "coordinator/cleanup.h"
#include "coordinator/quantize_job.h"
#include "eval/compare.h"
#include "format/h5prov.h"
#include "model/fasta.h"
#include "proto/msg.h"
#include "proto/pq_wire.h"
#include "worker/stop.h"
#include "worker/sync.h"

/* The evaluation's settings, those of `proteus evaluate` by default. */
#define EVAL_MAX_LENGTH 500
#define EVAL_BATCH_TOKENS 4096
#define EVAL_MASK_FRAC 0.15

/* What rank 0 decided after an attempt, broadcast to every rank. */
enum { DECIDE_FAIL = 1, DECIDE_ACCEPT, DECIDE_NEXT, DECIDE_STOP };
typedef struct decision {
    int32_t what, status, kind, tensor;
} decision;

/* OUT.attemptN.h5: beside OUT (same file system: the rename is atomic), and
 * ending in .h5 so that the model reader takes it for a Proteus file. */
static pq_status attempt_name(char *buf, size_t n, const char *out, int number)
{
    if (snprintf(buf, n, "%s.attempt%d.h5", out, number) >= (int)n)
        return pq_err(PQ_ERR_CONFIG, "--out %s: the path is too long for the fallback's attempt files", out);
    return PQ_OK;
}

/* Rank 0: the evaluation FASTA (--eval-data, or the bundled sample), read
 * once here so that a bad file fails before any quantization. */
static pq_status eval_data(const pq_quantize_request *q, char *buf, size_t n)
{
    char tried[2048];
    if (q->eval_data) {
        snprintf(buf, n, "%s", q->eval_data);
    } else if (pq_bundled_find("proteins/eval_sample.fasta", buf, n, tried, sizeof tried)) {
        PQ_LOG_INFO("evaluation data: the bundled %s", buf);
    } else {
        return pq_err(PQ_ERR_IO, "no --eval-data given and the bundled proteins/eval_sample.fasta was not found "
                      "(tried %s; $PROTEUS_DATA_DIR names the folder that holds proteins/)", tried);
    }
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = EVAL_MAX_LENGTH;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    pq_status st = pq_fasta_read_all(buf, &fo, q->eval_max_seqs, &recs, &n_recs);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    if (st) {
        char why[1024];
        snprintf(why, sizeof why, "%s", pq_err_detail());
        pq_err_replace(st, "--eval-data: %s", why);
    }
    return st;
}

/* Rank 0: the committed attempt file against the checkpoint, whose results
 * `ref` keeps from the first attempt on (the checkpoint is run once per
 * fallback). The per-Linear SQNRs need the checkpoint's activations: the
 * first attempt measures them in its pass; a later one only when it misses
 * the budget (an accepted attempt's SQNRs are never read), in a second
 * pass of the checkpoint alone. */
static pq_status evaluate(const pq_qrun *x, const pq_config *cfg, const pq_job *job, const char *file,
                          const char *fasta, pq_eval_ref *ref, pq_fallback *fb)
{
    const pq_quantize_request *q = x->q;
    /* the other ranks wait without spinning: this rank may take the cores */
    pq_esm2_model_opts mo = {.n_threads = cfg->threads, .no_threading = !cfg->threading,
                             .no_fusion = !cfg->enable_fusion, .ops = *pq_job_ops(job)};
    pq_eval_compare_opts co = {.model = file, .reference = q->model, .fasta = fasta, .max_seqs = q->eval_max_seqs,
                               .max_length = EVAL_MAX_LENGTH, .batch_tokens = EVAL_BATCH_TOKENS,
                               .mask_frac = EVAL_MASK_FRAC, .model_opts = mo, .reference_opts = mo,
                               .no_peak = true, /* utilization is not part of the decision */
                               .ref_cache = ref, .no_sqnr = pq_eval_ref_model(ref) != NULL};
    pq_eval_report r;
    pq_status st = pq_eval_compare(&co, &r);
    if (co.no_sqnr) pq_eval_report_free(&r); /* r.sqnr NULL: no SQNR measured */
    if (!st) st = pq_fallback_measured(fb, &r, (int64_t)pq_job_stats_of(job)->bytes_after);
    pq_eval_report_free(&r);
    if (!st && co.no_sqnr && !pq_fallback_current(fb)->met) {
        co.no_sqnr = false;
        co.sqnr_only = true;
        if (!(st = pq_eval_compare(&co, &r))) pq_fallback_measured_sqnr(fb, &r);
        pq_eval_report_free(&r);
    }
    return st;
}

/* Rank 0: what follows attempt `js` (its job's status). */
static decision decide(const pq_qrun *x, const pq_config *cfg, pq_fallback *fb, pq_status js, const char *file,
                       const pq_job *job, const char *fasta, pq_eval_ref *ref)
{
    const pq_quantize_request *q = x->q;
    pq_fb_attempt *a = pq_fallback_current(fb);
    pq_status st = js;
    if (js == PQ_ERR_CALIBRATION && fb->scheme[0]) {
        pq_fallback_failed(fb, js, pq_err_detail());
        st = PQ_OK;
    } else if (!js) {
        pq_cleanup_arm(file);
        pq_cleanup_arm_also(x->armed_too);
        st = evaluate(x, cfg, job, file, fasta, ref, fb);
    }
    if (!st) st = pq_stop_check();
    if (st) return (decision){.what = DECIDE_FAIL, .status = st};
    if (q->attempt) q->attempt(q->user, a, fb->budget);
    if (!js && a->met) return (decision){.what = DECIDE_ACCEPT};
    pq_fb_step s = pq_fallback_next(fb);
    if (s.kind == PQ_FB_NONE) return (decision){.what = DECIDE_STOP};
    return (decision){.what = DECIDE_NEXT, .kind = s.kind, .tensor = s.tensor};
}

/* Every rank: rank 0's decision, waited for without spinning (rank 0 may
 * evaluate for minutes while the others share its cores). */
static pq_status share(MPI_Comm comm, decision *d)
{
    int32_t v[4] = {d->what, d->status, d->kind, d->tensor};
    MPI_Request req;
    pq_status st = pq_mpi_check(MPI_Ibcast(v, 4, MPI_INT32_T, PQ_ROLE_COORD, comm, &req),
                                "MPI_Ibcast(fallback decision)");
    if (st == PQ_OK) st = pq_sync_wait_quiet(&req, 10000000, "MPI_Ibcast(fallback decision)"); /* up to 10 ms */
    *d = (decision){v[0], v[1], v[2], v[3]};
    return st;
}

/* Rank 0: attempt i's file gets the trail and becomes OUT. */
static pq_status publish(pq_fallback *fb, int i, const char *file, const char *out)
{
    fb->attempts[i].written = true;
    char *trail = pq_fallback_trail_json(fb);
    pq_status st = trail ? pq_h5_provenance_add(file, "fallback_trail", trail)
                         : pq_err(PQ_ERR_RESOURCE, "out of memory");
    free(trail);
    if (!st) st = pq_publish(file, out);
    if (st) fb->attempts[i].written = false;
    return st;
}

/* Rank 0, no attempt met the budget: the error naming the best, after
 * writing it with --keep-best (*kept then true). */
static pq_status none_met(const pq_qrun *x, pq_fallback *fb, const char *best_file, bool *kept)
{
    const pq_quantize_request *q = x->q;
    int b = pq_fallback_best(fb);
    *kept = false;
    if (b < 0) {
        const pq_fb_attempt *a = pq_fallback_current(fb);
        return pq_err(a->status ? a->status : PQ_ERR_ACCURACY, "no fallback attempt quantized; the last, attempt %d "
                      "(%s): %s", a->number, a->what, a->error);
    }
    pq_status st = PQ_OK;
    if (q->keep_best && (st = publish(fb, b, best_file, q->out))) return st;
    *kept = q->keep_best;
    const pq_fb_attempt *a = &fb->attempts[b];
    return pq_err(PQ_ERR_ACCURACY, "no fallback attempt lost at most %g of masked-LM accuracy (%g points) in %d "
                  "attempts; the best, attempt %d (%s), lost %.2f points (%.2f %% against %.2f %%), KL %.3g: %s",
                  fb->budget, 100 * fb->budget, fb->n_attempts, a->number, a->what, 100 * a->drop,
                  100 * a->accuracy, 100 * a->reference_accuracy, a->kl,
                  q->keep_best ? "written to --out (--keep-best)" : "no file written (--keep-best writes it)");
}

/* Rank 0, after a rejected attempt: its file goes, unless it is the best
 * so far and --keep-best may need it (the former best goes then). */
static void drop_attempt(const pq_qrun *x, pq_fallback *fb, char *file, pq_job **job, char *best, pq_job **best_job)
{
    bool is_best = x->q->keep_best && *job && pq_fallback_best(fb) == fb->n_attempts - 1;
    if (is_best) {
        if (best[0]) unlink(best);
        pq_job_destroy(*best_job);
        *best_job = *job;
        snprintf(best, 4096, "%s", file);
    } else {
        if (*job) unlink(file);
        pq_job_destroy(*job);
    }
    *job = NULL;
    file[0] = '\0';
}

pq_status pq_fallback_run(pq_qrun *x, pq_config *cfg, pq_job **written)
{
    const pq_quantize_request *q = x->q;
    const bool root = x->rank == PQ_ROLE_COORD;
    pq_fallback fb;
    pq_job *job = NULL, *best_job = NULL;
    pq_eval_ref *ref = NULL;
    char fasta[4096] = "", file[4096] = "", best[4096] = "";
    bool kept = false;
    *written = NULL;
    pq_status st = pq_fallback_init(&fb, cfg, q->max_attempts);
    if (!st) st = attempt_name(file, sizeof file, q->out, 9999);
    if (!st && root) st = eval_data(q, fasta, sizeof fasta);
    if (!st && root) st = pq_eval_ref_new(&ref);
    st = pq_sync_agree(x->comm, st);
    while (!st) {
        if ((st = attempt_name(file, sizeof file, q->out, pq_fallback_current(&fb)->number))) break;
        x->armed_too = best[0] ? best : NULL;
        pq_status js = pq_qrun_job(x, cfg, file, &fb, &job);
        decision d = {0};
        if (root) d = decide(x, cfg, &fb, js, file, job, fasta, ref);
        if ((st = share(x->comm, &d))) break;
        if (d.what == DECIDE_FAIL) {
            st = root ? (pq_status)d.status : pq_err((pq_status)d.status, "rank 0 stopped the fallback");
        } else if (d.what == DECIDE_ACCEPT) {
            if (root && !(st = publish(&fb, fb.n_attempts - 1, file, q->out))) {
                *written = job;
                job = NULL;
                file[0] = '\0';
            }
            break;
        } else if (d.what == DECIDE_STOP) {
            if (root) {
                if (!js) drop_attempt(x, &fb, file, &job, best, &best_job);
                st = none_met(x, &fb, best, &kept);
                if (kept) {
                    *written = best_job;
                    best_job = NULL;
                    best[0] = '\0';
                }
            } else {
                st = pq_err(PQ_ERR_ACCURACY, "no fallback attempt met the budget (rank 0 names the best)");
            }
            break;
        } else {
            if (root) drop_attempt(x, &fb, file, &job, best, &best_job);
            st = pq_fallback_apply(&fb, (pq_fb_step){.kind = d.kind, .tensor = d.tensor}, cfg);
        }
    }
    st = pq_sync_agree(x->comm, st);
    if (root) {
        /* whatever was not renamed into place goes */
        if (job && file[0]) unlink(file);
        if (best[0]) unlink(best);
        pq_cleanup_arm(NULL);
    }
    x->armed_too = NULL;
    pq_job_destroy(job);
    pq_job_destroy(best_job);
    pq_eval_ref_free(ref);
    pq_fallback_free(&fb);
    return st;
}
