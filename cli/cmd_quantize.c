/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_quantize.c - `proteus quantize`: checkpoint in, one consolidated HDF5
 * out, on one process or N MPI ranks (mpirun, srun, or a plain start, which
 * is an MPI singleton: the same code path).
 *
 * Every rank opens the checkpoint and builds the same plan; rank 0 broadcasts
 * a hash of it that the others verify. Every rank runs its own units (the
 * plan's cost-balanced assignment); rank 0 also writes every result as it
 * arrives and commits the file at the end. */
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/pq_clock.h"
#include "coordinator/calib_mpi.h"
#include "worker/claims.h"
#include "coordinator/cleanup.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "pipeline/config.h"
#include "coordinator/coord.h"
#include "pipeline/job.h"
#include "base/log.h"
#include "coordinator/monitor.h"
#include "worker/mpi_start.h"
#include "proto/msg.h"
#include "base/pq_io.h"
#include "quant/rtn.h"
#include "worker/sync.h"
#include "worker/worker.h"

#define UNIT_BYTES (64ll << 20)

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus quantize --model IN --out OUT.h5 [options]\n"
"       mpirun -n N proteus quantize ...   |   srun --mpi=pmix -n N proteus quantize ...\n\n"
"Quantize the weights of an ESM-2 checkpoint (Hugging Face safetensors: one file,\n"
"a sharded model.safetensors.index.json, or a directory) into one HDF5 file.\n"
"OUT.h5 appears only when the run is complete (it is written as OUT.h5.partial).\n"
"Under MPI every rank reads its own share of the units straight from the checkpoint\n"
"(which must be visible to all ranks at the same path); rank 0 writes the file,\n"
"and the ranks on its machine put their own codes into it.\n"
"The output datasets are identical for any number of ranks and threads.\n\n"
"  --model PATH            input checkpoint (required)\n"
"  --out PATH              output HDF5 file (required)\n"
"  --config FILE.json      config file; command-line options override it\n"
"  --scheme dynamic        weight round-to-nearest, activations quantized at run time\n"
"  --scheme static         also int8 activation scales per Linear input, from\n"
"                          --calibration-data F.fasta or --calibration calib.h5 (default:\n"
"                          the bundled data/proteins/calib_sample.fasta, 128 sequences)\n"
"  --calibration-method M  minmax | entropy | percentile | mse (static scheme)\n"
"  --precision int8|int4   weight bits (default int8)\n"
"  --per-tensor            one scale per tensor (default)\n"
"  --per-channel           one scale per output row\n"
"  --group-size N          one scale per row and N input columns (even, 32..256)\n"
"  --symmetric             zero point 0, int8 range [-127,127] (default)\n"
"  --asymmetric            integer zero point, int8 range [-128,127]\n"
"  --include PATTERN       quantize the 2-D tensors matching PATTERN instead of the\n"
"                          default six Linear weights per layer (repeatable, fnmatch)\n"
"  --exclude PATTERN       keep matching tensors in float (repeatable)\n"
"  --nan-policy P          error (default) | zero | keep (NaN/Inf tensor stays float)\n"
"  --float-dtype fp32|fp16 storage of the tensors kept in float (default fp32)\n"
"  --hardware-target T     cpu (default, best kernels) | ref | avx2 | avx512 | cuda\n"
"  --threads N             threads per rank (0 = the node's cores shared among\n"
"                          the ranks on it, at most the cores the launcher bound\n"
"                          the rank to; the default)\n"
"  --no-threading          one thread per rank\n"
"  --unit-bytes N          split quantized tensors into work units of at most N\n"
"                          bytes of fp32 input (default 64 MiB; suffixes k, M, G);\n"
"                          smaller units balance ranks better, per-tensor scales\n"
"                          are never split\n"
"  --monitor ENDPOINT      publish progress events (protobuf ProgressEvent) on a\n"
"                          ZeroMQ PUB socket, e.g. tcp://127.0.0.1:5555; watch with\n"
"                          'proteus monitor ENDPOINT'. Loopback only unless\n"
"  --monitor-allow-remote  is given. A failing monitor never fails the run.\n"
"  --monitor-wait S        wait up to S seconds (default 1) for a first monitor to\n"
"                          connect before starting, so it sees the whole run\n"
"  -q, --quiet             no progress and no per-tensor table\n"
"  -v, --verbose           log details\n"
"  -h, --help              this text\n\n"
"Progress: a live bar on a terminal, one line per 5%% otherwise (Slurm logs).\n"
"The summary ends with the peak memory (RSS) of every rank.\n\n"
"Config keys: scheme, precision, per_channel, group_size, symmetric,\n"
"calibration_method, hardware_target, optimize_memory, enable_fusion, threading,\n"
"threads, nan_policy, float_dtype, include, exclude.\n");
}

