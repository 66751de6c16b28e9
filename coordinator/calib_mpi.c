/* SPDX-License-Identifier: Apache-2.0 */
/* calib_mpi.c - sharded (data- and pipeline-parallel) collection and exact
 * reduction of calibration statistics over MPI ranks (calib_mpi.h). */
#include "coordinator/calib_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"
#include "format/calib_h5.h"
#include "format/esm2.h"
#include "model/esm2_model.h"
#include "format/h5model.h"
#include "format/safetensors.h"
#include "format/st_hash.h"
#include "worker/sync.h"

static pq_status mpi_ok(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return PQ_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return pq_err(PQ_ERR_MPI, "%s failed: %s", what, msg);
}

pq_status pq_calib_mpi_agree(MPI_Comm comm, pq_status local)
{
    return pq_sync_agree(comm, local);
}

/* Reduce n values in place onto rank 0. */
static pq_status reduce(MPI_Comm comm, int rank, void *buf, int n, MPI_Datatype t, MPI_Op op,
                        const char *what)
{
    return mpi_ok(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : buf, rank == 0 ? buf : NULL, n, t, op, 0, comm),
                  what);
}

pq_status pq_calib_mpi_reduce(MPI_Comm comm, pq_calib *c)
{
    int rank, n_ranks;
    pq_status st = PQ_OK;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    if ((st = pq_calib_flush(c)) || n_ranks == 1) return st;
    int S = c->n_sites;
    float *mn = malloc((size_t)S * sizeof *mn), *mx = malloc((size_t)S * sizeof *mx);
    uint64_t *cnt = malloc((size_t)S * 5 * sizeof *cnt);
    unsigned char *present = malloc((size_t)S * PQ_HIST_NBLOCKS);
    uint64_t *buf = NULL;
    if (!mn || !mx || !cnt || !present) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    for (int i = 0; i < S; i++) {
        pq_calib_site *s = &c->sites[i];
        mn[i] = s->min;
        mx[i] = s->max;
        uint64_t v[5] = {s->count, s->n_nan, s->n_posinf, s->n_neginf, s->n_tokens};
        memcpy(cnt + 5 * i, v, sizeof v);
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) present[(size_t)i * PQ_HIST_NBLOCKS + b] = s->blocks[b] != NULL;
    }
    uint64_t seqs = c->n_sequences;
    if ((st = reduce(comm, rank, mn, S, MPI_FLOAT, MPI_MIN, "MPI_Reduce(min)")) ||
        (st = reduce(comm, rank, mx, S, MPI_FLOAT, MPI_MAX, "MPI_Reduce(max)")) ||
        (st = reduce(comm, rank, cnt, 5 * S, MPI_UINT64_T, MPI_SUM, "MPI_Reduce(counts)")) ||
        (st = reduce(comm, rank, &seqs, 1, MPI_UINT64_T, MPI_SUM, "MPI_Reduce(sequences)")))
        goto cleanup;
    /* the union of the histogram blocks any rank allocated, known to all */
    if ((st = mpi_ok(MPI_Allreduce(MPI_IN_PLACE, present, S * PQ_HIST_NBLOCKS, MPI_UNSIGNED_CHAR,
                                   MPI_BOR, comm), "MPI_Allreduce(blocks)")))
        goto cleanup;
    for (int i = 0; i < S; i++) {
        pq_calib_site *s = &c->sites[i];
        if ((st = reduce(comm, rank, s->chan_absmax, (int)s->dim, MPI_FLOAT, MPI_MAX,
                         "MPI_Reduce(channel absmax)")))
            goto cleanup;
        int nb = 0;
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) nb += present[(size_t)i * PQ_HIST_NBLOCKS + b];
        if (!nb) continue;
        uint64_t *nbuf = realloc(buf, (size_t)nb * PQ_HIST_BLOCK * sizeof *buf);
        if (!nbuf) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
        buf = nbuf;
        int k = 0;
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) {
            if (!present[(size_t)i * PQ_HIST_NBLOCKS + b]) continue;
            uint64_t *dst = buf + (size_t)k++ * PQ_HIST_BLOCK;
            if (s->blocks[b]) memcpy(dst, s->blocks[b], PQ_HIST_BLOCK * sizeof *dst);
            else memset(dst, 0, PQ_HIST_BLOCK * sizeof *dst);
        }
        if ((st = reduce(comm, rank, buf, nb * PQ_HIST_BLOCK, MPI_UINT64_T, MPI_SUM,
                         "MPI_Reduce(histogram)")))
            goto cleanup;
        if (rank != 0) continue;
        k = 0;
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) {
            if (!present[(size_t)i * PQ_HIST_NBLOCKS + b]) continue;
            if (!s->blocks[b] && !(s->blocks[b] = malloc(PQ_HIST_BLOCK * sizeof(uint64_t)))) {
                st = pq_err(PQ_ERR_RESOURCE, "out of memory");
                goto cleanup;
            }
            memcpy(s->blocks[b], buf + (size_t)k++ * PQ_HIST_BLOCK, PQ_HIST_BLOCK * sizeof(uint64_t));
        }
    }
    if (rank == 0) {
        for (int i = 0; i < S; i++) {
            pq_calib_site *s = &c->sites[i];
            /* MPI_MIN/MAX may return either zero: store +0 as a single rank does */
            s->min = mn[i] == 0.0f ? 0.0f : mn[i];
            s->max = mx[i] == 0.0f ? 0.0f : mx[i];
            s->count = cnt[5 * i];
            s->n_nan = cnt[5 * i + 1];
            s->n_posinf = cnt[5 * i + 2];
            s->n_neginf = cnt[5 * i + 3];
            s->n_tokens = cnt[5 * i + 4];
        }
        c->n_sequences = seqs;
    }
