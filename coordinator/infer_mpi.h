/* SPDX-License-Identifier: Apache-2.0 */
/* infer_mpi.h - distributed inference (embed, score) over MPI ranks, rank 0
 * included. Every rank streams the FASTA (never loading it whole) as chunks
 * of consecutive records of about chunk_residues residues
 * (eval/infer_chunk.h); chunk c after the n_done already in the journal goes
 * to rank (c - n_done) mod N. Each rank runs its chunks, in batches, and
 * sends each chunk's results to rank 0, which appends them to the journal in
 * chunk order (eval/infer_journal.h); a rank runs its next chunk while
 * the previous one is on its way, and sends it only once rank 0 took the
 * previous one (synchronous sends), so a rank holds at most two chunks'
 * results and rank 0 receives only the chunk it writes next. The chunks and
 * each record's bytes depend on the data only, so the journal, and the
 * output assembled from it, are the same bytes for any number of ranks and
 * threads. */
#ifndef PQ_INFER_MPI_H
#define PQ_INFER_MPI_H

#include <mpi.h>
#include <stdbool.h>

#include "eval/infer_buf.h"
#include "eval/infer_chunk.h"
#include "eval/infer_journal.h"

/* One chunk's results appended to out (empty on entry). */
typedef pq_status (*pq_infer_chunk_fn)(void *user, const pq_chunk *ch, pq_buf *out);

typedef struct pq_infer_run {
    const char *fasta;
    pq_fasta_opts fo;
    int64_t chunk_residues;  /* residues per chunk */
    int64_t max_records;     /* 0: all */
    const char *journal;     /* rank 0's journal path */
    const char *fingerprint; /* the options that decide the results */
    bool resume;             /* keep the journal's whole chunks */
    bool quiet;              /* no progress */
    const char *monitor;     /* rank 0's ZeroMQ progress endpoint, or NULL */
} pq_infer_run;

/* Collective. Runs every chunk not yet in the journal; on rank 0 *j is the
 * journal holding all of them (the caller assembles the output from it and
 * closes it), NULL elsewhere; *n_resumed: the chunks taken from it. A
 * failure while chunks are in flight (a rank's forward, the journal's disk)
 * is printed and ends the job through MPI_Abort with its exit status; the
 * journal keeps every chunk written before, for --resume. Input errors,
 * met by every rank at the same chunk, return on every rank (PQ_ERR_FORMAT
 * for an input without a usable record), and a journal they leave empty is
 * removed. */
pq_status pq_infer_mpi_run(MPI_Comm comm, const pq_infer_run *r, pq_infer_chunk_fn fn, void *user,
                           pq_infer_journal **j, int64_t *n_resumed);

#endif
