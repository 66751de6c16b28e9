/* SPDX-License-Identifier: Apache-2.0 */
/* quantize_run.c - one quantization job over the ranks (quantize_run.h). */
#include "coordinator/quantize_job.h"

#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/log.h"
#include "base/pq_clock.h"
#include "base/pq_fault.h"
#include "base/pq_io.h"
#include "format/st_hash.h"
#include "coordinator/calib_mpi.h"
#include "coordinator/cleanup.h"
#include "coordinator/coord.h"
#include "coordinator/monitor.h"
#include "coordinator/smooth_mpi.h"
#include "pipeline/job.h"
#include "pipeline/journal.h"
#include "pipeline/outpath.h"
#include "proto/msg.h"
#include "worker/claims.h"
#include "worker/gptq_comm.h"
#include "worker/mpi_start.h"
#include "worker/stop.h"
#include "worker/sync.h"
#include "worker/worker.h"

static void on_progress(void *user, const pq_progress *ev)
{
    pq_qrun_progress *p = user;
    /* first: the journal holds a unit from here on, OUT.partial must stay */
    if (p->disarm_at_unit && pq_journal_n_done(p->journal) > 0) {
        p->disarm_at_unit = false;
        pq_cleanup_arm(NULL);
    }
    if (p->q->progress) p->q->progress(p->q->user, ev);
    p->last = *ev;
    p->last.tensor = NULL;
    /* Units are published from on_unit, which knows the unit and its rank. */
    if (!strcmp(ev->phase, "done"))
        pq_monitor_publish(p->mon, "finished", ev, -1, -1, p->n_ranks, PQ_OK, NULL);
}

static void on_unit(void *user, const pq_unit *u, int rank, double sqnr)
{
    pq_qrun_progress *p = user;
    pq_progress ev = p->last;
    ev.tensor = pq_job_plan(p->job)->tensors[u->tensor].st->name;
    ev.sqnr_db = sqnr;
    pq_monitor_publish(p->mon, "unit", &ev, u->id, rank, p->n_ranks, PQ_OK, NULL);
}

/* Peak RSS of every rank, in MiB, gathered to rank 0. Collective. */
static void gather_rss(MPI_Comm comm, int rank, int n, double *all)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine = (double)ru.ru_maxrss / 1024.0; /* Linux: kB */
    if (MPI_Gather(&mine, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, PQ_ROLE_COORD, comm) != MPI_SUCCESS && rank == 0)
        for (int r = 0; r < n; r++) all[r] = r ? NAN : mine;
}

/* --verbose: where this rank's time went. */
static void log_phases(const pq_job *j, double init_s)
{
    if (!j) return;
    PQ_LOG_DEBUG("phases: MPI_Init %.3f s, open+plan %.3f s, set-up %.3f s, hash %.3f s, floats %.3f s, "
                 "units %.3f s, send/receive %.3f s, write %.3f s, metrics %.3f s, commit %.3f s", init_s,
                 pq_job_phase(j, PQ_PHASE_OPEN), pq_job_phase(j, PQ_PHASE_SETUP), pq_job_phase(j, PQ_PHASE_HASH),
                 pq_job_phase(j, PQ_PHASE_FLOATS), pq_job_phase(j, PQ_PHASE_UNITS), pq_job_phase(j, PQ_PHASE_XFER),
                 pq_job_phase(j, PQ_PHASE_WRITE), pq_job_phase(j, PQ_PHASE_METRICS),
                 pq_job_phase(j, PQ_PHASE_COMMIT));
}

/* --out must not name one of the run's inputs (checkpoint shards, config,
 * calibration data or store, evaluation data): the commit's rename would
 * replace it. */