cleanup:
    free(mn); free(mx); free(cnt); free(present); free(buf);
    return st;
}

void pq_calib_stage_layers(int num_layers, int n_stages, int stage, int *layer_begin, int *layer_end)
{
    *layer_begin = (int)((int64_t)stage * num_layers / n_stages);
    *layer_end = (int)((int64_t)(stage + 1) * num_layers / n_stages);
}

/* Layer count of a model file without loading its weights. */
static pq_status model_num_layers(const char *path, int *L)
{
    pq_status st;
    if (pq_path_is_h5(path)) {
        pq_h5r *r = NULL;
        if (!(st = pq_h5r_open(path, &r))) *L = pq_h5r_meta(r)->cfg.num_layers;
        pq_h5r_close(r);
        return st;
    }
    pq_st_model *sm = NULL;
    pq_esm2_config cfg;
    if (!(st = pq_st_open(path, &sm)) && !(st = pq_esm2_detect(sm, &cfg))) *L = cfg.num_layers;
    pq_st_close(sm);
    return st;
}

/* One micro-batch on the wire between neighbouring stages of a replica, as
 * three messages: meta (int64: n_seqs, n_tokens, first record index, then
 * the n_seqs + 1 token offsets), the token ids and the [n_tokens, D]
 * activations. n_seqs == 0 ends the stream (ids and activations empty), so
 * receives posted ahead always match. */
enum { TAG_META = 0x5043, TAG_IDS, TAG_X };

typedef struct pipe_msg {
    int64_t *meta;
    int32_t *ids;
    float *x;
    MPI_Request req[3];
} pipe_msg;

static void msg_init(pipe_msg *b)
{
    memset(b, 0, sizeof *b);
    for (int i = 0; i < 3; i++) b->req[i] = MPI_REQUEST_NULL;
}

/* Complete b's requests (NULL ones are fine); free is for sends, whose
 * buffers the message owns. */
static pq_status msg_wait(pipe_msg *b, bool free_bufs)
{
    pq_status st = mpi_ok(MPI_Waitall(3, b->req, MPI_STATUSES_IGNORE), "MPI_Waitall(activations)");
    if (free_bufs) {
        free(b->meta);
        free(b->ids);
        free(b->x);
        b->meta = NULL;
        b->ids = NULL;
        b->x = NULL;
    }
    return st;
}

/* Send a micro-batch to rank dst without waiting: the previous send of b
 * completes first, then b takes ownership of meta, ids and x. */
static pq_status send_batch(MPI_Comm comm, int dst, pipe_msg *b, int64_t *meta, int32_t *ids,
                            float *x, int64_t D)
{
    pq_status st = msg_wait(b, true);
    b->meta = meta;
    b->ids = ids;
    b->x = x;
    if (st) return st;
    int64_t k = meta[0], T = meta[1];
    int rc = MPI_Isend(meta, (int)(k ? k + 4 : 3), MPI_INT64_T, dst, TAG_META, comm, &b->req[0]);
    if (rc == MPI_SUCCESS) rc = MPI_Isend(ids, (int)T, MPI_INT32_T, dst, TAG_IDS, comm, &b->req[1]);
    if (rc == MPI_SUCCESS) rc = MPI_Isend(x, (int)(T * D), MPI_FLOAT, dst, TAG_X, comm, &b->req[2]);
    return mpi_ok(rc, "MPI_Isend(activations)");
}

