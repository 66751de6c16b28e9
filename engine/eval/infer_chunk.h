/* SPDX-License-Identifier: Apache-2.0 */
/* infer_chunk.h - a FASTA file streamed as chunks of consecutive records,
 * the unit a distributed inference run shares out: a chunk closes after the
 * record that brings its residues to chunk_residues (or at the end of the
 * file, or of max_records), so the chunks are a function of the data and
 * that number only, never of the ranks or threads. Only one chunk's
 * records are held at a time. */
#ifndef PQ_EVAL_INFER_CHUNK_H
#define PQ_EVAL_INFER_CHUNK_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "model/fasta.h"

typedef struct pq_chunker pq_chunker;

typedef struct pq_chunk {
    pq_fasta_record *recs; /* owned by the chunker, valid until the next call */
    int64_t n;             /* records */
    int64_t index;         /* 0-based chunk number */
    int64_t first;         /* input index of recs[0] (pq_fasta_record.index) */
    int64_t residues;      /* residues in the chunk (after cropping) */
} pq_chunk;

/* Open path (plain or .gz) with the reader options fo (borrowed).
 * max_records: stop after that many records (0: all). */
pq_status pq_chunker_open(const char *path, const pq_fasta_opts *fo, int64_t chunk_residues,
                          int64_t max_records, pq_chunker **c);

/* The next chunk into *ch; *got false at the end. keep false: the records
 * are counted and dropped at once (a chunk another rank runs), and
 * ch->recs is NULL. FASTA errors as pq_fasta_next gives them. */
pq_status pq_chunker_next(pq_chunker *c, bool keep, pq_chunk *ch, bool *got);

/* Records skipped by the reader so far (too long, with --long skip). */
int64_t pq_chunker_n_skipped(const pq_chunker *c);

void pq_chunker_close(pq_chunker *c); /* NULL is fine */

#endif