static int parse_bytes(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    if (end == s) return -1;
    if (*end == 'k' || *end == 'K') { mul = 1024; end++; }
    else if (*end == 'M') { mul = 1024.0 * 1024; end++; }
    else if (*end == 'G') { mul = 1024.0 * 1024 * 1024; end++; }
    if (*end == 'B' || *end == 'i') end++;
    if (*end || v * mul < 1 || v * mul > 1e15) return -1;
    *out = (int64_t)(v * mul);
    return 0;
}

/* OUT.partial, on every rank (workers on rank 0's machine write their codes
 * into it); rank 0 removes it when the job is killed (cleanup.h). */
static char partial_path[4096];

/* Progress fan-out on rank 0: the terminal/log view and the monitor. */
typedef struct progress_ctx {
    pq_cli_progress cli;
    pq_monitor *mon;
    const pq_job *job;
    int n_ranks;
    pq_progress last;         /* counters of the latest progress event */
} progress_ctx;

static void on_progress(void *user, const pq_progress *ev)
{
    progress_ctx *p = user;
    pq_cli_progress_cb(&p->cli, ev);
    p->last = *ev;
    p->last.tensor = NULL;
    /* Units are published from on_unit, which knows the unit and its rank. */
    if (!strcmp(ev->phase, "done"))
        pq_monitor_publish(p->mon, "finished", ev, -1, -1, p->n_ranks, PQ_OK, NULL);
}

static void on_unit(void *user, const pq_unit *u, int rank, double sqnr)
{
    progress_ctx *p = user;
    pq_progress ev = p->last;
    ev.tensor = p->job->plan->tensors[u->tensor].st->name;
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

typedef struct qopts {
    const char *model, *out, *cfg_file, *monitor;
    bool allow_remote;
    double monitor_wait;
    int64_t unit_bytes;
    int quiet;
    const char *calib_data, *calib_store; /* static scheme */
} qopts;

/* --verbose: where this rank's time went. */
static void log_phases(const pq_job *j, double init_s)
{
    if (!j) return;
    const pq_job_phases *t = &j->t;
    PQ_LOG_DEBUG("phases: MPI_Init %.3f s, open+plan %.3f s, set-up %.3f s, hash %.3f s, floats %.3f s, "
                 "units %.3f s, send/receive %.3f s, write %.3f s, metrics %.3f s, commit %.3f s", init_s, t->open,
                 t->setup, t->hash, t->floats, t->units, t->xfer, t->write, t->metrics, t->commit);
}

/* --out must not name one of the run's inputs (checkpoint shards, config,
 * calibration data or store): the commit's rename would replace it. */
static pq_status check_out(const qopts *o, const pq_job *j)
{
    int n = pq_st_file_count(j->model);
    const char **in = calloc((size_t)n + 3, sizeof *in);
    if (!in) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int i = 0; i < n; i++) in[i] = pq_st_file_path(j->model, i);
    in[n] = o->cfg_file;
    in[n + 1] = o->calib_data;
    in[n + 2] = o->calib_store;
    pq_status st = pq_out_check("--out", o->out, in, n + 3);
    free(in);
    return st;
}

