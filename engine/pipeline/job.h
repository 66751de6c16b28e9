/* SPDX-License-Identifier: Apache-2.0 */
/* job.h - one quantization job, split so that a single process and an MPI
 * run share every step: open + plan (all ranks), run units (any rank), and
 * the output's writer side (rank 0, output.c): float tensors, unit results,
 * metrics, commit.
 *
 * The job is opaque: its fields are written only here (job.c, output.c)
 * and by the unit runner through the calls below. */
#ifndef PQ_JOB_H
#define PQ_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "format/esm2.h"
#include "format/h5model.h"
#include "format/safetensors.h"
#include "format/st_hash.h"
#include "pipeline/config.h"
#include "pipeline/journal.h"
#include "pipeline/plan.h"
#include "pipeline/result.h"
#include "pipeline/stats.h"
#include "quant/gptq.h"
#include "quant/smooth.h"

typedef struct pq_job pq_job;

/* Open the checkpoint, recognise the architecture, apply the hardware target
 * and threads, and build the plan (every unit and chunk on rank 0). cfg is
 * borrowed and must outlive the job. Returns owned *out (pq_job_destroy). */
pq_status pq_job_open(pq_config *cfg, const char *model_path, int64_t unit_bytes, pq_job **out);
void pq_job_destroy(pq_job *j); /* aborts an uncommitted output; NULL is fine */

/* ---- what the job is ---- */
const pq_plan *pq_job_plan(const pq_job *j);
const pq_config *pq_job_config(const pq_job *j);
const pq_st_model *pq_job_model(const pq_job *j);
const pq_esm2_config *pq_job_arch(const pq_job *j); /* the recognised architecture */
const pq_ops *pq_job_ops(const pq_job *j);   /* the kernel context (hardware_target) */
int pq_job_threads(const pq_job *j);          /* threads for units and hashing (>= 1) */
const pq_job_stats *pq_job_stats_of(const pq_job *j);

/* Threads for this job's units and hashing (>= 1; an MPI run sets the
 * node's share per rank). */
void pq_job_set_threads(pq_job *j, int threads);

/* Seconds spent in phase ph so far; add s to it. */
double pq_job_phase(const pq_job *j, pq_phase ph);
void pq_job_phase_add(pq_job *j, pq_phase ph, double s);

/* SmoothQuant (quant/smooth.h): every rank, before the units, with the same
 * factors. Linear weights it names are read with their columns multiplied
 * by s (units and float tensors alike), LayerNorm tensors written divided
 * by s, and begin writes /smoothquant. sm is borrowed and must outlive the
 * job; NULL turns it off. */
void pq_job_set_smooth(pq_job *j, const pq_smooth *sm);

/* ---- running units (any rank) ---- */

/* Every rank, before the units: the units a resumed run does not run again
 * (done[plan->n_units], copied; the runner skips them, rank 0 puts them from
 * the journal). */
pq_status pq_job_set_done(pq_job *j, const bool *done);
bool pq_job_unit_done(const pq_job *j, int unit);

/* Rank 0 of a resumed run: done unit u's result from the journal into r
 * (owned buffers; GPTQ's next layer needs it). */
pq_status pq_job_journal_result(pq_job *j, const pq_unit *u, pq_unit_result *r);

/* Every rank, before the units: assign units and digest chunks to n_ranks
 * ranks (pq_plan_assign_ranks; same_node[r]: rank r writes its own codes,
 * NULL: none does) and gather the source digest chunk by chunk (the ranks'
 * leaves, pq_job_put_leaf) instead of hashing the whole source at
 * pq_job_begin_output. Deterministic: all ranks get the same plan. */
void pq_job_assign(pq_job *j, int n_ranks, const bool *same_node);

/* True when the digest is gathered from chunks (pq_job_assign ran). */
bool pq_job_hashes_chunks(const pq_job *j);

/* A source at least three quarters the size of the memory the process may
 * fill (pq_mem_limit_bytes: the machine's, or a Slurm job's cgroup limit;
 * it cannot stay in the page cache beside the output) is dropped from the page
 * cache a digest chunk at a time, once this process has hashed the chunk
 * and run every unit that reads from it: the kernel then evicts what is
 * over, not what was read ahead, and each byte is read from disk once.
 * pq_job_drop_plan counts each chunk's readers (after pq_job_assign; with
 * the digest hashed whole, or a smaller source, it does nothing);
 * pq_job_drop_item marks unit `item` (>= 0) or digest chunk -item - 1 read
 * (thread-safe). A chunk some reader of which runs elsewhere stays cached. */
void pq_job_drop_plan(pq_job *j);
void pq_job_drop_item(pq_job *j, int item);

