/* SPDX-License-Identifier: Apache-2.0 */
/* infer_chunk.c - FASTA records in chunks of residues. */
#include "eval/infer_chunk.h"

#include <stdlib.h>

struct pq_chunker {
    pq_fasta *f;
    int64_t chunk_residues, max_records, n_read, next_index;
    pq_fasta_record *recs;
    int64_t n, cap;
};

pq_status pq_chunker_open(const char *path, const pq_fasta_opts *fo, int64_t chunk_residues,
                          int64_t max_records, pq_chunker **cp)
{
    pq_chunker *c = calloc(1, sizeof *c);
    *cp = c;
    if (!c) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    c->chunk_residues = chunk_residues > 0 ? chunk_residues : 1;
    c->max_records = max_records;
    return pq_fasta_open(path, fo, &c->f);
}

static void drop(pq_chunker *c)
{
    for (int64_t i = 0; i < c->n; i++) pq_fasta_record_free(&c->recs[i]);
    c->n = 0;
}

pq_status pq_chunker_next(pq_chunker *c, bool keep, pq_chunk *ch, bool *got)
{
    drop(c);
    *got = false;
    int64_t residues = 0, n = 0, first = -1;
    while (residues < c->chunk_residues && !(c->max_records && c->n_read == c->max_records)) {
        pq_fasta_record r = {0};
        bool have;
        pq_status st = pq_fasta_next(c->f, &r, &have);
        if (st != PQ_OK) return st;
        if (!have) break;
        if (first < 0) first = r.index;
        c->n_read++;
        n++;
        residues += r.n_ids - 2;
        if (!keep) {
            pq_fasta_record_free(&r);
            continue;
        }
        if (c->n == c->cap) {
            int64_t cap = c->cap ? 2 * c->cap : 64;
            pq_fasta_record *nr = realloc(c->recs, (size_t)cap * sizeof *nr);
            if (!nr) {
                pq_fasta_record_free(&r);
                return pq_err(PQ_ERR_RESOURCE, "out of memory reading a chunk of sequences");
            }
            c->recs = nr;
            c->cap = cap;
        }
        c->recs[c->n++] = r;
    }
    if (!n) return PQ_OK;
    *ch = (pq_chunk){.recs = keep ? c->recs : NULL, .n = n, .index = c->next_index++, .first = first,
                     .residues = residues};
    *got = true;
    return PQ_OK;
}

int64_t pq_chunker_n_skipped(const pq_chunker *c)
{
    return c->f ? pq_fasta_n_skipped(c->f) : 0;
}

void pq_chunker_close(pq_chunker *c)
{
    if (!c) return;
    drop(c);
    free(c->recs);
    pq_fasta_close(c->f);
    free(c);
}
