/* SPDX-License-Identifier: Apache-2.0 */
/* calib_resume.h - `calibrate` with a resume journal: the calibration
 * sequences in fixed blocks (calib_journal.h), the blocks dealt to the
 * ranks in turn, each finished block's statistics sent to rank 0, recorded
 * in OUT.journal and merged. After any stop the same command with --resume
 * merges the recorded blocks and runs only the others, on any number of
 * ranks; the statistics are the same bits as one uninterrupted run.
 * SIGUSR1 / SIGTERM (stop.h): every rank finishes its block, rank 0 records
 * the round, and all return PQ_ERR_INTERRUPTED. */
#ifndef PQ_CALIB_RESUME_H
#define PQ_CALIB_RESUME_H

#include <mpi.h>
#include <stdbool.h>

#include "base/pq_err.h"
#include "calib/calib_run.h"
#include "pipeline/journal.h"

typedef struct pq_calib_resume_opts {
    const char *out;       /* the store the run writes: its journal is out + ".journal" */
    bool resume;           /* go on from an existing journal */
    int64_t block_seqs;    /* sequences per block (0 = PQ_CALIB_BLOCK_SEQS) */
    const char *extra;     /* other inputs as journal header lines ("key value\n"), or NULL */
} pq_calib_resume_opts;

/* Collective: like pq_calib_mpi_collect without pipeline stages, through
 * the journal. Rank 0 gets the statistics with provenance in *out and the
 * open (locked) journal in *jr: the caller removes it (pq_journal_remove)
 * once the store is in place, or ends it with pq_calib_resume_end after a
 * failure. Others get NULL in both. A journal of another run is refused
 * (PQ_ERR_CONFIG naming the first difference), an existing one without
 * resume too, and a locked one (another run on the same --out) is
 * PQ_ERR_IO. */
pq_status pq_calib_resume_collect(MPI_Comm comm, const char *model, const char *data,
                                  const pq_calib_data_opts *o, int n_threads, const pq_calib_resume_opts *r,
                                  pq_calib **out, pq_journal **jr);

/* After a failure: the journal stays for a --resume when it holds blocks
 * and the cause may pass (a signal, a rank lost, I/O, memory); otherwise it
 * goes. NULL is fine. */
void pq_calib_resume_end(pq_journal *jr, pq_status st);

#endif
