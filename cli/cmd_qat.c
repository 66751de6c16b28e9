/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_qat.c - `proteus qat`: quantization-aware training (or fp32
 * fine-tuning) of an ESM-2 checkpoint on a FASTA file, written as a Proteus
 * HDF5 model: its options, the loop over engine/train's trainer, its
 * printing. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "api/proteus.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "model/fasta.h"
#include "train/qat_export.h"
#include "train/train_ckpt.h"
#include "train/trainer.h"
#include "worker/mpi_start.h"
#include "worker/sync.h"
#include "worker/train_mpi.h"

typedef struct qat_opts {
    const char *model, *data, *out, *eval_data, *ckpt, *calib_data;
    int precision;   /* index in k_precisions */
    int act;         /* index in k_acts */
    int act_scheme;  /* index in k_act_schemes */
    int init;        /* index in k_inits */
    int group_size;  /* 0: per channel */
    bool asymmetric, resume, quiet, distill;
    int64_t steps, batch_size, micro_size, max_residues, warmup, ckpt_every;
    double lr, weight_decay, clip;
    uint64_t seed;
    int threads;
} qat_opts;

static const char *const k_precisions[] = {"int4", "int8", "fp32", NULL};
static const char *const k_acts[] = {"fp32", "int8", NULL};
static const char *const k_act_schemes[] = {"dynamic", "static", NULL};
static const char *const k_inits[] = {"rtn", "gptq", NULL};

