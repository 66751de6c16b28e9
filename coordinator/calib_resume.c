/* SPDX-License-Identifier: Apache-2.0 */
/* calib_resume.c - journaled, resumable calibration over MPI ranks
 * (calib_resume.h). */
#include "coordinator/calib_resume.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/pq_fault.h"
#include "calib/calib_journal.h"
#include "coordinator/calib_mpi.h"
#include "format/st_hash.h"
#include "worker/stop.h"
#include "worker/sync.h"

enum { TAG_SIZE = 0x5143, TAG_IMAGE };

static pq_status mpi_ok(int rc, const char *what)
{
    return rc == MPI_SUCCESS ? PQ_OK : pq_err(PQ_ERR_MPI, "%s failed (MPI error %d)", what, rc);
}

void pq_calib_resume_end(pq_journal *jr, pq_status st)
{
    bool passing = st == PQ_ERR_INTERRUPTED || st == PQ_ERR_MPI || st == PQ_ERR_IO || st == PQ_ERR_RESOURCE;
    if (pq_journal_n_done(jr) && passing) pq_journal_close(jr);
    else pq_journal_remove(jr);
}

/* Rank 0: open (lock) the journal of this run. */
static pq_status open_journal(const char *model, const char *data, const pq_calib_data_opts *o,
                              const pq_calib_resume_opts *r, const pq_calib *c, int64_t n, int64_t skipped,
                              int n_blocks, char model_sha[65], pq_journal **jr)
{
    char data_sha[65];
    pq_status st = pq_calib_model_sha256(model, model_sha);
    if (!st) st = pq_sha256_file(data, data_sha);
    if (st) return st;
    char *head = pq_calib_journal_header(model_sha, c, data_sha, o->max_seqs, o->max_length, o->ops.name, n,
                                         skipped, r->block_seqs, r->extra);
    if (!head) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    st = pq_journal_open_blocks(r->out, r->resume, head, n_blocks, jr);
    free(head);
    return st;
}

/* Statistics of block b (records [b * B, min(n, (b + 1) * B))) as an
 * image (owned *img). */
static pq_status run_block(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n, int64_t B, int64_t b,
                           const pq_calib *shape, int64_t batch_tokens, uint8_t **img, size_t *bytes)
{
    pq_calib *blk = NULL;
    int64_t first = b * B, cnt = n - first < B ? n - first : B;
    pq_status st = pq_calib_create(shape->num_layers, shape->embed_dim, shape->ffn_dim, &blk);
    if (!st) st = pq_calib_collect(m, recs + first, cnt, 0, 1, batch_tokens, blk);
    if (!st) st = pq_calib_image(blk, img, bytes);
    if (!st && *bytes > INT_MAX) st = pq_err(PQ_ERR_CONFIG, "the statistics of one block (%zu bytes) do not fit one "
                                             "MPI message: lower --journal-block", *bytes);
    pq_calib_free(blk);
    return st;
}

/* One round: rank k runs pending[round * N + k] (if any); rank 0 takes each
 * block's image in block order, records it and merges it into total. A
 * rank that failed sends size 0; its status comes with the agreement. */
static pq_status round_trip(MPI_Comm comm, int rank, int n_ranks, const int64_t *mine, int64_t n_mine,
                            pq_status local, uint8_t *img, size_t bytes, pq_journal *jr, pq_calib *total)
{
    pq_status st = local;
    if (rank != 0) {
        if (rank >= n_mine) return st;
        uint64_t sz = st ? 0 : bytes;
        pq_status m = mpi_ok(MPI_Send(&sz, 1, MPI_UINT64_T, 0, TAG_SIZE, comm), "MPI_Send(block size)");
        if (!m && sz) m = mpi_ok(MPI_Send(img, (int)sz, MPI_BYTE, 0, TAG_IMAGE, comm), "MPI_Send(block)");
        return st ? st : m;
    }
    uint8_t *buf = NULL;
    for (int k = 0; k < n_ranks; k++) {
        if (k >= n_mine) break; /* mine[k]: the block rank k ran this round */
        const uint8_t *data = img;
        uint64_t sz = local ? 0 : bytes;
        if (k > 0) {
            pq_status m = mpi_ok(MPI_Recv(&sz, 1, MPI_UINT64_T, k, TAG_SIZE, comm, MPI_STATUS_IGNORE),
                                 "MPI_Recv(block size)");
            if (!m && sz) {
                uint8_t *nb = realloc(buf, sz);
                if (!nb) m = pq_err(PQ_ERR_RESOURCE, "out of memory for a block of statistics");
                else buf = nb;
                if (!m) m = mpi_ok(MPI_Recv(buf, (int)sz, MPI_BYTE, k, TAG_IMAGE, comm, MPI_STATUS_IGNORE),
                                   "MPI_Recv(block)");
            }
            if (m) {
                if (!st) st = m;
                break;
            }
            data = buf;
        }
        if (!sz || st) continue;
        char what[64];
        snprintf(what, sizeof what, "block %lld", (long long)mine[k]);
        st = pq_journal_add_block(jr, mine[k], data, sz);
        if (!st) st = pq_calib_merge_image(total, data, sz, what);
        if (!st && pq_journal_n_done(jr) == pq_fault_value(PQ_FAULT_KILL_AFTER, -1)) raise(SIGKILL);
    }
    free(buf);
    return st;
}

