/* SPDX-License-Identifier: Apache-2.0 */
/* score_chunk.c - a chunk's masked-LM tallies as bytes, and their table. */
#include "eval/score_chunk.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"

pq_status pq_score_chunk_run(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n,
                             const pq_eval_score_opts *o, pq_buf *out, int64_t *n_tokens)
{
    pq_eval_mlm *sc = calloc((size_t)(n ? n : 1), sizeof *sc);
    if (!sc) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_eval_score(m, recs, n, o, sc, n_tokens);
    for (int64_t i = 0; i < n && st == PQ_OK; i++) {
        int64_t v[3] = {recs[i].n_ids - 2, sc[i].n_masked, sc[i].n_correct};
        if ((st = pq_buf_put_str(out, recs[i].id)) == PQ_OK && (st = pq_buf_put(out, v, sizeof v)) == PQ_OK)
            st = pq_buf_put(out, &sc[i].nll, sizeof sc[i].nll);
    }
    free(sc);
    return st;
}

static pq_status grow(pq_score_table *t, int64_t *cap)
{
    int64_t c = *cap ? 2 * *cap : 1024;
    char **ids = realloc(t->ids, (size_t)c * sizeof *ids);
    if (ids) t->ids = ids;
    int64_t *len = realloc(t->lengths, (size_t)c * sizeof *len);
    if (len) t->lengths = len;
    pq_eval_mlm *mlm = realloc(t->mlm, (size_t)c * sizeof *mlm);
    if (mlm) t->mlm = mlm;
    if (!ids || !len || !mlm) return pq_err(PQ_ERR_RESOURCE, "out of memory for the score table");
    *cap = c;
    return PQ_OK;
}

typedef struct read_ctx {
    pq_score_table *t;
    int64_t cap;
} read_ctx;

static pq_status read_chunk(void *user, int64_t id, const void *data, size_t n)
{
    read_ctx *x = user;
    pq_score_table *t = x->t;
    pq_cursor c = {data, n, false};
    pq_status st = PQ_OK;
    (void)id;
    while (st == PQ_OK && c.left) {
        if (t->n == x->cap && (st = grow(t, &x->cap)) != PQ_OK) break;
        char *rid = pq_cursor_str(&c);
        int64_t len = pq_cursor_i64(&c);
        pq_eval_mlm q = {.n_masked = pq_cursor_i64(&c), .n_correct = pq_cursor_i64(&c)};
        const void *nll = pq_cursor_take(&c, sizeof q.nll);
        if (!rid || !nll) {
            free(rid);
            st = pq_err(PQ_ERR_FORMAT, "a journal chunk is not a score record");
            break;
        }
        memcpy(&q.nll, nll, sizeof q.nll);
        t->ids[t->n] = rid;
        t->lengths[t->n] = len;
        t->mlm[t->n++] = q;
    }
    return st;
}

pq_status pq_score_chunk_read(pq_journal *j, pq_score_table *t)
{
    memset(t, 0, sizeof *t);
    read_ctx x = {.t = t};
    return pq_journal_each_block(j, read_chunk, &x);
}

void pq_score_table_free(pq_score_table *t)
{
    for (int64_t i = 0; i < t->n; i++) free(t->ids[i]);
    free(t->ids);
    free(t->lengths);
    free(t->mlm);
    memset(t, 0, sizeof *t);
}

/* One 1-D dataset of n values of file type ft from memory type mt. */
static herr_t put(hid_t f, hid_t ocpl, const char *name, hid_t ft, hid_t mt, int64_t n, const void *v)
{
    hsize_t dn = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dn, NULL);
    hid_t ds = sp < 0 ? -1 : H5Dcreate2(f, name, ft, sp, H5P_DEFAULT, ocpl, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : n ? H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) : 0;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static herr_t put_attr(hid_t f, const char *name, hid_t ft, hid_t mt, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(f, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mt, v);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static herr_t write_file(hid_t f, hid_t ocpl, const pq_score_table *t, const pq_eval_score_opts *o,
                         int64_t *col, double *nll)
{
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0 || H5Tset_size(st, H5T_VARIABLE) < 0 || H5Tset_cset(st, H5T_CSET_UTF8) < 0) return -1;
    herr_t rc = put(f, ocpl, "ids", st, st, t->n, t->ids);
    H5Tclose(st);
    if (rc < 0 || put(f, ocpl, "lengths", H5T_STD_I64LE, H5T_NATIVE_INT64, t->n, t->lengths) < 0) return -1;
    for (int64_t i = 0; i < t->n; i++) col[i] = t->mlm[i].n_masked;
    if (put(f, ocpl, "n_masked", H5T_STD_I64LE, H5T_NATIVE_INT64, t->n, col) < 0) return -1;
    for (int64_t i = 0; i < t->n; i++) col[i] = t->mlm[i].n_correct;
    if (put(f, ocpl, "n_correct", H5T_STD_I64LE, H5T_NATIVE_INT64, t->n, col) < 0) return -1;
    for (int64_t i = 0; i < t->n; i++) nll[i] = t->mlm[i].nll;
    if (put(f, ocpl, "nll", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, t->n, nll) < 0) return -1;
    uint64_t seed = o->seed;
    if (put_attr(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed) < 0) return -1;
    return put_attr(f, "mask_frac", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &o->mask_frac);
}

pq_status pq_score_table_write(const pq_score_table *t, const pq_eval_score_opts *o, const char *out)
{
    char *partial = pq_partial_dup(out);
    int64_t *col = malloc((size_t)(t->n ? t->n : 1) * sizeof *col);
    double *nll = malloc((size_t)(t->n ? t->n : 1) * sizeof *nll);
    pq_status st = PQ_OK;
    hid_t fcpl = -1, ocpl = -1, f = -1;
    if (!partial || !col || !nll) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto done;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((fcpl = H5Pcreate(H5P_FILE_CREATE)) < 0 || (ocpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_obj_track_times(fcpl, 0) < 0 || H5Pset_obj_track_times(ocpl, 0) < 0 ||
        (f = H5Fcreate(partial, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT)) < 0) {
        st = pq_err(PQ_ERR_IO, "%s: HDF5 could not create the file", partial);
        goto done;
    }
    herr_t rc = write_file(f, ocpl, t, o, col, nll);
    if (H5Fclose(f) < 0) rc = -1;
    f = -1;
    if (rc < 0) st = pq_err(PQ_ERR_IO, "%s: HDF5 could not write the scores", partial);
    else st = pq_publish(partial, out);
    if (st != PQ_OK) unlink(partial);
done:
    if (f >= 0) H5Fclose(f);
    if (ocpl >= 0) H5Pclose(ocpl);
    if (fcpl >= 0) H5Pclose(fcpl);
    free(partial);
    free(col);
    free(nll);
    return st;
}