static const pq_cli_opt k_opts[] = {
    {.name = "model", .letter = 'm', .kind = PQ_CLI_STR, .offset = offsetof(qat_opts, model),
     .flags = PQ_CLI_REQUIRED, .meta = "M.safetensors", .help = "the checkpoint to train from"},
    {.name = "data", .kind = PQ_CLI_STR, .offset = offsetof(qat_opts, data), .flags = PQ_CLI_REQUIRED,
     .meta = "F.fasta", .help = "training sequences (plain or .gz FASTA)"},
    {.name = "out", .letter = 'o', .kind = PQ_CLI_STR, .offset = offsetof(qat_opts, out), .flags = PQ_CLI_REQUIRED,
     .meta = "OUT.h5", .help = "the model file written at the end (Proteus HDF5)"},
    {.name = "precision", .kind = PQ_CLI_CHOICE, .offset = offsetof(qat_opts, precision), .choices = k_precisions,
     .meta = "int4|int8|fp32", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "weights of the six Linears per layer: fake-quantized to int4\nor int8 with learned steps "
             "(LSQ, from --init), or fp32 (plain\nfine-tuning; every tensor of OUT.h5 is then fp32)"},
    {.name = "group-size", .kind = PQ_CLI_INT, .offset = offsetof(qat_opts, group_size), .lo = 0, .hi = 256,
     .meta = "G", .help = "one step per row and G input columns (even, 32..256);\n0 = one per output row "
                          "(per channel, the default)"},
    {.name = "asymmetric", .kind = PQ_CLI_FLAG, .offset = offsetof(qat_opts, asymmetric),
     .help = "integer zero points (from --init, kept fixed); default symmetric"},
    {.name = "act", .kind = PQ_CLI_CHOICE, .offset = offsetof(qat_opts, act), .choices = k_acts,
     .meta = "fp32|int8", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "int8: also fake-quantize every Linear input to int8\n(see --act-scheme)"},
    {.name = "act-scheme", .kind = PQ_CLI_CHOICE, .offset = offsetof(qat_opts, act_scheme),
     .choices = k_act_schemes, .meta = "dynamic|static", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "with --act int8: dynamic = per token at run time (as the\nW8A8 kernels do); static = one step per "
             "Linear input,\nstarted from the static scheme's calibration (minmax on\n--calibration-data), "
             "learned by LSQ and written as\nact_scale (the file then runs as `quantize --scheme\nstatic`'s)"},
    {.name = "init", .kind = PQ_CLI_CHOICE, .offset = offsetof(qat_opts, init), .choices = k_inits,
     .meta = "rtn|gptq", .flags = PQ_CLI_SHOW_DEFAULT,
     .help = "where the weights and their steps start: RTN, or GPTQ\n(`quantize --method gptq` on "
             "--calibration-data: the\nweights become its dequantized values)"},
    {.name = "calibration-data", .kind = PQ_CLI_STR, .offset = offsetof(qat_opts, calib_data), .meta = "F.fasta",
     .help = "sequences of --init gptq and --act-scheme static (default:\nthe bundled calibration sample, "
             "as `quantize` uses)"},
    {.name = "distill", .kind = PQ_CLI_FLAG, .offset = offsetof(qat_opts, distill),
     .help = "train towards the starting model instead of the labels: the\n"
             "loss is KL(fp32 model || trained model) at every residue\n(on the masked inputs)"},
    {.name = "steps", .kind = PQ_CLI_I64, .offset = offsetof(qat_opts, steps), .lo = 0, .hi = 1e9, .meta = "N",
     .flags = PQ_CLI_SHOW_DEFAULT, .help = "optimizer steps (0: write the starting point)"},
    {.name = "lr", .kind = PQ_CLI_F64, .offset = offsetof(qat_opts, lr), .lo = 0, .hi = 1e30, .meta = "X",
     .flags = PQ_CLI_SHOW_DEFAULT | PQ_CLI_LO_OPEN, .help = "peak learning rate (AdamW; warm-up, then cosine to 10 %)"},
    {.name = "warmup", .kind = PQ_CLI_I64, .offset = offsetof(qat_opts, warmup), .lo = -1, .hi = 1e9, .meta = "N",
     .help = "warm-up steps (default: a tenth of --steps)"},
    {.name = "weight-decay", .kind = PQ_CLI_F64, .offset = offsetof(qat_opts, weight_decay), .lo = 0, .hi = 1,
     .meta = "X", .flags = PQ_CLI_SHOW_DEFAULT, .help = "AdamW decoupled weight decay of the 2-D weights"},
    {.name = "clip", .kind = PQ_CLI_F64, .offset = offsetof(qat_opts, clip), .lo = 0, .hi = 1e30, .meta = "X",
     .flags = PQ_CLI_SHOW_DEFAULT, .help = "clip the global gradient norm to X (0: no clipping)"},
    {.name = "batch-size", .kind = PQ_CLI_I64, .offset = offsetof(qat_opts, batch_size), .lo = 1, .hi = 1e6,
     .meta = "B", .flags = PQ_CLI_SHOW_DEFAULT, .help = "sequences per step"},
    {.name = "micro-batch", .kind = PQ_CLI_I64, .offset = offsetof(qat_opts, micro_size), .lo = 1, .hi = 1e6,
     .meta = "M", .flags = PQ_CLI_SHOW_DEFAULT, .help = "sequences per micro-batch (gradients summed in order)"},
    {.name = "max-residues", .kind = PQ_CLI_I64, .offset = offsetof(qat_opts, max_residues), .lo = 1, .hi = 1022,
     .meta = "N", .flags = PQ_CLI_SHOW_DEFAULT, .help = "crop longer sequences to a window of N residues"},
    {.name = "seed", .kind = PQ_CLI_U64, .offset = offsetof(qat_opts, seed), .meta = "N",
     .flags = PQ_CLI_SHOW_DEFAULT, .help = "data order, crops and masking"},
    {.name = "eval-data", .kind = PQ_CLI_STR, .offset = offsetof(qat_opts, eval_data), .meta = "F.fasta",
     .help = "held-out sequences: masked-LM loss before and after\ntraining, printed and kept in /provenance"},
    {.name = "checkpoint", .kind = PQ_CLI_STR, .offset = offsetof(qat_opts, ckpt), .meta = "C.h5",
     .help = "training state file (default OUT.h5.train.h5)"},
    {.name = "checkpoint-every", .kind = PQ_CLI_I64, .offset = offsetof(qat_opts, ckpt_every), .lo = 1, .hi = 1e9,
     .meta = "N", .flags = PQ_CLI_SHOW_DEFAULT, .help = "write the training state every N steps (and at the end)"},
    {.name = "resume", .kind = PQ_CLI_FLAG, .offset = offsetof(qat_opts, resume),
     .help = "continue from the training state file (same options)"},
    {.name = "threads", .kind = PQ_CLI_INT, .offset = offsetof(qat_opts, threads), .lo = 0, .hi = 4096,
     .meta = "N", .help = "threads (0 = all cores, the default); results do not\ndepend on it"},
    {.name = "quiet", .letter = 'q', .kind = PQ_CLI_FLAG, .offset = offsetof(qat_opts, quiet),
     .help = "print only the summary"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "qat",
    .usage = "usage: proteus qat --model M.safetensors --data train.fasta --precision int4|int8|fp32\n"
             "                   [--group-size G] [--act int8 [--act-scheme static]] [--init gptq]\n"
             "                   [--calibration-data F.fasta] --steps N [--lr X] [--batch-size B]\n"
             "                   [--seed N] [--eval-data F.fasta] [--resume] --out M_qat.h5",
    .about = "Quantization-aware training: fine-tune the model with its Linear weights (and,\n"
             "with --act int8, their inputs) fake-quantized on the masked-LM objective of\n"
             "ESM-2 (15 % of residues; 80 % <mask>, 10 % random, 10 % unchanged), with steps\n"
             "learned by LSQ from their RTN (or GPTQ) values, AdamW, warm-up and cosine\n"
             "decay, gradient clipping. The result is the quantized model file evaluate, score, embed and\n"
             "inspect read; /provenance holds the recipe and the learning curve. A NaN or\n"
             "Inf loss stops the run (exit 13) naming the step and what overflowed; the\n"
             "training state file keeps the last good step for --resume.",
    .opts = k_opts,
};

/* CPU seconds of this process (every thread), for the summary: on a
 * machine shared with other jobs, the wall time says little. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void recipe_json(const qat_opts *o, const pq_train_opts *t, char *buf, size_t n)
{
    snprintf(buf, n,
             "{\"method\":\"qat\",\"precision\":\"%s\",\"group_size\":%d,\"symmetric\":%s,\"act\":\"%s\","
             "\"steps\":%lld,\"lr\":%.9g,\"warmup\":%lld,\"schedule\":\"cosine to %.3g of lr\","
             "\"weight_decay\":%.9g,\"clip\":%.9g,\"batch_size\":%lld,\"micro_batch\":%lld,\"max_residues\":%lld,"
             "\"seed\":%llu,\"loss\":\"%s\",\"optimizer\":\"AdamW(0.9,0.999,1e-8)\",\"steps_init\":\"%s\","
             "\"act_scheme\":\"%s\",\"act_init\":\"%s\",\"data\":\"%s\"}",
             k_precisions[o->precision], o->group_size, o->asymmetric ? "false" : "true", k_acts[o->act],
             (long long)t->steps, t->lr, (long long)t->warmup, t->min_lr_frac, t->weight_decay, t->clip,
             (long long)t->batch_size, (long long)t->micro_size, (long long)t->max_residues,
             (unsigned long long)t->seed, t->distill ? "kl_to_fp32" : "masked_lm_ce", k_inits[o->init],
             !o->act ? "none" : k_act_schemes[o->act_scheme], t->act_static ? "minmax" : "none", o->data);
}

/* --init gptq and --act-scheme static: rank 0 quantizes the model as
 * `proteus quantize` does (GPTQ or RTN; the static scheme's act scales),
 * into path; every rank starts from that file, which is then removed. */
static pq_status start_from_quantize(const qat_opts *o, const pq_train_opts *t, pq_trainer *tr, const char *path,
                                     int rank)
{
    pq_status st = PQ_OK;
    if (rank == 0) {
        pq_config cfg;
        pq_manager *m = NULL;
        char gs[32], th[32];
        snprintf(gs, sizeof gs, "%d", o->group_size);
        snprintf(th, sizeof th, "%d", t->n_threads);
        pq_config_defaults(&cfg);
        const char *kv[][2] = {{"precision", k_precisions[o->precision]},
                               {"per_channel", o->group_size ? "false" : "true"},
                               {"group_size", gs},
                               {"symmetric", o->asymmetric ? "false" : "true"},
                               {"method", k_inits[o->init]},
                               {"scheme", t->act_static ? "static" : "weight-only"},
                               {"threads", th}};
        for (size_t i = 0; st == PQ_OK && i < sizeof kv / sizeof kv[0]; i++)
            if (strcmp(kv[i][0], "group_size") || o->group_size) st = pq_config_set(&cfg, kv[i][0], kv[i][1]);
        if (st == PQ_OK) st = pq_manager_create(&cfg, &m);
        if (st == PQ_OK) st = pq_manager_set_calibration(m, NULL, o->calib_data);
        if (st == PQ_OK && !o->quiet)
            printf("starting point: quantize --method %s%s\n", k_inits[o->init], t->act_static ? " --scheme static" : "");
        fflush(stdout);
        if (st == PQ_OK) st = pq_quantize_model(m, o->model, path);
        pq_manager_destroy(m);
        pq_config_free(&cfg);
    }
    pq_status wst = pq_train_mpi_wait_all(MPI_COMM_WORLD);
    if ((st = pq_sync_agree(MPI_COMM_WORLD, st != PQ_OK ? st : wst)) != PQ_OK) return st;
    st = pq_qat_init_file(tr->q, tr->p, tr->p->data, path, o->init == 1, t->act_static);
    wst = pq_train_mpi_wait_all(MPI_COMM_WORLD);
    if (rank == 0) remove(path);
    return st != PQ_OK ? st : wst;
}

int pq_cmd_qat(int argc, char **argv)
{
    pq_train_opts t = pq_train_defaults();
    qat_opts o = {.steps = t.steps, .batch_size = t.batch_size, .micro_size = t.micro_size,
                  .max_residues = t.max_residues, .lr = t.lr, .warmup = -1, .weight_decay = t.weight_decay,
                  .clip = t.clip, .ckpt_every = 10};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    if (o.group_size && (o.group_size < 32 || o.group_size % 2))
        return pq_cli_usage_error("qat", "--group-size %d: even, 32..256 (or 0 for per channel)", o.group_size);
    if (o.precision == 2 && (o.group_size || o.asymmetric || o.act || o.init))
        return pq_cli_usage_error("qat", "--group-size, --asymmetric, --act and --init need --precision int4 or "
                                  "int8");
    if (o.act_scheme && (!o.act || o.asymmetric))
        return pq_cli_usage_error("qat", "--act-scheme static needs --act int8 and symmetric weights (the input "
                                  "steps are trained symmetric)");
    if (o.calib_data && !o.init && !o.act_scheme)
        return pq_cli_usage_error("qat", "--calibration-data is read by --init gptq and --act-scheme static only");
    t.steps = o.steps;
    t.batch_size = o.batch_size;
    t.micro_size = o.micro_size;
    t.max_residues = o.max_residues;
    t.seed = o.seed;
    t.lr = o.lr;
    t.warmup = o.warmup;
    t.weight_decay = o.weight_decay;
    t.clip = o.clip;
    t.n_threads = o.threads;
    t.qat = o.precision != 2;
    t.spec = (pq_qspec){.bits = o.precision == 0 ? 4 : 8, .gran = o.group_size ? PQ_GRAN_GROUP : PQ_GRAN_CHANNEL,
                        .group_size = o.group_size, .symmetric = !o.asymmetric};
    t.act_int8 = o.act == 1;
    t.act_static = t.act_int8 && o.act_scheme == 1;
    t.distill = o.distill;
    if (t.warmup < 0) t.warmup = t.steps / 10;
    char ckpt[4096], init[4096], cmdline[4096] = "", recipe[2048], eval_json[256] = "";
    snprintf(init, sizeof init, "%s.init.h5", o.out);
    snprintf(ckpt, sizeof ckpt, "%s", o.ckpt ? o.ckpt : "");
    if (!o.ckpt) snprintf(ckpt, sizeof ckpt, "%s.train.h5", o.out);
    for (int i = 0; i < argc; i++) {
        strncat(cmdline, i ? " " : "proteus ", sizeof cmdline - strlen(cmdline) - 1);
        strncat(cmdline, argv[i], sizeof cmdline - strlen(cmdline) - 1);
    }
    recipe_json(&o, &t, recipe, sizeof recipe);

    int provided = 0, rank = 0, n_ranks = 1;
    if ((rc = pq_mpi_start(&provided))) return rc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    if (t.n_threads <= 0) t.n_threads = pq_sync_threads_per_rank(MPI_COMM_WORLD, rank);
    bool talk = rank == 0 && !o.quiet;

    pq_fasta_opts fo = pq_fasta_defaults();
    pq_fasta_record *recs = NULL, *evr = NULL;
    int64_t n_recs = 0, n_ev = 0;
    pq_train_params *p = NULL;
    pq_trainer *tr = NULL;
    double before = 0.0, after = 0.0, t0 = MPI_Wtime();
    /* every rank holds the whole trainer; rank 0 alone evaluates and writes */
    pq_status st = pq_fasta_read_all(o.data, &fo, 0, &recs, &n_recs);
    if (st == PQ_OK && o.eval_data && rank == 0) st = pq_fasta_read_all(o.eval_data, &fo, 0, &evr, &n_ev);
    if (st == PQ_OK) st = pq_train_params_load(o.model, &p);
    if (st == PQ_OK) st = pq_trainer_create(p, recs, n_recs, &t, &tr);
    if ((o.init || t.act_static) && !o.resume && (st = pq_sync_agree(MPI_COMM_WORLD, st)) == PQ_OK)
        st = start_from_quantize(&o, &t, tr, init, rank);
    if (st == PQ_OK && o.resume) st = pq_train_ckpt_read(tr, ckpt);
    if (st == PQ_OK && n_ev && !o.resume) {
        st = pq_trainer_eval(tr, evr, n_ev, &before);
        if (st == PQ_OK && talk) printf("eval before training: masked-LM loss %.4f on %lld sequences\n", before,
                                        (long long)n_ev);
    }
    if ((st = pq_sync_agree(MPI_COMM_WORLD, st)) != PQ_OK) goto done;
    if (talk && o.resume) printf("resumed at step %lld of %lld\n", (long long)tr->step, (long long)t.steps);
    int64_t first = tr->step;
    double cpu0 = cpu_seconds(), cpu_max = 0.0;
    while (st == PQ_OK && tr->step < t.steps) {
        double loss = 0.0;
        if ((st = pq_train_mpi_step(MPI_COMM_WORLD, tr, &loss)) != PQ_OK) break;
        if (talk) printf("step %lld/%lld loss %.4f\n", (long long)tr->step, (long long)t.steps, loss);
        if (tr->step % o.ckpt_every == 0 || tr->step == t.steps) {
            st = pq_train_mpi_gather_state(MPI_COMM_WORLD, tr);
            if (st == PQ_OK && rank == 0) st = pq_train_ckpt_write(tr, ckpt);
            pq_status wst = pq_train_mpi_wait_all(MPI_COMM_WORLD);
            st = pq_sync_agree(MPI_COMM_WORLD, st != PQ_OK ? st : wst);
        }
    }
    double train_s = MPI_Wtime() - t0, cpu = cpu_seconds() - cpu0;
    if (st != PQ_OK) goto done;
    MPI_Reduce(&cpu, &cpu_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0 && n_ev) {
        st = pq_trainer_eval(tr, evr, n_ev, &after);
        if (st == PQ_OK) {
            if (talk) printf("eval after training: masked-LM loss %.4f\n", after);
            snprintf(eval_json, sizeof eval_json, "{\"sequences\":%lld,\"loss_before\":%.6f,\"loss_after\":%.6f}",
                     (long long)n_ev, o.resume ? NAN : before, after);
        }
    }
    if (rank == 0 && st == PQ_OK) {
        pq_qat_export_info info = {.command_line = cmdline, .recipe_json = recipe,
                                   .eval_json = eval_json[0] ? eval_json : NULL};
        st = pq_qat_export(tr, o.model, o.out, &info);
    }
    if ((st = pq_sync_agree(MPI_COMM_WORLD, st)) != PQ_OK) goto done;
    if (rank == 0)
        printf("wrote %s (%s%s, %lld steps on %d rank%s, last loss %.4f, %.1f s for %lld steps, busiest rank's "
               "CPU time in the steps %.1f s; training state %s)\n",
               o.out, k_precisions[o.precision], t.act_int8 ? " a8" : "", (long long)tr->step, n_ranks,
               n_ranks == 1 ? "" : "s", tr->step ? tr->curve[tr->step - 1] : NAN, train_s,
               (long long)(tr->step - first), cpu_max, ckpt);
done:
    pq_trainer_free(tr);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    for (int64_t i = 0; i < n_ev; i++) pq_fasta_record_free(&evr[i]);
    free(recs);
    free(evr);
    /* rank 0 prints before MPI_Finalize: once another rank has left with a
     * non-zero status, mpirun may end rank 0 before it prints */
    rc = st == PQ_OK ? 0 : rank == 0 ? pq_cli_fail(st) : pq_status_exit_code(st);
    fflush(stdout);
    fflush(stderr);
    MPI_Finalize();
    return rc;
}