pq_status pq_calib_resume_collect(MPI_Comm comm, const char *model, const char *data,
                                  const pq_calib_data_opts *o, int n_threads, const pq_calib_resume_opts *r,
                                  pq_calib **out, pq_journal **jro)
{
    int rank, n_ranks;
    pq_status st = PQ_OK;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n = 0, skipped = 0, *pending = NULL;
    pq_calib *c = NULL;
    pq_journal *jr = NULL;
    unsigned char *done = NULL;
    char model_sha[65] = "";
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    *out = NULL;
    *jro = NULL;
    pq_stop_catch(); /* SIGUSR1, SIGTERM: stop between blocks */
    if (rank == 0 && pq_fault_at(PQ_FAULT_KILL_AT, 1)) raise(SIGKILL);
    int64_t B = r->block_seqs > 0 ? r->block_seqs : PQ_CALIB_BLOCK_SEQS;
    pq_calib_resume_opts ro = *r;
    ro.block_seqs = B;
    if (n_threads <= 0) n_threads = pq_sync_threads_per_rank(comm, rank);
    pq_esm2_model_opts mo = {.layer_begin = 0, .layer_end = 0, .n_threads = n_threads, .ops = o->ops};
    st = pq_esm2_model_open(model, &mo, &m);
    if (!st) st = pq_calib_read_data(data, o, &recs, &n, &skipped);
    if (!st) {
        const pq_esm2_config *cfg = pq_esm2_model_config(m);
        st = pq_calib_create(cfg->num_layers, cfg->embed_dim, cfg->ffn_dim, &c);
    }
    int64_t n_blocks = (n + B - 1) / B;
    if (!st && n_blocks > INT_MAX)
        st = pq_err(PQ_ERR_CONFIG, "%lld journal blocks: raise --journal-block", (long long)n_blocks);
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    /* rank 0 holds OUT.journal's lock from now to the end: one writer */
    if (rank == 0) st = open_journal(model, data, o, &ro, c, n, skipped, (int)n_blocks, model_sha, &jr);
    if (rank == 0 && !st && pq_fault_at(PQ_FAULT_KILL_AT, 2)) raise(SIGKILL);
    if (!(done = calloc((size_t)n_blocks + 1, 1)) || !(pending = malloc(((size_t)n_blocks + 1) * sizeof *pending)))
        st = st ? st : pq_err(PQ_ERR_RESOURCE, "out of memory");
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    for (int64_t b = 0; rank == 0 && b < n_blocks; b++) done[b] = pq_journal_done(jr)[b];
    if ((st = mpi_ok(MPI_Bcast(done, (int)n_blocks, MPI_UNSIGNED_CHAR, 0, comm), "MPI_Bcast(blocks done)")))
        goto cleanup;
    /* rank 0: the recorded blocks first */
    if (rank == 0 && pq_journal_n_done(jr)) {
        PQ_LOG_INFO("resuming: %d of %lld blocks of %lld sequences from %s%s", pq_journal_n_done(jr),
                    (long long)n_blocks, (long long)B, pq_journal_path(jr),
                    pq_journal_n_bad(jr) ? " (records that failed their checksum are redone)" : "");
        for (int64_t b = 0; b < n_blocks && !st; b++) {
            if (!done[b]) continue;
            void *img = NULL;
            size_t bytes = 0;
            char what[300];
            snprintf(what, sizeof what, "%s, block %lld", pq_journal_path(jr), (long long)b);
            if (!(st = pq_journal_read_block(jr, b, &img, &bytes))) st = pq_calib_merge_image(c, img, bytes, what);
            free(img);
        }
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    int64_t n_pending = 0;
    for (int64_t b = 0; b < n_blocks; b++)
        if (!done[b]) pending[n_pending++] = b;
    /* the pending blocks dealt to the ranks in turn, one round at a time */
    bool ran_one = false;
    for (int64_t r0 = 0; r0 < n_pending; r0 += n_ranks) {
        int64_t n_round = n_pending - r0 < n_ranks ? n_pending - r0 : n_ranks;
        uint8_t *img = NULL;
        size_t bytes = 0;
        pq_status local = PQ_OK;
        if (rank < n_round) {
            if (pq_fault_at(PQ_FAULT_SLOW_RANK, rank)) sleep(2);
            local = run_block(m, recs, n, B, pending[r0 + rank], c, o->batch_tokens, &img, &bytes);
            if (!local && rank != 0 && !ran_one && pq_fault_at(PQ_FAULT_KILL_RANK, rank)) raise(SIGKILL);
            ran_one = true;
        }
        st = round_trip(comm, rank, n_ranks, pending + r0, n_round, local, img, bytes, jr, c);
        free(img);
        if (!st) st = pq_stop_check(); /* the journal is made durable as it is closed */
        if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    }
    if (rank == 0) {
        pq_calib_zero_sign(c);
        c->n_skipped = (uint64_t)skipped;
        memcpy(c->model_sha256, model_sha, sizeof model_sha);
        if (!(c->model_path = strdup(model))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        if (!st) st = pq_calib_add_dataset(c, data);
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    if (rank == 0) {
        *out = c;
        c = NULL;
        *jro = jr;
        jr = NULL;
    }
cleanup:
    if (jr) pq_calib_resume_end(jr, st);
    free(done);
    free(pending);
    pq_calib_free(c);
    pq_calib_records_free(recs, n);
    pq_esm2_model_free(m);
    return st;
}