/* Run one unit: read its rows, quantize them. *r is filled with owned
 * buffers (pq_unit_result_free). Thread-safe for distinct units. */
pq_status pq_job_run_unit(pq_job *j, const pq_unit *u, pq_unit_result *r);

/* Quantize the units of plan tensor `tensor` with GPTQ and factor f (borrowed,
 * kept until replaced; NULL: back to RTN) instead of RTN
 * (pipeline/gptq_run.h sets one per Linear, a layer at a time). */
pq_status pq_job_set_gptq(pq_job *j, int tensor, const pq_gptq_factor *f);

/* Start reading a unit's rows from disk ahead of time (call for the next
 * unit before running the current one). */
void pq_job_prefetch_unit(pq_job *j, const pq_unit *u);

/* The source checkpoint's tree digest (st_hash.h; the source_sha256_tree
 * attribute), all chunks hashed here by the job's threads. */
pq_status pq_job_hash_source(pq_job *j, char hex[65]);

/* Hash chunk `chunk` for `rank` into its place in the job's leaves, without
 * marking it known: thread-safe, for several chunks at once. The
 * PQ_FAULT_FAIL_HASH switch makes that rank's chunks fail (tests). */
pq_status pq_job_hash_chunk(pq_job *j, int rank, int64_t chunk);

/* The leaf of chunk `chunk` (PQ_HASH_LEAF_BYTES), and whether it is known. */
const uint8_t *pq_job_leaf(const pq_job *j, int64_t chunk);
bool pq_job_leaf_known(const pq_job *j, int64_t chunk);

/* Mark chunk `chunk`'s leaf known (hashed here by pq_job_hash_chunk). */
void pq_job_mark_leaf(pq_job *j, int64_t chunk);

/* Rank 0: record the leaf of `chunk` hashed by rank `src`. PQ_ERR_PROTO
 * when the chunk is out of range, not src's in the plan, or already known. */
pq_status pq_job_put_leaf(pq_job *j, int src, int64_t chunk, const uint8_t leaf[PQ_HASH_LEAF_BYTES]);

/* ---- the output (rank 0; output.c) ---- */

/* Called by pq_job_finish_output before the commit (the static scheme adds
 * act qparams and /calibration here). */
typedef pq_status (*pq_before_commit_fn)(void *user, pq_h5w *w, const pq_plan *p);
void pq_job_set_before_commit(pq_job *j, pq_before_commit_fn fn, void *user);

/* Rank 0, before begin: the resume journal (journal.h; borrowed). begin
 * then puts every unit it holds into the new OUT.partial, put appends each
 * new unit to it, and every digest leaf known on rank 0 is recorded in it or
 * checked against it (a differing one fails put and finish). */
void pq_job_set_journal(pq_job *j, pq_journal *jr);

/* After a failure: keep OUT.partial when the job is destroyed (its journal
 * stays for a --resume and names the codes in it); false (the default):
 * remove it. NULL is fine. */
void pq_job_keep_partial(pq_job *j, bool keep);

/* Progress events of the output's side (after each unit put, and done). */
void pq_job_set_progress(pq_job *j, pq_progress_fn fn, void *user);

/* begin: create OUT.partial, write float tensors and create the quantized
 * datasets. put: write a unit's rows (any order); r->codes NULL when the
 * rank that ran the unit wrote its codes into OUT.partial itself
 * (pq_job_codes_offsets). finish: metrics, provenance, commit (rename). */
pq_status pq_job_begin_output(pq_job *j, const char *out_path, int num_ranks, const char *command_line);
pq_status pq_job_put_result(pq_job *j, const pq_unit *u, const pq_unit_result *r);

/* After begin: OUT.partial, and the file offset of every plan tensor's
 * codes in it (0 for tensors that are not quantized), into
 * offsets[plan->n_tensors]. */
const char *pq_job_partial_path(const pq_job *j);
pq_status pq_job_codes_offsets(pq_job *j, uint64_t *offsets);

/* Input bytes (unit cost) of the results put so far. */
double pq_job_bytes_done(const pq_job *j);

/* Push the output's written pages to disk in the background. */
void pq_job_start_writeback(pq_job *j);

/* Rank 0, between units: write the metrics of the next quantized tensor in
 * plan order if all its rows are in (*did then true), so that less is left
 * for the commit. Plan order, whatever the timing, keeps the file's layout
 * the same for any number of ranks. */
pq_status pq_job_end_next(pq_job *j, bool *did);

/* Tensors whose metrics are written (plan order). */
int pq_job_tensors_ended(const pq_job *j);

/* The quantize phase's wall time (the runner sets it). */
void pq_job_set_quantize_seconds(pq_job *j, double s);

pq_status pq_job_finish_output(pq_job *j);

#endif