static pq_status post_recv(MPI_Comm comm, int src, pipe_msg *b, int64_t cap_meta, int64_t cap_ids,
                           int64_t D)
{
    int rc = MPI_Irecv(b->meta, (int)cap_meta, MPI_INT64_T, src, TAG_META, comm, &b->req[0]);
    if (rc == MPI_SUCCESS) rc = MPI_Irecv(b->ids, (int)cap_ids, MPI_INT32_T, src, TAG_IDS, comm, &b->req[1]);
    if (rc == MPI_SUCCESS) rc = MPI_Irecv(b->x, (int)(cap_ids * D), MPI_FLOAT, src, TAG_X, comm, &b->req[2]);
    return mpi_ok(rc, "MPI_Irecv(activations)");
}

/* Forward one micro-batch through this stage with the observer armed; the
 * stage's output activations (owned) go to *x_out unless it is the last. */
static pq_status stage_forward(pq_esm2_model *m, const pq_fasta_record *recs, const int64_t *meta,
                               const int32_t *ids, const float *x_in, pq_calib *c, float **x_out)
{
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    pq_esm2_batch b = {.n_seqs = meta[0], .offsets = meta + 3, .ids = ids};
    pq_status st = pq_esm2_forward(m, &b, x_in, &out);
    if (!st && c->failed) st = pq_err(PQ_ERR_RESOURCE, "out of memory collecting statistics");
    if (st) {
        char why[512];
        int l0, l1;
        pq_esm2_model_stage(m, &l0, &l1);
        snprintf(why, sizeof why, "%s", pq_err_detail());
        if (b.n_seqs == 1)
            pq_err_replace(st, "calibration sequence '%s' (layers %d..%d): %s", recs[meta[2]].id,
                           l0, l1 - 1, why);
        else
            pq_err_replace(st, "calibration batch of %lld sequences from '%s' (layers %d..%d): %s",
                           (long long)b.n_seqs, recs[meta[2]].id, l0, l1 - 1, why);
    }
    *x_out = out.x_out;
    out.x_out = NULL;
    pq_esm2_outputs_clear(&out);
    return st;
}

/* Pipeline collection on one rank: stage `stage` of n_stages (m holds its
 * layers) in replica `replica` of n_replicas, whose stages are consecutive
 * ranks. Stage 0 packs the replica's share of the records (pq_calib_plan
 * over n_replicas) into micro-batches exactly like pq_calib_collect, embeds
 * and runs its layers; every later stage runs its layers on the received
 * activations. Sends are nonblocking and the next receive is posted before
 * the forward, so transfer k+1 overlaps compute k. After a local failure a
 * stage stops computing but still drains its input and ends its output
 * stream, so every rank reaches the status agreement. */