static pq_status check_out(const pq_quantize_request *q, const pq_job *j)
{
    int n = pq_st_file_count(pq_job_model(j));
    const char **in = calloc((size_t)n + 4, sizeof *in);
    if (!in) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int i = 0; i < n; i++) in[i] = pq_st_file_path(pq_job_model(j), i);
    in[n] = q->config_file;
    in[n + 1] = q->calib_data;
    in[n + 2] = q->calib_store;
    in[n + 3] = q->eval_data;
    pq_status st = pq_out_check("--out", q->out, in, n + 4);
    free(in);
    return st;
}

/* The inputs besides the checkpoint that a unit's bytes depend on (the
 * calibration data of SmoothQuant and GPTQ), as journal header lines. */
static pq_status other_inputs(const pq_quantize_request *q, char **out)
{
    char sha[65] = "";
    const char *in = q->calib_store ? q->calib_store : q->calib_data;
    pq_status st = in ? pq_sha256_file(in, sha) : PQ_OK;
    if (st) return st;
    if (asprintf(out, "calibration %s\n", in ? sha : "the bundled sample") < 0)
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    return PQ_OK;
}

/* Rank 0: open (lock) OUT.journal, checked against this run when resuming. */
static pq_status open_journal(const pq_quantize_request *q, const char *out, const pq_job *j, pq_journal **jr)
{
    char *cfg = pq_config_to_json(pq_job_config(j)), *extra = NULL, *head = NULL;
    pq_status st = cfg ? other_inputs(q, &extra) : pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st && !(head = pq_journal_header("quantize", cfg, pq_job_plan(j), pq_job_model(j), extra)))
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st) st = pq_journal_open(out, q->resume, head, pq_job_plan(j), jr);
    free(cfg);
    free(extra);
    free(head);
    return st;
}

/* Every rank: the units the journal holds, from rank 0. Collective. */
static pq_status share_done(MPI_Comm comm, int rank, pq_job *j, const pq_journal *jr)
{
    int n = pq_job_plan(j)->n_units;
    bool *done = calloc((size_t)n + 1, sizeof *done);
    unsigned char *b = calloc((size_t)n + 1, 1);
    pq_status st = done && b ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int i = 0; i < n && !st && rank == PQ_ROLE_COORD && jr; i++) b[i] = pq_journal_done(jr)[i];
    /* every rank takes part even after a local failure */
    int rc = MPI_Bcast(b ? b : (unsigned char *)&n, b ? n : 0, MPI_UNSIGNED_CHAR, PQ_ROLE_COORD, comm);
    if (!st) st = pq_mpi_check(rc, "MPI_Bcast");
    for (int i = 0; i < n && !st; i++) done[i] = b[i] != 0;
    if (!st) st = pq_job_set_done(j, done);
    free(done);
    free(b);
    return st;
}

/* After a failure: the journal stays for a --resume when it holds units and
 * the cause may pass (a signal, a rank lost, I/O, memory); a run that would
 * fail the same way again (bad input, NaN, configuration) starts afresh. */
static bool journal_stays(const pq_journal *jr, pq_status st, bool resumable)
{
    bool passing = st == PQ_ERR_INTERRUPTED || st == PQ_ERR_MPI || st == PQ_ERR_IO || st == PQ_ERR_RESOURCE;
    return pq_journal_n_done(jr) && passing && resumable;
}

static void end_journal(pq_journal *jr, pq_status st, bool resumable)
{
    if (journal_stays(jr, st, resumable)) pq_journal_close(jr);
    else pq_journal_remove(jr);
}

static int fail_exit(const pq_quantize_request *q, pq_status st)
{
    return q->fail ? q->fail(st) : pq_status_exit_code(st);
}


