/* SPDX-License-Identifier: Apache-2.0 */
/* calib_mpi.c - sharded collection and exact reduction of calibration
 * statistics over MPI ranks (calib_mpi.h). */
#include "calib_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib_h5.h"
#include "esm2_model.h"
#include "safetensors.h"

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
    int mine = (int)local, worst = 0;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        return pq_err(PQ_ERR_MPI, "MPI_Allreduce (status agreement) failed");
    if (worst && !local) return pq_err((pq_status)worst, "another rank failed (see its message)");
    return (pq_status)worst;
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

/* Forward threads when the user left it to us: the node's cores divided
 * among the ranks sharing the node, so N ranks never run N x cores threads
 * (busy-waiting OpenMP/OpenBLAS threads on shared cores). Collective. */
static int threads_per_rank(MPI_Comm comm, int rank)
{
    MPI_Comm node = MPI_COMM_NULL;
    int on_node = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &on_node);
        MPI_Comm_free(&node);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)((cores > 0 ? cores : 1) / on_node);
    return t < 1 ? 1 : t;
}

pq_status pq_calib_mpi_collect(MPI_Comm comm, const char *model, const char *data,
                               const pq_calib_data_opts *o, int n_threads, pq_calib **out)
{
    int rank, n_ranks;
    pq_status st;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n = 0, skipped = 0;
    pq_calib *c = NULL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    *out = NULL;
    if (n_threads <= 0) n_threads = threads_per_rank(comm, rank);
    pq_esm2_model_opts mo = {.layer_begin = 0, .layer_end = 0, .n_threads = n_threads};
    st = pq_esm2_model_open(model, &mo, &m);
    if (!st) st = pq_calib_read_data(data, o, &recs, &n, &skipped);
    if (!st) {
        const pq_esm2_config *cfg = pq_esm2_model_config(m);
        st = pq_calib_create(cfg->num_layers, cfg->embed_dim, cfg->ffn_dim, &c);
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    st = pq_calib_collect(m, recs, n, rank, n_ranks, o->batch_tokens, c);
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    st = pq_calib_mpi_reduce(comm, c);
    if ((st = pq_calib_mpi_agree(comm, st))) goto cleanup;
    if (rank == 0) {
        c->n_skipped = (uint64_t)skipped;
        if (!(c->model_path = strdup(model))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        if (!st) st = pq_calib_model_sha256(model, c->model_sha256);
        if (!st) st = pq_calib_add_dataset(c, data);
        if (!st) {
            *out = c;
            c = NULL;
        }
    }
cleanup:
    pq_calib_free(c);
    pq_calib_records_free(recs, n);
    pq_esm2_model_free(m);
    return st;
}

struct pq_calib_static_run {
    pq_calib *calib;
    pq_calib_static spec;
};

static pq_status static_hook(void *user, pq_job *j)
{
    pq_calib_static_run *r = user;
    return pq_calib_static_write(j->writer, j->plan, &r->spec);
}

pq_status pq_calib_static_prepare(MPI_Comm comm, pq_job *job, const char *model,
                                  const char *store, const char *data, pq_calib_static_run **ctx)
{
    int rank;
    pq_status st = PQ_OK;
    char def[4096];
    pq_calib_data_opts o = {0, 0, 0};
    pq_calib_static_run *r = calloc(1, sizeof *r);
    MPI_Comm_rank(comm, &rank);
    *ctx = NULL;
    if (!r) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st && !store && !data) {
        st = pq_calib_default_data(def, sizeof def);
        data = def;
        o.max_seqs = PQ_CALIB_DEFAULT_SEQS;
        if (!st && rank == 0)
            printf("static scheme: no calibration data given; using the bundled %s (first %d "
                   "sequences)\n", def, PQ_CALIB_DEFAULT_SEQS);
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto fail;
    if (store) {
        if (rank == 0) {
            char sha[65];
            st = pq_calib_h5_load(store, &r->calib);
            if (!st) st = pq_st_sha256(job->model, sha);
            if (!st && strcmp(sha, r->calib->model_sha256))
                st = pq_err(PQ_ERR_CALIBRATION, "%s was collected on model sha256 %.16s..., the "
                            "model to quantize is %.16s...", store, r->calib->model_sha256, sha);
        }
    } else {
        st = pq_calib_mpi_collect(comm, model, data, &o, job->cfg->threads, &r->calib);
    }
    if (rank == 0 && !st) {
        int m = pq_calib_method_parse(job->cfg->calibration_method);
        r->spec = (pq_calib_static){.calib = r->calib, .method = m < 0 ? PQ_CALIB_MINMAX : m,
                                    .symmetric = job->cfg->symmetric, .percentile = 99.99};
        st = pq_calib_check(r->calib, false);
        job->before_commit = static_hook;
        job->before_commit_user = r;
    }
    if ((st = pq_calib_mpi_agree(comm, st))) goto fail;
    *ctx = r;
    return PQ_OK;
fail:
    if (rank == 0) job->before_commit = NULL;
    pq_calib_static_done(r);
    return st;
}

void pq_calib_static_done(pq_calib_static_run *r)
{
    if (!r) return;
    pq_calib_free(r->calib);
    free(r);
}
