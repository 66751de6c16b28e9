/* SPDX-License-Identifier: Apache-2.0 */
/* calib_h5.c - the calibration store in HDF5 (calib_h5.h). */
#include "format/calib_h5.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/h5util.h"
#include "base/pq_io.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define GRID_NAME "ieee754-binary32 sign|exponent|top " STR(PQ_HIST_MBITS) " mantissa bits"

static pq_status h5fail(const char *where, const char *what)
{
    char d[256];
    pq_h5u_detail(d, sizeof d);
    return pq_err(PQ_ERR_IO, "%s: %s failed: %s", where, what, d);
}

/* One 1-D dataset, one chunk with the Fletcher-32 checksum, written whole. */
static pq_status write_ds(hid_t g, const char *where, const char *name, hid_t ftype, hid_t mtype,
                          hsize_t n, const void *data)
{
    pq_status st = PQ_OK;
    hid_t sp = H5Screate_simple(1, &n, NULL), d = H5I_INVALID_HID, dcpl = pq_h5u_dcpl(1, &n, n, false);
    if (sp < 0 || dcpl < 0 || (d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
        (n && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
        st = h5fail(where, name);
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return st;
}

static pq_status write_site(hid_t parent, const pq_calib_site *s, hid_t gcpl)
{
    pq_status st = PQ_OK;
    char where[96];
    snprintf(where, sizeof where, "/calibration/%s", s->name);
    uint32_t *bin = NULL;
    uint64_t *cnt = NULL;
    int64_t nnz = 0;
    if (s->n_pending)
        return pq_err(PQ_ERR_INTERNAL, "%s: statistics not flushed (pq_calib_flush)", where);
    for (int b = 0; b < PQ_HIST_NBLOCKS; b++)
        for (int k = 0; s->blocks[b] && k < PQ_HIST_BLOCK; k++) nnz += s->blocks[b][k] != 0;
    hid_t g = H5Gcreate2(parent, s->name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0) return h5fail(where, "group create");
    bin = malloc((size_t)(nnz ? nnz : 1) * sizeof *bin);
    cnt = malloc((size_t)(nnz ? nnz : 1) * sizeof *cnt);
    if (!bin || !cnt) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    int64_t i = 0;
    for (int b = 0; b < PQ_HIST_NBLOCKS; b++)
        for (int k = 0; s->blocks[b] && k < PQ_HIST_BLOCK; k++)
            if (s->blocks[b][k]) {
                bin[i] = ((uint32_t)b << PQ_HIST_MBITS) | (uint32_t)k;
                cnt[i++] = s->blocks[b][k];
            }
    if ((st = pq_h5u_put_i32(g, where, "layer", s->layer)) ||
        (st = pq_h5u_put_i32(g, where, "kind", (int32_t)s->kind)) ||
        (st = pq_h5u_put_i64(g, where, "dim", s->dim)) ||
        (st = pq_h5u_put_f32(g, where, "min", s->min)) ||
        (st = pq_h5u_put_f32(g, where, "max", s->max)) ||
        (st = pq_h5u_put_i64(g, where, "count", (int64_t)s->count)) ||
        (st = pq_h5u_put_i64(g, where, "n_nan", (int64_t)s->n_nan)) ||
        (st = pq_h5u_put_i64(g, where, "n_posinf", (int64_t)s->n_posinf)) ||
        (st = pq_h5u_put_i64(g, where, "n_neginf", (int64_t)s->n_neginf)) ||
        (st = pq_h5u_put_i64(g, where, "n_tokens", (int64_t)s->n_tokens)) ||
        (st = write_ds(g, where, "chan_absmax", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                       (hsize_t)s->dim, s->chan_absmax)) ||
        (st = write_ds(g, where, "hist_bin", H5T_STD_U32LE, H5T_NATIVE_UINT32, (hsize_t)nnz, bin)) ||
        (st = write_ds(g, where, "hist_count", H5T_STD_U64LE, H5T_NATIVE_UINT64, (hsize_t)nnz, cnt)))
        goto cleanup;
cleanup:
    free(bin);
    free(cnt);
    H5Gclose(g);
    return st;
}

static pq_status write_group(hid_t file, const pq_calib *c)
{
    pq_status st = PQ_OK;
    const char *where = "/calibration";
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;
    if (gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0 ||
        (g = H5Gcreate2(file, "calibration", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        st = h5fail(where, "group create");
        goto cleanup;
    }
    if ((st = pq_h5u_put_str(g, where, "grid", GRID_NAME)) ||
        (st = pq_h5u_put_i32(g, where, "hist_mbits", PQ_HIST_MBITS)) ||
        (st = pq_h5u_put_i32(g, where, "num_layers", c->num_layers)) ||
        (st = pq_h5u_put_i32(g, where, "embed_dim", c->embed_dim)) ||
        (st = pq_h5u_put_i32(g, where, "ffn_dim", c->ffn_dim)) ||
        (st = pq_h5u_put_str(g, where, "model_sha256_tree", c->model_sha256)) ||
        (st = pq_h5u_put_str(g, where, "model_path", c->model_path ? c->model_path : "")) ||
        (st = pq_h5u_put_str(g, where, "datasets", c->datasets ? c->datasets : "")) ||
        (st = pq_h5u_put_i64(g, where, "n_sequences", (int64_t)c->n_sequences)) ||
        (st = pq_h5u_put_i64(g, where, "n_skipped", (int64_t)c->n_skipped)))
        goto cleanup;
    for (int i = 0; i < c->n_sites; i++)
        if ((st = write_site(g, &c->sites[i], gcpl))) goto cleanup;
cleanup:
    if (g >= 0) H5Gclose(g);
    if (gcpl >= 0) H5Pclose(gcpl);
    return st;
}

pq_status pq_calib_h5_put(pq_h5w *w, const pq_calib *c)
{
    pq_h5u_quiet();
    hid_t f = pq_h5w_file_id(w);
    if (f < 0) return pq_err(PQ_ERR_INTERNAL, "pq_calib_h5_put: no open writer");
    return write_group(f, c);
}

pq_status pq_calib_h5_save(const char *path, const pq_calib *c, const char *created_by)
{
    pq_status st = PQ_OK;
    char partial[4200];
    if (pq_partial_name(partial, sizeof partial, path))
        return pq_err(PQ_ERR_CONFIG, "%.200s...: path too long", path);
    pq_h5u_quiet();
    hid_t fapl = pq_h5u_fapl_write(), fcpl = H5Pcreate(H5P_FILE_CREATE), f = H5I_INVALID_HID;
    if (fapl < 0 || fcpl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 ||
        (f = H5Fcreate(partial, H5F_ACC_TRUNC, fcpl, fapl)) < 0) {
        st = h5fail(partial, "create");
        goto cleanup;
    }
    if ((st = pq_h5u_put_str(f, "/", "format", PQ_CALIB_FORMAT_NAME)) ||
        (st = pq_h5u_put_i32(f, "/", "format_version", PQ_CALIB_FORMAT_VERSION)) ||
        (st = pq_h5u_put_str(f, "/", "created_by", created_by ? created_by : "proteus")) ||
        (st = write_group(f, c)))
        goto cleanup;
    if (H5Fclose(f) < 0) { f = H5I_INVALID_HID; st = h5fail(partial, "close"); goto cleanup; }
    f = H5I_INVALID_HID;
    st = pq_publish(partial, path);
cleanup:
    if (f >= 0) H5Fclose(f);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (st) remove(partial);
    return st;
}

/* ---- reading ---- */

static pq_status read_vec(hid_t g, const char *where, const char *name, hid_t mtype, size_t esz,
                          int64_t expect, int64_t *n_out, void **out)
{
    pq_status st = PQ_OK;
    hid_t d = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    hsize_t dims[2] = {0, 0};
    *out = NULL;
    hid_t t = H5I_INVALID_HID;
    if ((d = H5Dopen2(g, name, H5P_DEFAULT)) < 0 || (sp = H5Dget_space(d)) < 0 ||
        H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, dims, NULL) != 1) {
        H5Eclear2(H5E_DEFAULT);
        st = pq_err(PQ_ERR_FORMAT, "%s/%s: missing or not a 1-D dataset", where, name);
        goto cleanup;
    }
    /* the stored type must be the one read (no conversion of a lie) */
    if ((t = H5Dget_type(d)) < 0 || H5Tget_class(t) != H5Tget_class(mtype) || H5Tget_size(t) != esz ||
        (H5Tget_class(t) == H5T_INTEGER && H5Tget_sign(t) != H5Tget_sign(mtype))) {
        H5Eclear2(H5E_DEFAULT);
        st = pq_err(PQ_ERR_FORMAT, "%s/%s: not of the stored type this build writes", where, name);
        goto cleanup;
    }
    if (dims[0] && !pq_h5u_has_fletcher32(d)) {
        st = pq_err(PQ_ERR_FORMAT, "%s/%s: no Fletcher-32 checksum (a store of calibration format %d or older: "
                    "collect it again with proteus calibrate)", where, name, PQ_CALIB_FORMAT_VERSION - 1);
        goto cleanup;
    }
    /* without an expected length (hist_bin): at most one entry per bin of
     * the grid, as the entries are distinct bins */
    if ((expect >= 0 && dims[0] != (hsize_t)expect) || (expect < 0 && dims[0] > (hsize_t)PQ_HIST_NBINS)) {
        if (expect >= 0)
            st = pq_err(PQ_ERR_FORMAT, "%s/%s: %llu elements, expected %lld", where, name,
                        (unsigned long long)dims[0], (long long)expect);
        else
            st = pq_err(PQ_ERR_FORMAT, "%s/%s: %llu elements, more than the %d bins of the grid", where, name,
                        (unsigned long long)dims[0], PQ_HIST_NBINS);
        goto cleanup;
    }
    if (!(*out = malloc((size_t)(dims[0] ? dims[0] : 1) * esz))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    if (dims[0] && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        char w[160];
        snprintf(w, sizeof w, "%s/%s", where, name);
        st = pq_h5u_read_fail(NULL, w);
        goto cleanup;
    }
    *n_out = (int64_t)dims[0];
cleanup:
    if (st) { free(*out); *out = NULL; }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return st;
}

static pq_status get_u64(hid_t g, const char *where, const char *name, uint64_t *v)
{
    int64_t x;
    pq_status st = pq_h5u_get_i64(g, where, name, &x);
    if (st) return st;
    if (x < 0) return pq_err(PQ_ERR_FORMAT, "%s: attr %s is negative (%lld)", where, name, (long long)x);
    *v = (uint64_t)x;
    return PQ_OK;
}

static pq_status read_site(hid_t parent, pq_calib_site *s)
{
    pq_status st = PQ_OK;
    char where[96];
    snprintf(where, sizeof where, "/calibration/%s", s->name);
    hid_t g = H5Gopen2(parent, s->name, H5P_DEFAULT);
    float *ca = NULL;
    uint32_t *bin = NULL;
    uint64_t *cnt = NULL;
    int64_t n_ca = 0, n_bin = 0, n_cnt = 0, dim = 0;
    double mn, mx;
    if (g < 0) {
        H5Eclear2(H5E_DEFAULT);
        return pq_err(PQ_ERR_FORMAT, "%s: site missing", where);
    }
    if ((st = pq_h5u_get_i64(g, where, "dim", &dim))) goto cleanup;
    if (dim != s->dim) {
        st = pq_err(PQ_ERR_FORMAT, "%s: dim %lld, the architecture says %lld", where, (long long)dim,
                    (long long)s->dim);
        goto cleanup;
    }
    if ((st = pq_h5u_get_f64(g, where, "min", &mn)) || (st = pq_h5u_get_f64(g, where, "max", &mx)) ||
        (st = get_u64(g, where, "count", &s->count)) || (st = get_u64(g, where, "n_nan", &s->n_nan)) ||
        (st = get_u64(g, where, "n_posinf", &s->n_posinf)) ||
        (st = get_u64(g, where, "n_neginf", &s->n_neginf)) ||
        (st = get_u64(g, where, "n_tokens", &s->n_tokens)))
        goto cleanup;
    s->min = (float)mn;
    s->max = (float)mx;
    /* finite values only: +inf / -inf (no value yet) only while count == 0 */
    if (isnan(mn) || isnan(mx) ||
        (s->count && (!isfinite(s->min) || !isfinite(s->max) || !(s->min <= s->max)))) {
        st = pq_err(PQ_ERR_FORMAT, "%s: bad range [%g, %g]", where, mn, mx);
        goto cleanup;
    }
    if ((st = read_vec(g, where, "chan_absmax", H5T_NATIVE_FLOAT, sizeof(float), dim, &n_ca, (void **)&ca)) ||
        (st = read_vec(g, where, "hist_bin", H5T_NATIVE_UINT32, sizeof(uint32_t), -1, &n_bin, (void **)&bin)) ||
        (st = read_vec(g, where, "hist_count", H5T_NATIVE_UINT64, sizeof(uint64_t), n_bin, &n_cnt, (void **)&cnt)))
        goto cleanup;
    for (int64_t j = 0; j < dim; j++)
        if (!(ca[j] >= 0) || isinf(ca[j])) {
            st = pq_err(PQ_ERR_FORMAT, "%s/chan_absmax[%lld]: %g is not a finite magnitude", where,
                        (long long)j, ca[j]);
            goto cleanup;
        }
    memcpy(s->chan_absmax, ca, (size_t)dim * sizeof *ca);
    uint64_t total = 0;
    for (int64_t j = 0; j < n_bin; j++) {
        uint32_t b = bin[j] >> PQ_HIST_MBITS, k = bin[j] & (PQ_HIST_BLOCK - 1);
        if (b >= PQ_HIST_NBLOCKS || (b & 0xff) == 0xff || cnt[j] == 0 || (j && bin[j] <= bin[j - 1]) ||
            total + cnt[j] < total) {
            st = pq_err(PQ_ERR_FORMAT, "%s/hist_bin[%lld]: bin %u (count %llu) is not a finite-value "
                        "bin in ascending order", where, (long long)j, bin[j],
                        (unsigned long long)cnt[j]);
            goto cleanup;
        }
        if (!s->blocks[b] && !(s->blocks[b] = calloc(PQ_HIST_BLOCK, sizeof(uint64_t)))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto cleanup;
        }
        s->blocks[b][k] = cnt[j];
        total += cnt[j];
    }
    if (total != s->count) {
        st = pq_err(PQ_ERR_FORMAT, "%s: histogram holds %llu values, count says %llu", where,
                    (unsigned long long)total, (unsigned long long)s->count);
        goto cleanup;
    }
cleanup:
    free(ca);
    free(bin);
    free(cnt);
    H5Gclose(g);
    return st;
}

pq_status pq_calib_h5_load(const char *path, pq_calib **out)
{
    pq_status st = PQ_OK;
    pq_calib *c = NULL;
    char *s_sha = NULL, *s_path = NULL, *s_data = NULL;
    int64_t L = 0, D = 0, F = 0, mbits = 0;
    hid_t f = H5I_INVALID_HID, g = H5I_INVALID_HID;
    *out = NULL;
    pq_h5u_quiet();
    if ((f = pq_h5u_open_ro(path)) < 0) {
        char d[256];
        pq_h5u_detail(d, sizeof d);
        return pq_err(PQ_ERR_FORMAT, "%s: cannot open as HDF5: %s", path, d);
    }
    /* a store of its own says its version; an older one keeps its strings
     * where this build does not read them (h5util.c) */
    int64_t ver = PQ_CALIB_FORMAT_VERSION;
    if (pq_h5u_has_attr(f, "format_version") && (st = pq_h5u_get_i64(f, "/", "format_version", &ver))) goto cleanup;
    if (ver != PQ_CALIB_FORMAT_VERSION) {
        st = pq_err(PQ_ERR_FORMAT, "%s: calibration format %lld; this build reads format %d%s", path, (long long)ver,
                    PQ_CALIB_FORMAT_VERSION, ver < PQ_CALIB_FORMAT_VERSION ? ": collect it again with proteus calibrate" : "");
        goto cleanup;
    }
    if ((g = H5Gopen2(f, "calibration", H5P_DEFAULT)) < 0) {
        H5Eclear2(H5E_DEFAULT);
        st = pq_err(PQ_ERR_FORMAT, "%s: no /calibration group (not a calibration store)", path);
        goto cleanup;
    }
    const char *where = "/calibration";
    if ((st = pq_h5u_get_i64(g, where, "hist_mbits", &mbits))) goto cleanup;
    if (mbits != PQ_HIST_MBITS) {
        st = pq_err(PQ_ERR_FORMAT, "%s: histogram grid with %lld mantissa bits; this build uses %d",
                    path, (long long)mbits, PQ_HIST_MBITS);
        goto cleanup;
    }
    if ((st = pq_h5u_get_i64(g, where, "num_layers", &L)) ||
        (st = pq_h5u_get_i64(g, where, "embed_dim", &D)) ||
        (st = pq_h5u_get_i64(g, where, "ffn_dim", &F)))
        goto cleanup;
    if (L <= 0 || L > 4096 || D <= 0 || D > (1 << 20) || F <= 0 || F > (1 << 22)) {
        st = pq_err(PQ_ERR_FORMAT, "%s: implausible architecture %lld layers, D %lld, F %lld", path,
                    (long long)L, (long long)D, (long long)F);
        goto cleanup;
    }
    if ((st = pq_calib_create((int)L, (int)D, (int)F, &c))) goto cleanup;
    /* Stores before format 3 name the model by a plain SHA-256, which
     * cannot be compared with the tree digest of the model to quantize. */
    if (!pq_h5u_has_attr(g, "model_sha256_tree")) {
        st = pq_err(PQ_ERR_FORMAT, "%s: the store names its model by a plain SHA-256 (model_sha256, "
                    "calibration format 2 or older); this build compares the tree digest "
                    "(model_sha256_tree): collect it again with proteus calibrate", path);
        goto cleanup;
    }
    if ((st = pq_h5u_get_str(g, where, "model_sha256_tree", &s_sha)) ||
        (st = pq_h5u_get_str(g, where, "model_path", &s_path)) ||
        (st = pq_h5u_get_str(g, where, "datasets", &s_data)) ||
        (st = get_u64(g, where, "n_sequences", &c->n_sequences)) ||
        (st = get_u64(g, where, "n_skipped", &c->n_skipped)))
        goto cleanup;
    snprintf(c->model_sha256, sizeof c->model_sha256, "%s", s_sha);
    if (*s_path) { c->model_path = s_path; s_path = NULL; }
    if (*s_data) { c->datasets = s_data; s_data = NULL; }
    for (int i = 0; i < c->n_sites; i++)
        if ((st = read_site(g, &c->sites[i]))) goto cleanup;
    *out = c;
    c = NULL;
cleanup:
    if (st && pq_err_last() == st) {
        char d[768];
        snprintf(d, sizeof d, "%s", pq_err_detail());
        if (!strstr(d, path)) pq_err_replace(st, "%s: %s", path, d);
    }
    free(s_sha); free(s_path); free(s_data);
    pq_calib_free(c);
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    return st;
}
