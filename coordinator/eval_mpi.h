/* SPDX-License-Identifier: Apache-2.0 */
/* eval_mpi.h - `proteus evaluate` over MPI ranks, rank 0 included. The
 * FASTA's chunks are shared out as embed and score share them
 * (coordinator/infer_mpi.h: chunk c to rank c mod N, results to rank 0's
 * journal in chunk order); each rank runs both models on its chunks
 * (eval/compare.h) and rank 0 adds the per-sequence records in input
 * order, so every number of the report but the timings (masked-pass
 * seconds, tokens/s, RSS, utilization) is the same for any number of ranks
 * and threads. */
#ifndef PQ_EVAL_MPI_H
#define PQ_EVAL_MPI_H

#include <mpi.h>

#include "eval/compare.h"

/* Collective. On rank 0 *out is the whole report (pq_eval_report_free it,
 * also after a failure); elsewhere it stays empty. scratch: rank 0's
 * journal is SCRATCH.journal, for the chunks' records (removed whatever
 * happens); header: the run's identity, "key value" lines. Timings over the ranks: seconds and RSS the largest of
 * any rank, CPU time, forwards and the kernel peak (probed on every rank at
 * once) summed. Errors as pq_eval_compare, on every rank. */
pq_status pq_eval_mpi_compare(MPI_Comm comm, const pq_eval_compare_opts *o, const char *scratch,
                              const char *header, pq_eval_report *out);

#endif
