/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_calibrate.c - `proteus calibrate`: collect activation statistics at
 * every Linear input on calibration proteins (one process or N MPI ranks,
 * identical bits for any N), update them with new data, print them, export
 * them for TensorRT / ONNX Runtime. */
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib/calib_export.h"
#include "format/calib_h5.h"
#include "calib/calib_methods.h"
#include "coordinator/calib_mpi.h"
#include "coordinator/calib_resume.h"
#include "base/pq_fault.h"
#include "format/st_hash.h"
#include "coordinator/cleanup.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "worker/mpi_start.h"
#include "pq_config.h"
#include "base/pq_io.h"

typedef struct copts {
    const char *model, *data, *out, *update, *stats, *export_path, *format, *hardware_target;
    pq_calib_data_opts d;
    int threads, method, stages;
    int64_t journal_block;
    bool asymmetric, quiet, resume;
    double percentile;
} copts;

static const char *const k_methods[] = {"minmax", "percentile", "entropy", "mse", NULL};

static const pq_cli_opt k_opts[] = {
    {.name = "model", .letter = 'm', .kind = PQ_CLI_STR, .offset = offsetof(copts, model), .meta = "PATH",
     .help = "fp32 checkpoint (safetensors, PyTorch .pt/.bin or Proteus HDF5)"},
    {.name = "calibration-data", .letter = 'd', .kind = PQ_CLI_STR, .offset = offsetof(copts, data),
     .meta = "FASTA", .help = "calibration sequences (plain or .gz)"},
    {.name = "out", .letter = 'o', .kind = PQ_CLI_STR, .offset = offsetof(copts, out), .meta = "PATH",
     .help = "calibration store to write (--update: default in place)"},
    {.name = "max-seqs", .kind = PQ_CLI_I64, .offset = offsetof(copts, d.max_seqs), .lo = 1, .meta = "N",
     .help = "use the first N usable sequences (default all)"},
    {.name = "max-length", .kind = PQ_CLI_I64, .offset = offsetof(copts, d.max_length), .lo = 1, .hi = 100000,
     .meta = "L", .help = "skip sequences longer than L residues (default 1022)"},
    {.name = "threads", .kind = PQ_CLI_INT, .offset = offsetof(copts, threads), .lo = 0, .hi = 4096, .meta = "N",
     .help = "forward threads per rank (default: node cores / ranks on it)"},
    {.name = "hardware-target", .kind = PQ_CLI_STR, .offset = offsetof(copts, hardware_target), .meta = "T",
     .help = "kernels of the forward: cpu (default, best) | ref | avx2 | avx512"},
    {.name = "batch-tokens", .kind = PQ_CLI_I64, .offset = offsetof(copts, d.batch_tokens), .lo = 1, .hi = 1000000,
     .meta = "N", .help = "tokens per forward batch (default 4096; 1 = one sequence\nper forward; statistics do "
     "not depend on it)"},
    {.name = "pipeline-stages", .kind = PQ_CLI_INT, .offset = offsetof(copts, stages), .lo = 1, .hi = 4096,
     .meta = "P", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "split the layers into P contiguous stages on consecutive\nranks; activations of each micro-batch "
             "(one forward\nbatch) travel stage to stage; the N ranks form N / P\ndata-parallel replicas "
             "(P must divide N, P <= layers)"},
    {.name = "resume", .kind = PQ_CLI_FLAG, .offset = offsetof(copts, resume),
     .help = "go on from OUT.journal after a stop (kill, node failure,\nSIGUSR1/SIGTERM: status 14), on any "
             "rank count;\nthe store is the same bytes as an uninterrupted run's\n(without a journal: an "
             "ordinary run)"},
    {.name = "journal-block", .kind = PQ_CLI_I64, .offset = offsetof(copts, journal_block), .lo = 1,
     .hi = 1000000000, .meta = "N", .help = "sequences per journal record (default 32): the most\na stop "
     "loses per rank; statistics do not depend on it"},
    {.name = "update", .kind = PQ_CLI_STR, .offset = offsetof(copts, update), .meta = "PATH",
     .help = "add new data to an existing store (same model)"},
    {.name = "stats", .kind = PQ_CLI_STR, .offset = offsetof(copts, stats), .meta = "PATH",
     .help = "per-site table: range, each method's threshold,\nsaturation and quality (KL, MSE)"},
    {.name = "export", .kind = PQ_CLI_STR, .offset = offsetof(copts, export_path), .meta = "PATH",
     .help = "write ranges in another tool's format (to --out or stdout)"},
    {.name = "format", .kind = PQ_CLI_STR, .offset = offsetof(copts, format), .meta = "F",
     .help = "json | tensorrt | onnxruntime"},
    {.name = "method", .kind = PQ_CLI_CHOICE, .offset = offsetof(copts, method), .choices = k_methods,
     .meta = "M", .help = "minmax | percentile | entropy | mse", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "percentile", .kind = PQ_CLI_F64, .offset = offsetof(copts, percentile), .lo = 0, .hi = 100,
     .flags = PQ_CLI_LO_OPEN | PQ_CLI_SHOW_DEFAULT, .meta = "P", .help = "for the percentile method"},
    {.name = "asymmetric", .kind = PQ_CLI_FLAG, .offset = offsetof(copts, asymmetric),
     .help = "asymmetric ranges (ONNX Runtime style) instead of symmetric"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(copts, quiet), .help = "no summary"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "calibrate",
    .usage = "usage: proteus calibrate --model M --calibration-data F.fasta --out calib.h5 [options]\n"
             "       proteus calibrate --update calib.h5 --calibration-data NEW.fasta [--out NEW.h5]\n"
             "       proteus calibrate --stats calib.h5\n"
             "       proteus calibrate --export calib.h5 --format json|tensorrt|onnxruntime [--method M]\n"
             "       mpirun -n N proteus calibrate ... [--pipeline-stages P]\n"
             "                                         (statistics identical for any N and P)",
    .about = "Runs the fp32 model on calibration proteins and records, at the input of every\n"
             "Linear layer (sites layer.N.attn_in / attn_out / ffn_in / ffn_mid), exact min/max,\n"
             "per-channel max |x|, counts and a histogram on a grid fixed by the float format\n"
             "(sign, exponent, top 8 mantissa bits), so statistics merge exactly: across ranks,\n"
             "and with --update, where update(A) + B equals calibrate(A + B).\n"
             "Without --pipeline-stages, rank 0 records each finished block of --journal-block\n"
             "sequences in OUT.journal (removed once OUT is in place); after any stop the same\n"
             "command with --resume runs only the missing blocks. SIGUSR1 and SIGTERM stop\n"
             "after the blocks running, with the journal durable, exit status 14.",
    .opts = k_opts,
};

static int print_stats(const char *path, const copts *o)
{
    pq_calib *c = NULL;
    pq_status st = pq_calib_h5_load(path, &c);
    if (st) return pq_cli_fail(st);
    bool sym = !o->asymmetric;
    printf("%s: %llu sequences, model sha256 %.16s..., grid %d mantissa bits\n", path,
           (unsigned long long)c->n_sequences, c->model_sha256, PQ_HIST_MBITS);
    printf("datasets: %s\n", c->datasets ? c->datasets : "-");
    printf("%-20s %12s %12s %12s %10s", "site", "min", "max", "count", "nonfinite");
    for (int m = 0; m < PQ_CALIB_N_METHODS; m++)
        printf(" | %-10s %10s %8s %10s", pq_calib_method_name(m), "thresh", "sat%", m == PQ_CALIB_ENTROPY ? "KL" : "MSE");
    printf("\n");
    for (int i = 0; i < c->n_sites; i++) {
        const pq_calib_site *s = &c->sites[i];
        printf("%-20s %12.5g %12.5g %12llu %10llu", s->name, s->min, s->max,
               (unsigned long long)s->count, (unsigned long long)(s->n_nan + s->n_posinf + s->n_neginf));
        for (int m = 0; m < PQ_CALIB_N_METHODS; m++) {
            pq_calib_range r;
            if ((st = pq_calib_compute(s, m, sym, o->percentile, &r))) {
                printf("\n");
                pq_calib_free(c);
                return pq_cli_fail(st);
            }
            char thr[40];
            if (sym) snprintf(thr, sizeof thr, "%.5g", r.amax);
            else snprintf(thr, sizeof thr, "[%.3g,%.3g]", r.lo, r.hi);
            printf(" | %-10s %10s %8.4f %10.4g", "", thr, 100.0 * r.saturation,
                   m == PQ_CALIB_ENTROPY ? r.kl : r.mse);
        }
        printf("\n");
    }
    pq_calib_free(c);
    return 0;
}

static int do_export(const copts *o)
{
    pq_calib *c = NULL;
    pq_status st = pq_calib_h5_load(o->export_path, &c);
    if (st) return pq_cli_fail(st);
    FILE *f = stdout;
    char partial[4200] = "";
    if (o->out && strcmp(o->out, "-")) {
        if (pq_partial_name(partial, sizeof partial, o->out)) {
            pq_calib_free(c);
            return pq_cli_fail(pq_err(PQ_ERR_CONFIG, "--out %.200s...: path too long", o->out));
        }
        if (!(f = fopen(partial, "w"))) {
            pq_calib_free(c);
            return pq_cli_fail(pq_err(PQ_ERR_IO, "%s: cannot create", partial));
        }
    }
    st = pq_calib_export(c, o->format, o->method, !o->asymmetric, o->percentile, f);
    if (f != stdout) {
        if (fclose(f) && !st) st = pq_err(PQ_ERR_IO, "%s: write failed", partial);
        if (!st) st = pq_publish(partial, o->out);
        if (st) remove(partial);
    }
    pq_calib_free(c);
    return st ? pq_cli_fail(st) : 0;
}

/* calibrate / update: collective over MPI_COMM_WORLD. */
static int do_collect(const copts *o)
{
    int provided, rank = 0, n = 1, rc = 0;
    pq_status st = PQ_OK;
    pq_calib *c = NULL, *old = NULL;
    pq_journal *journal = NULL;
    const char *model = o->model;
    char *stored_model = NULL;
    /* rank 0 writes the store through OUT.partial: its watcher (forked
     * before MPI is up) removes the file if rank 0 dies meanwhile */
    if (pq_mpi_launcher_rank() == 0) pq_cleanup_start();
    if ((rc = pq_mpi_start(&provided))) return rc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    double t0 = MPI_Wtime();
    if (o->update) {
        /* every rank reads the store: it names the model when --model is absent */
        st = pq_calib_h5_load(o->update, &old);
        if (!st && !model) {
            if (!old->model_path)
                st = pq_err(PQ_ERR_CONFIG, "%s records no model path: pass --model", o->update);
            else model = stored_model = strdup(old->model_path);
        }
    }
    if (!st && rank == 0) {
        /* rank 0 writes the store: its folder and the inputs are checked there */
        const char *in[] = {model, o->data};
        st = pq_out_check("--out", o->out ? o->out : o->update, in, 2);
    }
    if ((st = pq_calib_mpi_agree(MPI_COMM_WORLD, st))) goto fail;
    if (o->stages > 1) {
        st = pq_calib_mpi_collect(MPI_COMM_WORLD, model, o->data, &o->d, o->threads, o->stages, &c);
    } else {
        /* the store --update adds to is an input of the journal: once it is
         * replaced in place, a --resume of the old journal is refused */
        char sha[65] = "", *extra = NULL;
        if (o->update && rank == 0) st = pq_sha256_file(o->update, sha);
        if (!st && asprintf(&extra, "update %s%s\n", o->update ? "sha256:" : "none", sha) < 0) {
            extra = NULL;
            st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        }
        if ((st = pq_calib_mpi_agree(MPI_COMM_WORLD, st))) {
            free(extra);
            goto fail;
        }
        pq_calib_resume_opts ro = {.out = o->out ? o->out : o->update, .resume = o->resume,
                                   .block_seqs = o->journal_block, .extra = extra};
        st = pq_calib_resume_collect(MPI_COMM_WORLD, model, o->data, &o->d, o->threads, &ro, &c, &journal);
        free(extra);
    }
    if (rank == 0 && !st) {
        if (old) {
            if (strcmp(old->model_sha256, c->model_sha256))
                st = pq_err(PQ_ERR_CALIBRATION, "%s was collected on model sha256 %.16s..., %s is "
                            "%.16s...: statistics of different models cannot be merged", o->update,
                            old->model_sha256, model, c->model_sha256);
            if (!st) st = pq_calib_merge(old, c);
            if (!st && c->datasets) {
                size_t a = old->datasets ? strlen(old->datasets) : 0, b = strlen(c->datasets);
                char *d = realloc(old->datasets, a + b + 2);
                if (!d) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
                else {
                    snprintf(d + a, b + 2, "%s%s", a ? ";" : "", c->datasets);
                    old->datasets = d;
                }
            }
            if (!st) { pq_calib_free(c); c = old; old = NULL; }
        }
        if (!st) st = pq_calib_check(c, false);
        if (!st) {
            char partial[4200];
            const char *out = o->out ? o->out : o->update;
            if (!pq_partial_name(partial, sizeof partial, out)) pq_cleanup_arm(partial);
            if (pq_fault_at(PQ_FAULT_KILL_AT, 4)) raise(SIGKILL);
            st = pq_calib_h5_save(out, c, "proteus " PQ_VERSION);
            pq_cleanup_arm(NULL);
            if (!st && pq_fault_at(PQ_FAULT_KILL_AT, 5)) raise(SIGKILL);
            /* OUT is in place: the journal goes */
            if (!st) {
                pq_journal_remove(journal);
                journal = NULL;
            }
        }
    }
    if ((st = pq_calib_mpi_agree(MPI_COMM_WORLD, st))) goto fail;
    if (rank == 0 && !o->quiet) {
        uint64_t tokens = 0;
        for (int i = 0; i < c->n_sites; i += PQ_SITE_KINDS) tokens += c->sites[i].n_tokens;
        char layout[64] = "";
        if (o->stages > 1)
            snprintf(layout, sizeof layout, " (%d pipeline stages x %d replicas)", o->stages, n / o->stages);
        printf("calibrated %d sites on %llu sequences (%llu tokens, %llu skipped) over %d rank%s%s "
               "in %.2f s\nwrote %s\n", c->n_sites, (unsigned long long)c->n_sequences,
               (unsigned long long)(tokens / (uint64_t)(c->num_layers)),
               (unsigned long long)c->n_skipped, n, n == 1 ? "" : "s", layout, MPI_Wtime() - t0,
               o->out ? o->out : o->update);
    }
    goto done;
fail:
    pq_calib_resume_end(journal, st);
    journal = NULL;
    rc = rank == 0 ? pq_cli_fail(st) : pq_status_exit_code(st);
done:
    pq_journal_close(journal);
    pq_calib_free(c);
    pq_calib_free(old);
    free(stored_model);
    MPI_Finalize();
    return rc;
}

int pq_cmd_calibrate(int argc, char **argv)
{
    copts o = {.method = PQ_CALIB_ENTROPY, .percentile = 99.99, .stages = 1};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    int modes = !!o.update + !!o.stats + !!o.export_path;
    if (modes > 1) return pq_cli_usage_error("calibrate", "--update, --stats and --export are exclusive");
    if (o.stats) return print_stats(o.stats, &o);
    if (o.export_path) {
        if (!o.format) return pq_cli_usage_error("calibrate", "--export needs --format json|tensorrt|onnxruntime");
        const char *in[] = {o.export_path};
        pq_status st = pq_out_check("--out", o.out, in, 1);
        return st ? pq_cli_fail(st) : do_export(&o);
    }
    if (!o.data) return pq_cli_usage_error("calibrate", "--calibration-data is required");
    pq_status hw = pq_hardware_select(o.hardware_target ? o.hardware_target : "cpu", &o.d.ops);
    if (hw) return pq_cli_fail(hw);
    if (o.stages > 1 && (o.resume || o.journal_block))
        return pq_cli_usage_error("calibrate", "--resume and --journal-block need the data-parallel collection "
                                  "(no --pipeline-stages)");
    if (!o.update) {
        if (!o.model) return pq_cli_usage_error("calibrate", "--model is required");
        if (!o.out) return pq_cli_usage_error("calibrate", "--out is required");
    }
    return do_collect(&o);
}
