/* SPDX-License-Identifier: Apache-2.0 */
/* infer.h - the options every inference command (embed, score, evaluate,
 * bench) shares, as one option group, and the model options they make. */
#ifndef PQ_CLI_INFER_H
#define PQ_CLI_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/options.h"
#include "model/esm2_model.h"
#include "model/fasta.h"

typedef struct pq_cli_infer {
    int64_t threads;      /* 0: the config's threads (default all cores) */
    int64_t batch_tokens; /* tokens per forward batch */
    int64_t max_length;   /* residues per sequence */
    int mode;             /* pq_esm2_qmode */
    bool no_verify;       /* --no-verify-checksums */
    int64_t chunk_residues; /* residues per chunk shared out over the ranks */
    bool resume, quiet;
    const char *monitor;  /* ZeroMQ endpoint for progress events */
    bool monitor_allow_remote;
    pq_cli_config cfg;    /* --config, and --no-fusion / --no-threading over it */
} pq_cli_infer;

/* The model and the sequences of embed and score: --model, --fasta
 * (both required), --long crop|skip. */
typedef struct pq_cli_input {
    const char *model, *fasta;
    int on_long; /* pq_fasta_long */
} pq_cli_input;
extern const pq_cli_opt pq_cli_input_opts[];

/* --config, --threads, --batch-tokens, --max-length, --mode, --no-fusion,
 * --no-threading, --hardware-target, --no-verify-checksums: a PQ_CLI_GROUP
 * table for a pq_cli_infer. */
extern const pq_cli_opt pq_cli_infer_opts[];

/* embed's and score's own: --truncation-seq-length (= --max-length),
 * --chunk-residues, --resume, --quiet, --monitor, --monitor-allow-remote, as a PQ_CLI_GROUP table for a
 * pq_cli_infer. */
extern const pq_cli_opt pq_cli_run_opts[];

/* The model options they ask for: the configuration (--config, defaults
 * otherwise) gives fusion (enable_fusion), threading, threads and the kernel
 * context (hardware_target, through pq_config_apply_hardware);
 * --no-fusion, --no-threading, --threads and --hardware-target override it.
 * PQ_ERR_CONFIG for a bad --config file, PQ_ERR_HARDWARE for kernels this
 * machine cannot run. */
pq_status pq_cli_infer_model_opts(const pq_cli_infer *o, pq_esm2_model_opts *mo);

/* How to read the FASTA: --max-length, and in (NULL: crop) --long. */
pq_fasta_opts pq_cli_infer_fasta_opts(const pq_cli_infer *o, const pq_cli_input *in);

/* MPI start for embed and score (worker/mpi_start.h): 0, or the exit code. */
int pq_cli_infer_mpi_start(int *rank, int *n_ranks);

/* pq_cli_infer_model_opts, with the node's cores shared by its ranks when
 * neither --threads nor --config names a count. Collective. */
pq_status pq_cli_infer_rank_model_opts(const pq_cli_infer *o, int rank, pq_esm2_model_opts *mo);

/* The header text of an inference run's journal (pipeline/journal.h;
 * owned, free(); NULL when out of memory): "key value" lines naming the
 * command, the Proteus version, the inputs (path, size, mtime) and every
 * option that changes the numbers (the thread and rank counts and the batch
 * size do not), then extra (the command's own lines, or NULL). A --resume
 * whose text differs is refused naming the first line that does. */
char *pq_cli_infer_header(const char *cmd, const pq_cli_input *in, const pq_cli_infer *o,
                          const pq_esm2_model_opts *mo, const char *extra);

#endif
