/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_run.h - GPTQ over a whole job, layer after layer, on every rank of a
 * run (or on one process): layer l's Linears are quantized from the
 * Hessians of their inputs given layers 0..l-1 already quantized, as the
 * paper's reference does.
 *
 * Per layer, on every rank: the layer (fp32, from the checkpoint) runs on
 * the rank's share of the calibration sequences (calib_run.h's sharding),
 * an observer adding each sequence's inputs of the four input sites (q/k/v
 * share one, out, fc1, fc2) to exact Hessian accumulators (quant/hessian.h);
 * the accumulators are summed over the ranks (exact, so any split gives the
 * same H); each Hessian is factored by one rank (site k by rank k mod N)
 * and its factor sent to the others (quant/gptq.h); the layer's
 * units (row blocks of its Linears) are shared out over the ranks and run
 * through the one unit runner (runner.h) with GPTQ instead of RTN; every
 * rank receives every unit's result; rank 0 puts them into the output; and
 * every rank runs the layer again with the dequantized weights to make the
 * next layer's inputs. A rank holds one layer, its four Hessians and its
 * share of the activations, never the model. Tensors other than the
 * layers' Linears (--include) are rounded (RTN) at the end the same way.
 * The bytes written do not depend on the rank or thread count. */
#ifndef PQ_GPTQ_RUN_H
#define PQ_GPTQ_RUN_H

#include "base/pq_err.h"
#include "calib/calib_run.h"
#include "pipeline/job.h"
#include "quant/hessian.h"

/* What the ranks do together (one process: rank 0 of 1, each a no-op). */
typedef struct pq_gptq_comm {
    int rank, n_ranks;
    /* every rank's h becomes the exact sum of all ranks' */
    pq_status (*allreduce)(void *user, pq_hessian *h);
    /* unit result r (layout l) of rank `owner` reaches every rank: the
     * others' r are allocated by the caller (codes included) */
    pq_status (*bcast)(void *user, int owner, pq_unit_result *r, const pq_unit_layout *l);
    /* n bytes at buf of rank `owner` reach every rank's buf */
    pq_status (*bcast_bytes)(void *user, int owner, void *buf, size_t n);
    /* the status of the lowest failing rank, on every rank (its detail too) */
    pq_status (*agree)(void *user, pq_status local);
    void *user;
} pq_gptq_comm;

/* The one-process comm. */
extern const pq_gptq_comm pq_gptq_comm_local;

typedef struct pq_gptq_run_opts {
    const char *calib_data;     /* FASTA; NULL: the bundled sample (its first 128) */
    pq_calib_data_opts data;    /* max_seqs, max_length, batch_tokens; ops from the job */
} pq_gptq_run_opts;

/* Quantize every unit of j (opened; on rank 0 its output begun) as above,
 * the job's configuration giving the GPTQ options (method gptq). On rank 0
 * every result is put into the output; the caller then finishes it.
 * Collective over c. Errors: the calibration data's (PQ_ERR_CALIBRATION,
 * PQ_ERR_IO), a Hessian's or a solve's naming the site or Linear, and the
 * comm's; every rank returns the same status. */
pq_status pq_gptq_run(pq_job *j, const pq_gptq_run_opts *o, const pq_gptq_comm *c);

#endif
