/* SPDX-License-Identifier: Apache-2.0 */
/* infer_mpi.h - distributed inference (embed, score) over MPI ranks, rank 0
 * included. Every rank streams the FASTA (never loading it whole) as chunks
 * of consecutive records of about chunk_residues residues
 * (eval/infer_chunk.h); the chunks not yet in the journal go to the ranks in
 * turn (the k-th of them to rank k mod N). Each rank runs its chunks, in
 * batches, and sends each chunk's results to rank 0, which appends them to
 * OUT.journal (pipeline/journal.h: one block per chunk, the block id the
 * chunk's index) as they come. Rank 0 runs its own chunks without waiting
 * for the others' and takes theirs between its chunks; a rank runs its next
 * chunk while up to two earlier ones are on their way (synchronous sends),
 * so it holds at most three chunks' results. The chunks and each record's
 * bytes depend on the data only, and the output is assembled from the
 * journal in chunk order, so it is the same bytes for any number of ranks
 * and threads, before and after a --resume with another rank count.
 *
 * SIGUSR1 and SIGTERM (worker/stop.h) stop the run between chunks: the
 * ranks agree on the signal four rounds of N chunks after it came (a rank
 * waits for another only when it is four rounds ahead), rank 0 has then
 * written every chunk before the stopping point, and every rank returns
 * PQ_ERR_INTERRUPTED (exit status 14). */
#ifndef PQ_INFER_MPI_H
#define PQ_INFER_MPI_H

#include <mpi.h>
#include <stdbool.h>

#include "eval/infer_buf.h"
#include "eval/infer_chunk.h"
#include "pipeline/journal.h"

/* One chunk's results appended to out (empty on entry). */
typedef pq_status (*pq_infer_chunk_fn)(void *user, const pq_chunk *ch, pq_buf *out);

typedef struct pq_infer_run {
    const char *fasta;
    pq_fasta_opts fo;
    int64_t chunk_residues;  /* residues per chunk */
    int64_t max_records;     /* 0: all */
    const char *out;         /* rank 0's journal is OUT.journal */
    const char *header;      /* its header text: the run's identity, "key value" lines
                                (cli/infer.h's pq_cli_infer_header); NULL: out of memory */
    bool resume;             /* go on from the journal's chunks */
    bool discard;            /* a journal no --resume can name: removed whatever happens */
    bool quiet;              /* no progress */
    const char *monitor;     /* rank 0's ZeroMQ progress endpoint, or NULL */
} pq_infer_run;

/* Collective. Opens (locks) OUT.journal on rank 0 (pq_journal_open_blocks:
 * the refusals of another run's journal, of one left without --resume, of
 * a second writer) and runs every chunk not yet in it; on rank 0 *j is the
 * journal holding all of them, blocks 0..n-1 (the caller assembles the
 * output from it, pq_journal_each_block, then ends it with
 * pq_infer_mpi_end), NULL elsewhere; *n_resumed: the chunks taken from it.
 * A failure while chunks are in flight (a rank's forward, the journal's
 * disk) is printed and ends the job through MPI_Abort with its exit status;
 * the journal keeps every chunk written before, for --resume. Input errors,
 * met by every rank at the same chunk, and a stop by signal
 * (PQ_ERR_INTERRUPTED) return on every rank (PQ_ERR_FORMAT for an input
 * without a usable record), the journal ended as pq_infer_mpi_end does
 * (keep: !r->discard). */
pq_status pq_infer_mpi_run(MPI_Comm comm, const pq_infer_run *r, pq_infer_chunk_fn fn, void *user,
                           pq_journal **j, int64_t *n_resumed);

/* End rank 0's journal (takes j; NULL is fine) after the run ended with st:
 * PQ_OK (the output is in place) removes it; a failure keeps it when it
 * holds a chunk and the cause may pass (a signal, a lost rank, an I/O or
 * memory error: --resume goes on from it), and removes it after one the
 * same command would meet again. keep false: remove it whatever st is (a
 * journal no --resume can name). */
void pq_infer_mpi_end(pq_journal *j, pq_status st, bool keep);

#endif
