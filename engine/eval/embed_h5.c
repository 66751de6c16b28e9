/* SPDX-License-Identifier: Apache-2.0 */
/* embed_h5.c - the HDF5 file of `proteus embed`: the model file's
 * conventions (docs/FORMAT.md): format bounds 1.10 (checksummed metadata),
 * fixed-length strings, every dataset chunked with the Fletcher-32
 * checksum. The representation datasets are written a sequence at a time,
 * so their chunks are allocated and filled (zeros, with their checksum) at
 * creation: a chunk read back for a partial write is always valid, and its
 * place does not depend on the order rows arrive in. */
#include "eval/embed_h5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"
#include "format/h5util.h"

struct pq_embed_h5 {
    char *partial, *out;
    hid_t file;
    hid_t mean_ds[PQ_EVAL_MAX_LAYERS], tok_ds[PQ_EVAL_MAX_LAYERS];
    hid_t extra_ds[PQ_EVAL_MAX_LAYERS + 1]; /* bos per layer, then contacts */
    int n_layers;
    int64_t *toff; /* [n_seq + 1] token row offsets */
    bool per_token, published;
};

static pq_status h5_fail(const char *path, const char *what)
{
    return pq_err(PQ_ERR_IO, "%s: HDF5 could not %s", path, what);
}

/* Create a float dataset under group g: [rows, cols], or [rows] when cols is
 * 0; chunks of about 1 MiB with the Fletcher-32 checksum, allocated and
 * filled now. */
static hid_t make_2d(hid_t g, const char *name, hsize_t rows, hsize_t cols)
{
    hsize_t dims[2] = {rows, cols};
    int nd = cols ? 2 : 1;
    hid_t sp = H5Screate_simple(nd, dims, NULL), ds = -1;
    hid_t dcpl = pq_h5u_dcpl(nd, dims, pq_h5u_chunk_rows(nd, dims, 4), true);
    if (sp >= 0 && dcpl >= 0 && H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC) >= 0)
        ds = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return ds;
}

static herr_t write_rows(hid_t ds, hsize_t row0, hsize_t n, hsize_t cols, const float *data)
{
    hid_t fs = H5Dget_space(ds);
    hsize_t start[2] = {row0, 0}, count[2] = {n, cols};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(cols ? 2 : 1, count, NULL);
    herr_t rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, data);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

/* A 1-D dataset of n elements of type t written whole from v, one chunk
 * with the Fletcher-32 checksum. */
static herr_t write_1d(hid_t f, const char *name, hid_t t, hsize_t n, const void *v)
{
    hid_t sp = H5Screate_simple(1, &n, NULL), dcpl = pq_h5u_dcpl(1, &n, n, false), ds = -1;
    if (sp >= 0 && dcpl >= 0) ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : n ? H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) : 0;
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static herr_t write_i64(hid_t f, const char *name, hsize_t n, const int64_t *v)
{
    return write_1d(f, name, H5T_NATIVE_INT64, n, v);
}

/* /ids as fixed-length NUL-padded UTF-8 strings, as long as the longest id,
 * in input order. */
static herr_t write_ids(hid_t f, const pq_fasta_record *recs, int64_t n_recs)
{
    size_t w = 1;
    for (int64_t i = 0; i < n_recs; i++)
        if (strlen(recs[i].id) + 1 > w) w = strlen(recs[i].id) + 1;
    char *buf = calloc((size_t)(n_recs > 0 ? n_recs : 1), w);
    hid_t t = H5Tcopy(H5T_C_S1);
    herr_t rc = -1;
    if (buf && t >= 0 && H5Tset_size(t, w) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0) {
        for (int64_t i = 0; i < n_recs; i++) memcpy(buf + (size_t)i * w, recs[i].id, strlen(recs[i].id));
        rc = write_1d(f, "ids", t, (hsize_t)n_recs, buf);
    }
    free(buf);
    if (t >= 0) H5Tclose(t);
    return rc;
}

static void write_attrs(hid_t f, const pq_esm2_config *cfg)
{
    hid_t as = H5Screate(H5S_SCALAR);
    int attrs[3] = {cfg->num_layers, cfg->embed_dim, cfg->attention_heads};
    const char *an[3] = {"num_layers", "embed_dim", "attention_heads"};
    for (int i = 0; i < 3; i++) {
        hid_t a = H5Acreate2(f, an[i], H5T_STD_I32LE, as, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) { H5Awrite(a, H5T_NATIVE_INT, &attrs[i]); H5Aclose(a); }
    }
    H5Sclose(as);
}

/* The sequence tables: /ids, /lengths, /offsets, attributes. */
static pq_status write_tables(pq_embed_h5 *w, const pq_fasta_record *recs, int64_t n_recs, const pq_esm2_config *cfg)
{
    int64_t *lengths = malloc((size_t)(n_recs > 0 ? n_recs : 1) * sizeof *lengths);
    if (!lengths) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; i < n_recs; i++) lengths[i] = recs[i].n_ids - 2;
    pq_status st = PQ_OK;
    if (write_ids(w->file, recs, n_recs) < 0) st = h5_fail(w->partial, "write /ids");
    else if (write_i64(w->file, "lengths", (hsize_t)n_recs, lengths) < 0)
        st = h5_fail(w->partial, "write /lengths");
    else if (w->per_token && write_i64(w->file, "offsets", (hsize_t)n_recs + 1, w->toff) < 0)
        st = h5_fail(w->partial, "write /offsets");
    else write_attrs(w->file, cfg);
    free(lengths);
    return st;
}