/* The MPI part: everything after the options are known to be valid. */
static int run_mpi(pq_config *cfg, const qopts *o, int argc, char **argv)
{
    int provided = 0, rank = 0, n = 1, rc = 0;
    pq_status st;
    pq_job *job = NULL;
    MPI_Comm comm = MPI_COMM_NULL;
    pq_monitor *mon = NULL;
    progress_ctx prog;
    double *rss = NULL;
    bool unresponsive = false;
    pq_calib_static_run *calib = NULL;
    bool *same_node = NULL;
    pq_claims *claims = NULL;

    memset(&prog, 0, sizeof prog);
    /* rank 0 (as the launcher says) starts the watcher of its OUT.partial
     * before MPI_Init: forking is safe only before MPI is up */
    bool guarded = pq_mpi_launcher_rank() == PQ_ROLE_COORD;
    if (guarded) pq_cleanup_start();
    double t_init = pq_now_s();
    if ((rc = pq_mpi_start(&provided))) return rc;
    if ((st = pq_mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup"))) {
        rc = pq_cli_fail(st);
        goto finalize;
    }
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    t_init = pq_now_s() - t_init;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n);
    if (n > 1) pq_log_set_rank(rank, rank == PQ_ROLE_COORD ? "coord" : "worker");
    if (provided < MPI_THREAD_FUNNELED) PQ_LOG_WARN("MPI provides no thread support; continuing");

    /* 1. open + plan on every rank; agree that all of them managed. */
    pq_err_clear();
    st = pq_job_open(cfg, o->model, o->unit_bytes, &job);
    if (!st && rank == PQ_ROLE_COORD) st = check_out(o, job); /* rank 0 writes OUT */
    if ((st = pq_sync_agree(comm, st))) goto fail;
    if (cfg->threading && cfg->threads == 0) {
        int t = pq_sync_threads_per_rank(comm, rank);
        pq_rtn_set_threads(t);
        job->hash_threads = t;
    }

    /* 2. the same assignment everywhere, checked against rank 0's; ranks on
     * rank 0's machine write their own codes into OUT.partial. */
    if (!(same_node = calloc((size_t)n, sizeof *same_node))) {
        rc = pq_cli_fail(pq_err(PQ_ERR_RESOURCE, "out of memory"));
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    st = pq_sync_coord_node(comm, n, same_node);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    pq_worker_assign(job, n, same_node);
    st = pq_sync_plan(comm, job, n, o->unit_bytes);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    PQ_LOG_INFO("%d units over %d ranks", job->plan->n_units, n);
    /* ranks on rank 0's machine may take over each other's last units */
    st = pq_claims_open(comm, job->plan, same_node, &claims);
    if ((st = pq_sync_agree(comm, st))) goto fail;
    if (!strcmp(cfg->scheme, "static") &&
        (st = pq_calib_static_prepare(comm, job, o->model, o->calib_store, o->calib_data, &calib)))
        goto fail;

    /* 3. rank 0 creates OUT.partial (its datasets, the float tensors) while
     * the workers already hash their chunks and run their units: their
     * results wait in MPI until rank 0 drains them. A failure here stops
     * them through the usual Shutdown. */
    bool fits = !pq_partial_name(partial_path, sizeof partial_path, o->out);
    if (rank == PQ_ROLE_COORD) {
        char cmdline[4096] = "";
        for (int i = 0; i < argc; i++) {
            strncat(cmdline, i ? " " : "proteus ", sizeof cmdline - strlen(cmdline) - 1);
            strncat(cmdline, argv[i], sizeof cmdline - strlen(cmdline) - 1);
        }
        if (!guarded) pq_cleanup_handler();
        if (fits) pq_cleanup_arm(partial_path);
        if (o->monitor) mon = pq_monitor_open(o->monitor, o->monitor_wait);
        pq_cli_progress_init(&prog.cli, stderr, o->quiet);
        prog.mon = mon;
        prog.job = job;
        prog.n_ranks = n;
        job->progress = on_progress;
        job->progress_user = &prog;
        prog.last.units_total = job->plan->n_units;
        prog.last.bytes_total = pq_plan_total_cost(job->plan);
        prog.last.phase = "quantize";
        pq_monitor_publish(mon, "start", &prog.last, -1, -1, n, PQ_OK, NULL);
        pq_status begin = pq_job_begin_output(job, o->out, n, cmdline);

        /* 4. the units. */
        pq_coord_opts co = {.stop_grace_s = 30, .initial_error = begin, .on_unit = on_unit, .user = &prog,
                            .same_node = same_node, .claims = claims};
        st = pq_coord_run(job, comm, n, &co, &unresponsive);
        if (!st) st = pq_job_finish_output(job);
        if (unresponsive) goto fail;
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", pq_err_detail());
        pq_coord_shutdown(comm, n, st);
        if (st) pq_err_replace(st, "%s", detail);
    } else {
        st = pq_worker_main(job, comm, rank, same_node[rank] && fits ? partial_path : NULL, claims);
    }
    pq_claims_close(claims); /* collective: every rank is past its units */
    claims = NULL;

    /* 5. peak memory of every rank, printed by rank 0. */
    if (!(rss = calloc((size_t)n, sizeof *rss))) {
        pq_cli_fail(pq_err(PQ_ERR_RESOURCE, "out of memory"));
        MPI_Abort(MPI_COMM_WORLD, pq_status_exit_code(PQ_ERR_RESOURCE));
    }
    gather_rss(comm, rank, n, rss);
    log_phases(job, t_init);
    if (st) goto fail;
    if (rank == PQ_ROLE_COORD) {
        pq_cli_print_summary(stdout, &job->stats, !o->quiet);
        pq_cli_print_ranks(stdout, rss, n, job->stats.seconds_quantize);
        printf("wrote %s\n", o->out);
    }
    goto done;

fail:
    if (rank == PQ_ROLE_COORD) {
        char line[1200];
        snprintf(line, sizeof line, "%s: %s", pq_strerror(st), pq_err_detail());
        pq_monitor_publish(mon, "error", &prog.last, -1, -1, n, st, line);
        rc = pq_cli_fail(st);
    } else {
        rc = pq_status_exit_code(st);
    }
    if (unresponsive) {
        /* Some rank never answered the stop: remove our partial output, then
         * take the whole job down rather than wait forever. */
        pq_job_destroy(job);
        job = NULL;
        pq_monitor_close(mon);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
done:
    pq_claims_close(claims); /* after a failure before the units: collective too */
    pq_monitor_close(mon);
    pq_job_destroy(job); /* removes OUT.partial after a failure */
    pq_cleanup_arm(NULL);
    pq_calib_static_done(calib);
    partial_path[0] = '\0';
    free(rss);
    free(same_node);
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
finalize:;
    double t_fin = pq_now_s();
    MPI_Finalize();
    PQ_LOG_DEBUG("phases: MPI_Finalize %.3f s", pq_now_s() - t_fin);
    return rc;
}

int pq_cmd_quantize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"out", required_argument, 0, 'o'},
        {"config", required_argument, 0, 'c'}, {"scheme", required_argument, 0, 1},
        {"precision", required_argument, 0, 2}, {"per-tensor", no_argument, 0, 3},
        {"per-channel", no_argument, 0, 4}, {"group-size", required_argument, 0, 5},
        {"symmetric", no_argument, 0, 6}, {"asymmetric", no_argument, 0, 7},
        {"include", required_argument, 0, 8}, {"exclude", required_argument, 0, 9},
        {"nan-policy", required_argument, 0, 10}, {"float-dtype", required_argument, 0, 11},
        {"hardware-target", required_argument, 0, 12}, {"threads", required_argument, 0, 13},
        {"no-threading", no_argument, 0, 14}, {"unit-bytes", required_argument, 0, 15},
        {"monitor", required_argument, 0, 16}, {"monitor-allow-remote", no_argument, 0, 17},
        {"monitor-wait", required_argument, 0, 18}, {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'}, {"calibration-data", required_argument, 0, 19},
        {"calibration", required_argument, 0, 20}, {"calibration-method", required_argument, 0, 21}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    qopts o = {.unit_bytes = UNIT_BYTES, .monitor_wait = 1.0};
    int rc = 0;
    /* Options are applied after the config file; remember them in order. */
    const char *keys[64], *vals[64];
    int n_set = 0;
    pq_config cfg;
    pq_status st;
    int saved_err = -1;

    /* Only the launcher's rank 0 prints option errors: every rank finds the
     * same ones. stderr comes back before the run starts. */
    if (pq_mpi_launcher_rank() != 0) {
        int dn = open("/dev/null", O_WRONLY);
        fflush(stderr);
        if (dn >= 0 && (saved_err = dup(2)) >= 0) dup2(dn, 2);
        if (dn >= 0) close(dn);
    }
    pq_config_defaults(&cfg);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:c:qvh", opts, NULL)) != -1) {
        const char *k = NULL, *v = optarg;
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'o': o.out = optarg; break;
        case 'c': o.cfg_file = optarg; break;
        case 1: k = "scheme"; break;
        case 2: k = "precision"; break;
        case 3: k = "per_channel"; v = "false"; break;
        case 4: k = "per_channel"; v = "true"; break;
        case 5: k = "group_size"; break;
        case 6: k = "symmetric"; v = "true"; break;
        case 7: k = "symmetric"; v = "false"; break;
        case 8: k = "include"; break;
        case 9: k = "exclude"; break;
        case 10: k = "nan_policy"; break;
        case 11: k = "float_dtype"; break;
        case 12: k = "hardware_target"; break;
        case 13: k = "threads"; break;
        case 14: k = "threading"; v = "false"; break;
        case 15:
            if (parse_bytes(optarg, &o.unit_bytes)) {
                rc = pq_cli_usage_error("quantize", "--unit-bytes '%s': expected a positive size like 65536 or 4M",
                                        optarg);
                goto done;
            }
            break;
        case 16: o.monitor = optarg; break;
        case 17: o.allow_remote = true; break;
        case 18: {
            char *end;
            o.monitor_wait = strtod(optarg, &end);
            if (*end || end == optarg || o.monitor_wait < 0 || o.monitor_wait > 3600) {
                rc = pq_cli_usage_error("quantize", "--monitor-wait '%s': expected seconds (0..3600)", optarg);
                goto done;
            }
            break;
        }
        case 19: o.calib_data = optarg; break;
        case 20: o.calib_store = optarg; break;
        case 21: k = "calibration_method"; break;
        case 'q': o.quiet = 1; break;
        case 'v': pq_log_set_level(PQ_LOG_DEBUG); break;
        case 'h': help(stdout); pq_config_free(&cfg); return 0;
        case ':': rc = pq_cli_usage_error("quantize", "option '%s' needs a value", argv[optind - 1]); goto done;
        default: rc = pq_cli_usage_error("quantize", "unknown option '%s'", argv[optind - 1]); goto done;
        }
        if (k) {
            if (n_set == 64) { rc = pq_cli_usage_error("quantize", "too many options"); goto done; }
            keys[n_set] = k;
            vals[n_set++] = v;
        }
    }
    if (optind < argc) { rc = pq_cli_usage_error("quantize", "unexpected argument '%s'", argv[optind]); goto done; }
    if (!o.model) { rc = pq_cli_usage_error("quantize", "--model is required"); goto done; }
    if (!o.out) { rc = pq_cli_usage_error("quantize", "--out is required"); goto done; }
    if (o.monitor && (st = pq_monitor_check_endpoint(o.monitor, o.allow_remote))) { rc = pq_cli_fail(st); goto done; }
    if (o.cfg_file && (st = pq_config_load_json(&cfg, o.cfg_file))) { rc = pq_cli_fail(st); goto done; }
    for (int i = 0; i < n_set; i++)
        if ((st = pq_config_set(&cfg, keys[i], vals[i]))) { rc = pq_cli_fail(st); goto done; }
    /* --group-size on the command line overrides a config file's per_channel,
     * but asking for both on the command line is a contradiction (validated). */
    int cli_channel = 0, cli_group = 0;
    for (int i = 0; i < n_set; i++) {
        if (!strcmp(keys[i], "per_channel") && !strcmp(vals[i], "true")) cli_channel = 1;
        if (!strcmp(keys[i], "group_size") && cfg.group_size) cli_group = 1;
    }
    if (cli_group && !cli_channel) cfg.per_channel = false;
    if ((o.calib_data || o.calib_store) && (strcmp(cfg.scheme, "static") || (o.calib_data && o.calib_store))) {
        rc = pq_cli_usage_error("quantize", "--calibration-data / --calibration: one of them, with --scheme static");
        goto done;
    }

    if (saved_err >= 0) { fflush(stderr); dup2(saved_err, 2); close(saved_err); saved_err = -1; }
    rc = run_mpi(&cfg, &o, argc, argv);
done:
    if (saved_err >= 0) { fflush(stderr); dup2(saved_err, 2); close(saved_err); }
    pq_config_free(&cfg);
    return rc;
}