static pq_status pipeline_collect(MPI_Comm comm, pq_esm2_model *m, const pq_fasta_record *recs,
                                  int64_t n, int stage, int n_stages, int replica, int n_replicas,
                                  int64_t batch_tokens, pq_calib *c)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    bool last = stage == n_stages - 1;
    int64_t D = pq_esm2_model_config(m)->embed_dim;
    if (batch_tokens <= 0) batch_tokens = PQ_CALIB_BATCH_TOKENS;
    int64_t cap_ids = batch_tokens;
    for (int64_t i = 0; i < n; i++)
        if (recs[i].n_ids > cap_ids) cap_ids = recs[i].n_ids;
    int64_t cap_meta = n + 4;
    if (cap_ids * D > INT_MAX || cap_meta > INT_MAX)
        return pq_err(PQ_ERR_CONFIG, "micro-batches of %lld tokens x %lld features do not fit one MPI "
                      "message: lower --batch-tokens", (long long)cap_ids, (long long)D);
    pq_status st = PQ_OK, mst = PQ_OK; /* mst: MPI failures, after which the stream is broken */
    pipe_msg snd, rcv[2];
    msg_init(&snd);
    msg_init(&rcv[0]);
    msg_init(&rcv[1]);
    int *owner = NULL;
    int64_t *idx = NULL;
    pq_esm2_model_set_observer(m, pq_calib_observe, c);
    if (stage == 0) {
        owner = malloc((size_t)(n ? n : 1) * sizeof *owner);
        idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
        if (!owner || !idx) st = pq_err(PQ_ERR_RESOURCE, "out of memory for calibration batches");
        if (!st) st = pq_calib_plan(recs, n, n_replicas, owner);
        int64_t k = 0, tok = 0;
        for (int64_t i = 0; i <= n && !st && !mst; i++) {
            bool end = i == n;
            if (!end && owner[i] != replica) continue;
            if (k && (end || tok + recs[i].n_ids > batch_tokens)) {
                int64_t *meta = malloc((size_t)(k + 4) * sizeof *meta);
                int32_t *ids = malloc((size_t)tok * sizeof *ids);
                float *x = NULL;
                if (!meta || !ids) st = pq_err(PQ_ERR_RESOURCE, "out of memory for a calibration batch");
                if (!st) {
                    meta[0] = k;
                    meta[1] = tok;
                    meta[2] = idx[0];
                    meta[3] = 0;
                    for (int64_t j = 0; j < k; j++) {
                        const pq_fasta_record *r = &recs[idx[j]];
                        memcpy(ids + meta[3 + j], r->ids, (size_t)r->n_ids * sizeof *ids);
                        meta[4 + j] = meta[3 + j] + r->n_ids;
                    }
                    st = stage_forward(m, recs, meta, ids, NULL, c, &x);
                }
                if (!st) {
                    c->n_sequences += (uint64_t)k;
                    mst = send_batch(comm, rank + 1, &snd, meta, ids, x, D);
                } else {
                    free(meta);
                    free(ids);
                    free(x);
                }
                k = tok = 0;
            }
            if (end) break;
            idx[k++] = i;
            tok += recs[i].n_ids;
        }
    } else {
        for (int i = 0; i < 2; i++) {
            rcv[i].meta = malloc((size_t)cap_meta * sizeof(int64_t));
            rcv[i].ids = malloc((size_t)cap_ids * sizeof(int32_t));
            rcv[i].x = malloc((size_t)(cap_ids * D) * sizeof(float));
            /* without buffers this stage cannot even drain its input: the
             * stream is broken, like after an MPI failure */
            if (!rcv[i].meta || !rcv[i].ids || !rcv[i].x)
                mst = pq_err(PQ_ERR_RESOURCE, "out of memory for receive buffers of %lld tokens",
                             (long long)cap_ids);
        }
        int cur = 0;
        if (!mst) mst = post_recv(comm, rank - 1, &rcv[0], cap_meta, cap_ids, D);
        while (!mst) {
            pipe_msg *b = &rcv[cur];
            if ((mst = msg_wait(b, false)) || b->meta[0] == 0) break;
            /* the next micro-batch arrives while this one computes */
            if ((mst = post_recv(comm, rank - 1, &rcv[cur ^ 1], cap_meta, cap_ids, D))) break;
            if (!st) {
                int64_t k = b->meta[0], T = b->meta[1];
                float *x = NULL;
                st = stage_forward(m, recs, b->meta, b->ids, b->x, c, &x);
                if (!st && !last) {
                    int64_t *meta = malloc((size_t)(k + 4) * sizeof *meta);
                    int32_t *ids = malloc((size_t)T * sizeof *ids);
                    if (!meta || !ids) {
                        st = pq_err(PQ_ERR_RESOURCE, "out of memory for a calibration batch");
                        free(meta);
                        free(ids);
                        free(x);
                    } else {
                        memcpy(meta, b->meta, (size_t)(k + 4) * sizeof *meta);
                        memcpy(ids, b->ids, (size_t)T * sizeof *ids);
                        mst = send_batch(comm, rank + 1, &snd, meta, ids, x, D);
                    }
                } else {
                    free(x);
                }
            }
            cur ^= 1;
        }
    }
    pq_esm2_model_set_observer(m, NULL, NULL);
    /* end of this stage's output stream */
    if (!last && !mst) {
        static const int64_t end_meta[3] = {0, 0, -1};
        pq_status w = msg_wait(&snd, true);
        if (!w) w = mpi_ok(MPI_Send(end_meta, 3, MPI_INT64_T, rank + 1, TAG_META, comm), "MPI_Send(end)");
        if (!w) w = mpi_ok(MPI_Send(NULL, 0, MPI_INT32_T, rank + 1, TAG_IDS, comm), "MPI_Send(end)");
        if (!w) w = mpi_ok(MPI_Send(NULL, 0, MPI_FLOAT, rank + 1, TAG_X, comm), "MPI_Send(end)");
        mst = w;
    }
    msg_wait(&snd, true);
    for (int i = 0; i < 2; i++) {
        free(rcv[i].meta);
        free(rcv[i].ids);
        free(rcv[i].x);
    }
    free(owner);
    free(idx);
    if (!st) st = mst;
    if (!st) st = pq_calib_flush(c);
    return st;
}

