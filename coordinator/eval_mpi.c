/* SPDX-License-Identifier: Apache-2.0 */
/* eval_mpi.c - the comparison of `proteus evaluate` over the ranks
 * (eval_mpi.h). */
#include "coordinator/eval_mpi.h"

#include <string.h>

#include "base/pq_cpu.h"
#include "coordinator/infer_mpi.h"
#include "worker/sync.h"

static pq_status run_chunk(void *user, const pq_chunk *ch, pq_buf *out)
{
    return pq_eval_run_chunk(user, ch->recs, ch->n, out);
}

static pq_status mpi_ok(int rc, const char *what)
{
    return rc == MPI_SUCCESS ? PQ_OK : pq_err(PQ_ERR_MPI, "%s failed", what);
}

/* Rank 0: one chunk's records from the journal (blocks come in order). */
static pq_status add_block(void *user, int64_t id, const void *data, size_t n)
{
    (void)id;
    return pq_eval_report_add(user, data, n);
}

/* The ranks' own figures into rep on rank 0: largest times and RSS,
 * summed CPU time, forwards, threads and peaks. */
static pq_status reduce_local(MPI_Comm comm, int rank, const pq_eval_run *run, pq_eval_util_probe *u,
                              pq_eval_report *rep, int *threads)
{
    pq_eval_report loc;
    memset(&loc, 0, sizeof loc);
    pq_eval_run_local(run, &loc);
    int t = pq_eval_run_threads(run);
    double mx[5] = {loc.ref.seconds, loc.q.seconds, loc.ref.rss_load_mib, loc.q.rss_load_mib, loc.peak_rss_mib};
    double sm[4] = {loc.q.cpu_seconds, u->peak_gops, (double)loc.ref.n_forwards, t > 0 ? t : pq_cpu_count()};
    double mx_all[5], sm_all[4];
    pq_status st = mpi_ok(MPI_Reduce(mx, mx_all, 5, MPI_DOUBLE, MPI_MAX, 0, comm), "MPI_Reduce(timings)");
    if (st == PQ_OK) st = mpi_ok(MPI_Reduce(sm, sm_all, 4, MPI_DOUBLE, MPI_SUM, 0, comm), "MPI_Reduce(timings)");
    if (st != PQ_OK || rank != 0) return st;
    pq_eval_side *side[2] = {&rep->ref, &rep->q}, *ls[2] = {&loc.ref, &loc.q};
    for (int k = 0; k < 2; k++) {
        side[k]->seconds = mx_all[k];
        side[k]->rss_load_mib = mx_all[2 + k];
        side[k]->n_forwards = (int64_t)sm_all[2];
        side[k]->file_bytes = ls[k]->file_bytes;
        side[k]->weight_bytes = ls[k]->weight_bytes;
        side[k]->linear_weight_bytes = ls[k]->linear_weight_bytes;
    }
    rep->peak_rss_mib = mx_all[4];
    rep->q.cpu_seconds = sm_all[0];
    u->peak_gops = sm_all[1];
    *threads = (int)sm_all[3];
    return PQ_OK;
}

pq_status pq_eval_mpi_compare(MPI_Comm comm, const pq_eval_compare_opts *o, const char *scratch,
                              const char *header, pq_eval_report *rep)
{
    int rank, N;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &N);
    memset(rep, 0, sizeof *rep);
    pq_eval_run *run = NULL;
    pq_journal *j = NULL;
    pq_eval_util_probe u;
    int64_t resumed = 0;
    int threads = 0;
    pq_status st = pq_eval_run_open(o, &run);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto done;
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = o->max_length;
    pq_infer_run ir = {.fasta = o->fasta, .fo = fo,
                       .chunk_residues = o->chunk_residues > 0 ? o->chunk_residues : PQ_EVAL_CHUNK_RESIDUES,
                       .max_records = o->max_seqs, .out = scratch, .header = header, .discard = true,
                       .quiet = true};
    if ((st = pq_infer_mpi_run(comm, &ir, run_chunk, run, &j, &resumed)) != PQ_OK) goto done;
    /* the kernel peak on every rank at once: the ranks' cores are shared as in the run */
    if ((st = mpi_ok(MPI_Barrier(comm), "MPI_Barrier(probe)")) != PQ_OK) goto done;
    st = pq_eval_run_probe(run, &u);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto done;
    if (rank == 0) st = pq_eval_report_init(rep, pq_eval_run_num_layers(run));
    if (st == PQ_OK && rank == 0) st = pq_journal_each_block(j, add_block, rep);
    if ((st = pq_sync_agree(comm, st)) != PQ_OK) goto done;
    if ((st = reduce_local(comm, rank, run, &u, rep, &threads)) != PQ_OK) goto done;
    if (rank == 0) {
        rep->n_ranks = N;
        pq_eval_report_finish(rep, &u, threads);
    }
done:
    pq_infer_mpi_end(j, st, false);
    pq_eval_run_free(run);
    return st;
}
