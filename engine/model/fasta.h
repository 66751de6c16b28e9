/* SPDX-License-Identifier: Apache-2.0 */
/* fasta.h - streaming FASTA reader (plain or gzip, through zlib) that yields
 * records already encoded as ESM-2 token ids.
 *
 * Multi-line records; '>' header -> id (first word) and description (the
 * rest); CR before LF tolerated; blank lines ignored; whitespace inside
 * sequence lines ignored; a trailing '*' dropped. Errors are PQ_ERR_FORMAT
 * naming the file, the record id and the line number. */
#ifndef PQ_FASTA_H
#define PQ_FASTA_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"

typedef enum pq_fasta_long {
    PQ_FASTA_CROP = 0,  /* keep the first max_residues residues */
    PQ_FASTA_SKIP,      /* drop the record (counted in n_skipped) */
    PQ_FASTA_ERROR      /* PQ_ERR_FORMAT */
} pq_fasta_long;

typedef struct pq_fasta_opts {
    int64_t max_residues;   /* 0 = no limit; ESM-2 context is 1022 */
    pq_fasta_long on_long;
    bool unknown_to_unk;    /* unknown characters -> <unk> instead of an error */
    bool skip_empty;        /* drop records with no residues instead of failing */
} pq_fasta_opts;

/* Defaults: max_residues 1022, crop, strict characters, empty is an error. */
pq_fasta_opts pq_fasta_defaults(void);

typedef struct pq_fasta_record {
    char *id;            /* first word of the header (owned by the record) */
    char *desc;          /* rest of the header, "" when none (owned) */
    int32_t *ids;        /* <cls> residues <eos> (owned) */
    int64_t n_ids;       /* residues + 2 */
    int64_t n_residues_orig; /* residue tokens before cropping */
    int64_t line;        /* 1-based line of the header */
    int64_t index;       /* 0-based index among the records returned */
} pq_fasta_record;

void pq_fasta_record_free(pq_fasta_record *r); /* frees members, NULL is fine */

typedef struct pq_fasta pq_fasta;

/* Open `path` (borrowed; plain or .gz). Returns owned *out. */
pq_status pq_fasta_open(const char *path, const pq_fasta_opts *opts, pq_fasta **out);
void pq_fasta_close(pq_fasta *f); /* NULL is fine */

/* Next record into *rec (fields owned by the caller afterwards: free with
 * pq_fasta_record_free). *got = false at end of file. On error nothing is
 * returned in *rec. */
pq_status pq_fasta_next(pq_fasta *f, pq_fasta_record *rec, bool *got);

/* Records skipped so far (too long, or empty with skip_empty). */
int64_t pq_fasta_n_skipped(const pq_fasta *f);

/* Read every record (up to max_records when > 0). Returns an owned array
 * (free each with pq_fasta_record_free, then free()). PQ_ERR_FORMAT when the
 * file holds no usable record. */
pq_status pq_fasta_read_all(const char *path, const pq_fasta_opts *opts, int64_t max_records,
                            pq_fasta_record **recs, int64_t *n);

#endif