/* Rank 0: the job's output side ready, OUT.partial begun. */
static pq_status begin_output(pq_qrun *x, pq_job *job, const char *out, const char *partial, bool fits,
                              pq_journal *journal)
{
    const pq_quantize_request *q = x->q;
    if (!x->guarded) {
        pq_cleanup_handler();
        pq_stop_catch(); /* SIGTERM stops, as on every rank */
    }
    if (fits) pq_cleanup_arm(partial);
    pq_cleanup_arm_also(x->armed_too);
    if (q->monitor && !x->mon) x->mon = pq_monitor_open(q->monitor, q->monitor_wait);
    /* once a unit is in OUT.partial, it outlives a rank 0 that dies: the
     * journal names the codes in it (the fallback's attempts are never
     * resumed) */
    x->prog = (pq_qrun_progress){.q = q, .mon = x->mon, .job = job, .n_ranks = x->n_ranks,
                                 .journal = journal, .disarm_at_unit = journal && !x->attempts};
    pq_job_set_progress(job, on_progress, &x->prog);
    pq_job_set_journal(job, journal);
    x->prog.last.units_total = pq_job_plan(job)->n_units;
    x->prog.last.bytes_total = pq_plan_total_cost(pq_job_plan(job));
    x->prog.last.phase = "quantize";
    pq_monitor_publish(x->mon, "start", &x->prog.last, -1, -1, x->n_ranks, PQ_OK, NULL);
    return pq_job_begin_output(job, out, x->n_ranks, q->command_line);
}

