/* SPDX-License-Identifier: Apache-2.0 */
/* calib_run.h - collecting calibration statistics: read the calibration
 * FASTA, keep this shard's sequences, run the fp32 forward with the observer.
 *
 * Sharding (pq_calib_plan): a deterministic greedy over the sequences
 * ordered by length (longest first, ties by FNV-1a of the id, then file
 * order), each to the rank with the fewest tokens so far (ties: lowest rank).
 * It depends only on the data and the rank count, never on timing, and
 * balances token counts. A rank packs its sequences into forward batches of
 * up to batch_tokens tokens; attention is per sequence and every other op
 * is per token, so a sequence's activations do not depend on its
 * batch-mates (tested: stores are byte-identical for any rank count,
 * thread count and batch size). Together with integer counts and exact
 * min/max this makes the merged statistics identical for any rank count. */
#ifndef PQ_CALIB_RUN_H
#define PQ_CALIB_RUN_H

#include <stdint.h>

#include "calib/calib_stats.h"
#include "model/esm2_model.h"
#include "model/fasta.h"
#include "base/pq_err.h"

#define PQ_CALIB_DEFAULT_SEQS 128

typedef struct pq_calib_data_opts {
    int64_t max_seqs;    /* 0 = every usable record; else the first max_seqs */
    int64_t max_length;  /* residues; longer records are skipped; 0 = 1022 */
    int64_t batch_tokens; /* tokens per forward batch; 0 = PQ_CALIB_BATCH_TOKENS, 1 = one
                           * sequence per forward */
    pq_ops ops;           /* kernel context of the observed forward (a job's); left
                           * zero = the best this CPU runs */
} pq_calib_data_opts;

#define PQ_CALIB_BATCH_TOKENS 4096

/* FNV-1a 64 of an id's bytes. */
uint64_t pq_calib_id_hash(const char *id);

/* Owner rank of each record (owner[n], caller-allocated), by the greedy
 * token balance above. PQ_ERR_RESOURCE when out of memory. */
pq_status pq_calib_plan(const pq_fasta_record *recs, int64_t n, int n_ranks, int *owner);

/* Read the usable calibration records of `path` (borrowed). Unknown residue
 * letters become <unk>; empty and too-long records are skipped and counted
 * in *n_skipped. PQ_ERR_CALIBRATION when no usable record remains (naming
 * the file and why), PQ_ERR_IO / PQ_ERR_FORMAT for unreadable files.
 * Returns owned *recs (pq_calib_records_free). */
pq_status pq_calib_read_data(const char *path, const pq_calib_data_opts *o,
                             pq_fasta_record **recs, int64_t *n, int64_t *n_skipped);
void pq_calib_records_free(pq_fasta_record *recs, int64_t n);

/* Run the records of shard `rank` of n_ranks (pq_calib_plan) through m
 * (borrowed; whole model), packed into batches of up to batch_tokens tokens
 * (0 = default; a longer sequence runs alone), adding into c (flushed at
 * the end). Counts the sequences in c->n_sequences. */
pq_status pq_calib_collect(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n, int rank,
                           int n_ranks, int64_t batch_tokens, pq_calib *c);

/* Tree digest identifying a model (st_hash.h, 64 MiB chunks): of the
 * safetensors checkpoint's files (the value a quantized output records as
 * source_sha256_tree), or of the file's bytes for an .h5/.hdf5 model. */
pq_status pq_calib_model_sha256(const char *path, char hex[65]);

/* Append "sha256:<hex> <basename>" of a dataset to c->datasets. */
pq_status pq_calib_add_dataset(pq_calib *c, const char *path);

/* Provenance of statistics collected from `data` on `model` (both
 * borrowed): c->n_skipped, c->model_path (a copy), the model's tree digest
 * (pq_calib_model_sha256) and the dataset's hash (pq_calib_add_dataset). */
pq_status pq_calib_set_source(pq_calib *c, const char *model, const char *data, int64_t n_skipped);

/* Collect on this process alone: open the model (borrowed path), read the
 * records of `data` with o, run them all with n_threads forward threads
 * (0 = all cores) and add the provenance. The same bits as any number of
 * MPI ranks give (calib_mpi.h). Returns owned *out (pq_calib_free);
 * PQ_ERR_CALIBRATION when no usable record remains, PQ_ERR_IO /
 * PQ_ERR_FORMAT for unreadable files. */
pq_status pq_calib_collect_file(const char *model, const char *data, const pq_calib_data_opts *o,
                                int n_threads, pq_calib **out);

#endif