pq_status pq_calib_mpi_collect(MPI_Comm comm, const char *model, const char *data,
                               const pq_calib_data_opts *o, int n_threads, int n_stages,
                               pq_calib **out)
{
    int rank, n_ranks;
    pq_status st = PQ_OK;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n = 0, skipped = 0;
    pq_calib *c = NULL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    *out = NULL;
    if (n_stages < 1) n_stages = 1;
    if (n_threads <= 0) n_threads = pq_sync_threads_per_rank(comm, rank);
    /* rank = replica * n_stages + stage: a replica's stages are neighbours */
    int stage = rank % n_stages, replica = rank / n_stages, n_replicas = n_ranks / n_stages;
    pq_esm2_model_opts mo = {.layer_begin = 0, .layer_end = 0, .n_threads = n_threads, .ops = o->ops};
    if (n_stages > 1) {
        int L = 0;
        if (n_ranks % n_stages)
            st = pq_err(PQ_ERR_CONFIG, "--pipeline-stages %d does not divide the %d MPI ranks (ranks = "
                        "stages x data-parallel replicas)", n_stages, n_ranks);
        if (!st) st = model_num_layers(model, &L);
        if (!st && n_stages > L)
            st = pq_err(PQ_ERR_CONFIG, "--pipeline-stages %d exceeds the %d layers of %s", n_stages, L, model);
        if (!st) pq_calib_stage_layers(L, n_stages, stage, &mo.layer_begin, &mo.layer_end);
    }
    if (!st) st = pq_esm2_model_open(model, &mo, &m);
    if (!st) st = pq_calib_read_data(data, o, &recs, &n, &skipped);
    if (!st) {
        const pq_esm2_config *cfg = pq_esm2_model_config(m);
        st = pq_calib_create(cfg->num_layers, cfg->embed_dim, cfg->ffn_dim, &c);
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    if (n_stages == 1) st = pq_calib_collect(m, recs, n, rank, n_ranks, o->batch_tokens, c);
    else st = pipeline_collect(comm, m, recs, n, stage, n_stages, replica, n_replicas, o->batch_tokens, c);
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    /* sites of other stages stay empty here (zero counts, +inf/-inf): the
     * identity of the reduction; pq_calib_check runs on the merged result */
    st = pq_calib_mpi_reduce(comm, c);
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    if (rank == 0 && !(st = pq_calib_set_source(c, model, data, skipped))) {
        *out = c;
        c = NULL;
    }
cleanup:
    pq_calib_free(c);
    pq_calib_records_free(recs, n);
    pq_esm2_model_free(m);
    return st;
}

pq_status pq_calib_static_prepare(MPI_Comm comm, pq_job *job, const char *model,
                                  const char *store, const char *data, pq_calib_static_run **ctx)
{
    int rank;
    char def[4096];
    pq_calib_data_opts o = {.ops = *pq_job_ops(job)}; /* the job's kernels */
    pq_calib *c = NULL;
    MPI_Comm_rank(comm, &rank);
    *ctx = NULL;
    pq_status st = pq_calib_static_default(store, &data, def, sizeof def, &o);
    if (!st && data == def && rank == 0)
        printf("static scheme: no calibration data given; using the bundled %s (first %d "
               "sequences)\n", def, PQ_CALIB_DEFAULT_SEQS);
    if ((st = pq_calib_mpi_agree(comm, st))) return st;
    if (!store) st = pq_calib_mpi_collect(comm, model, data, &o, pq_job_config(job)->threads, 1, &c);
    else if (rank == 0) st = pq_calib_static_load_store(store, job, &c);
    if (rank == 0 && !st) st = pq_calib_static_arm(job, c, ctx); /* takes c */
    else pq_calib_free(c);
    if ((st = pq_calib_mpi_agree(comm, st)) && rank == 0) {
        pq_job_set_before_commit(job, NULL, NULL);
        pq_calib_static_done(*ctx);
        *ctx = NULL;
    }
    return st;
}
