/* SPDX-License-Identifier: Apache-2.0 */
/* infer.h - the options every inference command (embed, score, evaluate,
 * bench) shares, as one option group, and the model options they make. */
#ifndef PQ_CLI_INFER_H
#define PQ_CLI_INFER_H

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

/* The model options they ask for: the configuration (--config, defaults
 * otherwise) gives fusion (enable_fusion), threading, threads and the kernel
 * context (hardware_target, through pq_config_apply_hardware);
 * --no-fusion, --no-threading, --threads and --hardware-target override it.
 * PQ_ERR_CONFIG for a bad --config file, PQ_ERR_HARDWARE for kernels this
 * machine cannot run. */
pq_status pq_cli_infer_model_opts(const pq_cli_infer *o, pq_esm2_model_opts *mo);

/* How to read the FASTA: --max-length, and in (NULL: crop) --long. */
pq_fasta_opts pq_cli_infer_fasta_opts(const pq_cli_infer *o, const pq_cli_input *in);

#endif