pq_status pq_embed_h5_create(const char *out, const pq_fasta_record *recs, int64_t n_recs, const int *layers,
                             int n_layers, const pq_esm2_config *cfg, bool per_token, pq_embed_h5 **wp)
{
    pq_status st = PQ_OK;
    pq_embed_h5 *w = calloc(1, sizeof *w);
    *wp = w;
    if (!w) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    w->file = -1;
    for (int i = 0; i < PQ_EVAL_MAX_LAYERS; i++) w->mean_ds[i] = w->tok_ds[i] = -1;
    for (int i = 0; i <= PQ_EVAL_MAX_LAYERS; i++) w->extra_ds[i] = -1;
    w->per_token = per_token;
    w->out = out ? strdup(out) : NULL;
    w->partial = pq_partial_dup(out);
    w->toff = malloc((size_t)(n_recs + 1) * sizeof *w->toff);
    if (!w->out || !w->partial || !w->toff) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    w->toff[0] = 0;
    for (int64_t i = 0; i < n_recs; i++) w->toff[i + 1] = w->toff[i] + recs[i].n_ids - 2;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* h5_fail reports; no HDF5 stack dump */
    hid_t fapl = pq_h5u_fapl_write(), fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fapl >= 0 && fcpl >= 0 && H5Pset_obj_track_times(fcpl, 0) >= 0)
        w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, fcpl, fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->file < 0) return h5_fail(w->partial, "create the file");
    if ((st = write_tables(w, recs, n_recs, cfg)) != PQ_OK) return st;
    hsize_t D = (hsize_t)cfg->embed_dim;
    for (int i = 0; i < n_layers; i++) {
        char gname[64];
        snprintf(gname, sizeof gname, "layer_%d", layers[i]);
        hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE), g = -1; /* no time stamps: the same bytes each run */
        if (gcpl >= 0 && H5Pset_obj_track_times(gcpl, 0) >= 0)
            g = H5Gcreate2(w->file, gname, H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (gcpl >= 0) H5Pclose(gcpl);
        if (g < 0) return h5_fail(w->partial, "create a layer group");
        w->mean_ds[i] = make_2d(g, "mean", (hsize_t)n_recs, D);
        if (per_token) w->tok_ds[i] = make_2d(g, "tokens", (hsize_t)w->toff[n_recs], D);
        H5Gclose(g);
        w->n_layers = i + 1;
        if (w->mean_ds[i] < 0 || (per_token && w->tok_ds[i] < 0)) return h5_fail(w->partial, "create datasets");
    }
    return PQ_OK;
}

pq_status pq_embed_h5_sink(void *user, int64_t seq, int li, const float *mean, const float *rows, int64_t n_res,
                           int64_t D)
{
    pq_embed_h5 *w = user;
    if (write_rows(w->mean_ds[li], (hsize_t)seq, 1, (hsize_t)D, mean) < 0 ||
        (w->per_token && write_rows(w->tok_ds[li], (hsize_t)w->toff[seq], (hsize_t)n_res, (hsize_t)D, rows) < 0))
        return h5_fail(w->partial, "write representations");
    return PQ_OK;
}

pq_status pq_embed_h5_extra(pq_embed_h5 *w, int slot, const char *name, int layer, int64_t rows, int64_t D)
{
    char path[96];
    snprintf(path, sizeof path, "layer_%d/%s", layer, name);
    if ((w->extra_ds[slot] = make_2d(w->file, path, (hsize_t)rows, (hsize_t)D)) < 0)
        return h5_fail(w->partial, "create a dataset");
    return PQ_OK;
}

pq_status pq_embed_h5_contacts(pq_embed_h5 *w, int slot, const int64_t *off, int64_t n_seq)
{
    if ((w->extra_ds[slot] = make_2d(w->file, "contacts", (hsize_t)off[n_seq], 0)) < 0 ||
        write_i64(w->file, "contact_offsets", (hsize_t)n_seq + 1, off) < 0)
        return h5_fail(w->partial, "create /contacts");
    return PQ_OK;
}

pq_status pq_embed_h5_extra_write(pq_embed_h5 *w, int slot, int64_t row0, int64_t n, const float *data)
{
    hid_t sp = H5Dget_space(w->extra_ds[slot]);
    hsize_t dims[2] = {0, 0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (nd < 0 || write_rows(w->extra_ds[slot], (hsize_t)row0, (hsize_t)n, nd == 2 ? dims[1] : 0, data) < 0)
        return h5_fail(w->partial, "write representations");
    return PQ_OK;
}

static herr_t close_all(pq_embed_h5 *w)
{
    for (int i = 0; i < PQ_EVAL_MAX_LAYERS; i++) {
        if (w->mean_ds[i] >= 0) H5Dclose(w->mean_ds[i]);
        if (w->tok_ds[i] >= 0) H5Dclose(w->tok_ds[i]);
        w->mean_ds[i] = w->tok_ds[i] = -1;
    }
    for (int i = 0; i <= PQ_EVAL_MAX_LAYERS; i++) {
        if (w->extra_ds[i] >= 0) H5Dclose(w->extra_ds[i]);
        w->extra_ds[i] = -1;
    }
    herr_t rc = w->file >= 0 ? H5Fclose(w->file) : 0;
    w->file = -1;
    return rc;
}

pq_status pq_embed_h5_finish(pq_embed_h5 *w)
{
    if (close_all(w) < 0) return h5_fail(w->partial, "close the file");
    pq_status st = pq_publish(w->partial, w->out);
    if (st == PQ_OK) w->published = true;
    return st;
}

void pq_embed_h5_destroy(pq_embed_h5 *w)
{
    if (!w) return;
    close_all(w);
    if (!w->published && w->partial) unlink(w->partial);
    free(w->partial);
    free(w->out);
    free(w->toff);
    free(w);
}
