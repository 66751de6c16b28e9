/* SPDX-License-Identifier: Apache-2.0 */
/* embed_h5.c - the HDF5 file of `proteus embed`. */
#include "eval/embed_h5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"

struct pq_embed_h5 {
    char *partial, *out;
    hid_t file;
    hid_t mean_ds[PQ_EVAL_MAX_LAYERS], tok_ds[PQ_EVAL_MAX_LAYERS];
    hid_t extra_ds[PQ_EVAL_MAX_LAYERS + 1]; /* bos per layer, then contacts */
    hid_t ocpl;                             /* no timestamps: same bytes every run */
    int n_layers;
    int64_t *toff; /* [n_seq + 1] token row offsets */
    bool per_token, published;
};

static pq_status h5_fail(const char *path, const char *what)
{
    return pq_err(PQ_ERR_IO, "%s: HDF5 could not %s", path, what);
}

/* Create a 2-D float dataset [rows, cols] under group g. */
static hid_t make_2d(hid_t g, const char *name, hsize_t rows, hsize_t cols, hid_t ocpl)
{
    hsize_t dims[2] = {rows, cols};
    hid_t sp = H5Screate_simple(cols ? 2 : 1, dims, NULL);
    if (sp < 0) return -1;
    hid_t ds = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, ocpl, H5P_DEFAULT);
    H5Sclose(sp);
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

static herr_t write_i64(hid_t f, const char *name, hsize_t n, const int64_t *v, hid_t ocpl)
{
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, ocpl, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

/* /ids as variable-length UTF-8 strings. */
static herr_t write_ids(hid_t f, const pq_fasta_record *recs, int64_t n_recs, hid_t ocpl)
{
    hsize_t n = (hsize_t)n_recs;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, "ids", t, sp, H5P_DEFAULT, ocpl, H5P_DEFAULT);
    const char **names = malloc((size_t)(n_recs > 0 ? n_recs : 1) * sizeof *names);
    herr_t rc = -1;
    if (names && ds >= 0) {
        for (int64_t i = 0; i < n_recs; i++) names[i] = recs[i].id;
        rc = H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names);
    }
    free(names);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(t);
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
    if (write_ids(w->file, recs, n_recs, w->ocpl) < 0) st = h5_fail(w->partial, "write /ids");
    else if (write_i64(w->file, "lengths", (hsize_t)n_recs, lengths, w->ocpl) < 0)
        st = h5_fail(w->partial, "write /lengths");
    else if (w->per_token && write_i64(w->file, "offsets", (hsize_t)n_recs + 1, w->toff, w->ocpl) < 0)
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
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    w->ocpl = H5Pcreate(H5P_DATASET_CREATE);
    if (fcpl < 0 || w->ocpl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 || H5Pset_obj_track_times(w->ocpl, 0) < 0) {
        if (fcpl >= 0) H5Pclose(fcpl);
        return h5_fail(w->partial, "make creation properties");
    }
    w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (w->file < 0) return h5_fail(w->partial, "create the file");
    if ((st = write_tables(w, recs, n_recs, cfg)) != PQ_OK) return st;
    hsize_t D = (hsize_t)cfg->embed_dim;
    for (int i = 0; i < n_layers; i++) {
        char gname[64];
        snprintf(gname, sizeof gname, "layer_%d", layers[i]);
        hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
        hid_t g = gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0
                      ? -1 : H5Gcreate2(w->file, gname, H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (gcpl >= 0) H5Pclose(gcpl);
        if (g < 0) return h5_fail(w->partial, "create a layer group");
        w->mean_ds[i] = make_2d(g, "mean", (hsize_t)n_recs, D, w->ocpl);
        if (per_token) w->tok_ds[i] = make_2d(g, "tokens", (hsize_t)w->toff[n_recs], D, w->ocpl);
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
    if ((w->extra_ds[slot] = make_2d(w->file, path, (hsize_t)rows, (hsize_t)D, w->ocpl)) < 0)
        return h5_fail(w->partial, "create a dataset");
    return PQ_OK;
}

pq_status pq_embed_h5_contacts(pq_embed_h5 *w, int slot, const int64_t *off, int64_t n_seq)
{
    if ((w->extra_ds[slot] = make_2d(w->file, "contacts", (hsize_t)off[n_seq], 0, w->ocpl)) < 0 ||
        write_i64(w->file, "contact_offsets", (hsize_t)n_seq + 1, off, w->ocpl) < 0)
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
    if (w->ocpl > 0) H5Pclose(w->ocpl);
    w->ocpl = -1;
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