pq_status pq_qrun_job(pq_qrun *x, pq_config *cfg, const char *out, pq_fallback *fb, pq_job **keep)
{
    const pq_quantize_request *q = x->q;
    const int rank = x->rank, n = x->n_ranks;
    MPI_Comm comm = x->comm;
    pq_status st;
    pq_job *job = NULL;
    bool unresponsive = false, stop_sent = false;
    pq_calib_static_run *calib = NULL;
    pq_smooth *smooth = NULL;
    bool *same_node = NULL;
    pq_claims *claims = NULL;
    pq_journal *journal = NULL;
    /* OUT.partial, on every rank (workers on rank 0's machine write their
     * codes into it); rank 0's watcher removes it when the job is killed */
    char partial[4096];
    if (keep) *keep = NULL;

    /* 1. open + plan on every rank; agree that all of them managed. */
    pq_err_clear();
    if (rank == PQ_ROLE_COORD && pq_fault_at(PQ_FAULT_KILL_AT, 1)) raise(SIGKILL);
    st = pq_job_open(cfg, q->model, q->unit_bytes, &job);
    if (!st && rank == PQ_ROLE_COORD) st = check_out(q, job); /* rank 0 writes OUT */
    if (!st && fb) st = pq_fallback_snapshot(fb, pq_job_plan(job));
    if ((st = pq_sync_agree(comm, st))) goto fail;
    if (cfg->threading && cfg->threads == 0) pq_job_set_threads(job, pq_sync_threads_per_rank(comm, rank));

    /* 2. the same assignment everywhere, checked against rank 0's; ranks on
     * rank 0's machine write their own codes into OUT.partial. */
    if (!(same_node = calloc((size_t)n, sizeof *same_node))) {
        int rc = fail_exit(q, pq_err(PQ_ERR_RESOURCE, "out of memory"));
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    st = pq_sync_coord_node(comm, n, same_node);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    /* GPTQ shares each layer's units out itself (worker/gptq_run.h) */
    const bool gptq = !strcmp(cfg->method, "gptq");
    if (!gptq) pq_job_assign(job, n, same_node);
    PQ_LOG_DEBUG("plan: %d units and %d digest chunks on %d ranks; %.0f%% of the units' bytes are "
                 "quantized by the rank that hashes them", pq_job_plan(job)->n_units, pq_job_plan(job)->n_hash, n,
                 100.0 * pq_plan_colocated(pq_job_plan(job)));
    st = pq_sync_plan(comm, job, n, q->unit_bytes);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    /* rank 0 holds OUT.journal's lock from now to the end: one writer;
     * resuming, the codes it names are checked in the stopped run's
     * OUT.partial (units whose codes no longer match are redone) */
    bool fits = !pq_partial_name(partial, sizeof partial, out);
    if (rank == PQ_ROLE_COORD) st = open_journal(q, out, job, &journal);
    if (!st && rank == PQ_ROLE_COORD && q->resume && fits)
        st = pq_journal_take_partial(journal, pq_job_plan(job), partial);
    if (rank == PQ_ROLE_COORD && pq_fault_at(PQ_FAULT_KILL_AT, 2)) raise(SIGKILL);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    if ((st = pq_sync_agree(comm, share_done(comm, rank, job, journal)))) goto fail;
    if (rank == PQ_ROLE_COORD && pq_journal_n_done(journal))
        PQ_LOG_INFO("resuming: %d of %d units from %s%s", pq_journal_n_done(journal), pq_job_plan(job)->n_units,
                    pq_journal_path(journal), pq_journal_n_bad(journal) ? " (records that failed their checksum "
                    "are redone)" : "");
    PQ_LOG_INFO("%d units over %d ranks", pq_job_plan(job)->n_units, n);
    /* ranks on rank 0's machine may take over each other's last units */
    if (!gptq) st = pq_claims_open(comm, pq_job_plan(job), same_node, &claims);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    if (!strcmp(cfg->scheme, "static") &&
        (st = pq_calib_static_prepare(comm, job, q->model, q->calib_store, q->calib_data, &calib)))
        goto fail;
    if (cfg->smoothquant_alpha > 0.0 &&
        (st = pq_smooth_mpi_prepare(comm, job, q->model, q->calib_store, q->calib_data, calib, &smooth)))
        goto fail;

    /* 3. rank 0 creates OUT.partial (its datasets, the float tensors) while
     * the workers already hash their chunks and run their units: their
     * results wait in MPI until rank 0 drains them. A failure here stops
     * them through the usual Shutdown. */
    pq_status begin = PQ_OK;
    if (rank == PQ_ROLE_COORD) begin = begin_output(x, job, out, partial, fits, journal);
    /* 4. the units. */
    if (gptq) {
        pq_gptq_comm gc = pq_gptq_comm_mpi(&comm, rank, n);
        const pq_gptq_run_opts go = {.calib_data = q->calib_data, .data = {.ops = *pq_job_ops(job)}};
        double t0 = pq_now_s();
        if (!(st = pq_sync_agree(comm, begin))) st = pq_gptq_run(job, &go, &gc);
        pq_job_set_quantize_seconds(job, pq_now_s() - t0);
        if (!st && rank == PQ_ROLE_COORD) st = pq_job_finish_output(job);
        st = pq_sync_agree(comm, st);
    } else if (rank == PQ_ROLE_COORD) {
        pq_coord_opts co = {.stop_grace_s = 30, .initial_error = begin, .on_unit = on_unit, .user = &x->prog,
                            .same_node = same_node, .claims = claims};
        st = pq_coord_run(job, comm, n, &co, &unresponsive, &stop_sent);
        if (!st) st = pq_job_finish_output(job);
        if (unresponsive) goto fail;
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", pq_err_detail());
        pq_coord_shutdown(comm, n, st, &stop_sent);
        if (st) pq_err_replace(st, "%s", detail);
    } else {
        st = pq_worker_main(job, comm, rank, same_node[rank] && fits ? partial : NULL, claims);
    }
    pq_claims_close(claims); /* collective: every rank is past its units */
    claims = NULL;
    log_phases(job, x->t_init);
    if (st) goto fail;
    if (rank == PQ_ROLE_COORD) {
        /* OUT is in place: the journal goes */
        if (pq_fault_at(PQ_FAULT_KILL_AT, 5)) raise(SIGKILL);
        pq_journal_remove(journal);
        journal = NULL;
    }
    goto done;

fail:
    if (unresponsive) {
        /* Some rank never answered the stop: remove our partial output, then
         * take the whole job down rather than wait forever. */
        int rc = rank == PQ_ROLE_COORD ? fail_exit(q, st) : pq_status_exit_code(st);
        pq_job_keep_partial(job, journal_stays(journal, st, !x->attempts));
        pq_job_destroy(job);
        job = NULL;
        end_journal(journal, st, !x->attempts);
        journal = NULL;
        pq_monitor_close(x->mon);
        x->mon = NULL;
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
done:
    pq_claims_close(claims); /* after a failure before the units: collective too */
    if (keep && !st && rank == PQ_ROLE_COORD) {
        *keep = job;
        job = NULL;
    }
    /* removes OUT.partial after a failure, unless the journal stays */
    if (st) pq_job_keep_partial(job, journal_stays(journal, st, !x->attempts));
    pq_job_destroy(job);
    end_journal(journal, st, !x->attempts);
    pq_cleanup_arm(x->armed_too);
    pq_calib_static_done(calib);
    pq_smooth_free(smooth); /* after the job, which borrows it (a kept job is committed) */
    free(same_node);
    return st;
}

int pq_quantize_run(pq_config *cfg, const pq_quantize_request *q)
{
    int provided = 0, rc = 0;
    pq_status st;
    pq_qrun x = {.q = q, .comm = MPI_COMM_NULL, .n_ranks = 1};
    pq_job *job = NULL;
    double *rss = NULL;

    /* rank 0 (as the launcher says) starts the watcher of its OUT.partial
     * before MPI_Init: forking is safe only before MPI is up */
    x.guarded = pq_mpi_launcher_rank() == PQ_ROLE_COORD;
    if (x.guarded) pq_cleanup_start();
    pq_stop_catch(); /* SIGUSR1, SIGTERM: stop between batches (GPTQ: layers) */
    x.t_init = pq_now_s();
    if ((rc = pq_mpi_start(&provided))) return rc;
    if ((st = pq_mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &x.comm), "MPI_Comm_dup"))) {
        rc = fail_exit(q, st);
        goto finalize;
    }
    MPI_Comm_set_errhandler(x.comm, MPI_ERRORS_RETURN);
    x.t_init = pq_now_s() - x.t_init;
    MPI_Comm_rank(x.comm, &x.rank);
    MPI_Comm_size(x.comm, &x.n_ranks);
    const int rank = x.rank, n = x.n_ranks;
    if (n > 1) pq_log_set_rank(rank, rank == PQ_ROLE_COORD ? "coord" : "worker");
    if (provided < MPI_THREAD_FUNNELED) PQ_LOG_WARN("MPI provides no thread support; continuing");

    x.attempts = pq_fallback_wanted(cfg);
    st = x.attempts ? pq_fallback_run(&x, cfg, &job) : pq_qrun_job(&x, cfg, q->out, NULL, &job);

    /* peak memory of every rank, reported by rank 0 (collective) */
    if (!(rss = calloc((size_t)n, sizeof *rss))) {
        fail_exit(q, pq_err(PQ_ERR_RESOURCE, "out of memory"));
        MPI_Abort(MPI_COMM_WORLD, pq_status_exit_code(PQ_ERR_RESOURCE));
    }
    gather_rss(x.comm, rank, n, rss);
    /* the file written (with --keep-best also when no attempt met the budget) */
    if (rank == PQ_ROLE_COORD && job && q->report) q->report(q->user, pq_job_stats_of(job), rss, n);
    if (st && rank == PQ_ROLE_COORD) {
        char line[1200];
        snprintf(line, sizeof line, "%s: %s", pq_strerror(st), pq_err_detail());
        pq_monitor_publish(x.mon, "error", &x.prog.last, -1, -1, n, st, line);
        rc = fail_exit(q, st);
    } else if (st) {
        rc = pq_status_exit_code(st);
    }
    pq_monitor_close(x.mon);
    pq_job_destroy(job);
    pq_cleanup_arm(NULL);
    free(rss);
    MPI_Comm_free(&x.comm);
finalize:;
    double t_fin = pq_now_s();
    MPI_Finalize();
    PQ_LOG_DEBUG("phases: MPI_Finalize %.3f s", pq_now_s() - t_fin);
    return rc;
}
