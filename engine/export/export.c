/* SPDX-License-Identifier: Apache-2.0 */
/* export.c - the export driver (export.h): the HDF5 copy, and the model
 * folders written into OUT.partial/ and renamed to OUT when complete. */
#include "export/export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/pq_io.h"
#include "export/folder.h"
#include "format/h5model.h"

static const char *const k_formats[] = {"hdf5", "safetensors", "compressed-tensors"};

pq_status pq_export_format_parse(const char *name, pq_export_format *out)
{
    for (int i = 0; i < (int)(sizeof k_formats / sizeof k_formats[0]); i++)
        if (name && !strcmp(name, k_formats[i])) {
            *out = (pq_export_format)i;
            return PQ_OK;
        }
    return pq_err(PQ_ERR_CONFIG, "export format '%s' is not supported (supported: hdf5, safetensors, "
                  "compressed-tensors)", name ? name : "(none)");
}

/* Every tensor of r read, checked and written again (.partial, renamed). */
static pq_status export_h5(pq_h5r *r, const char *out_path)
{
    pq_h5w *w = NULL;
    float *buf = NULL;
    pq_qtensor qt = {0};
    pq_status st = pq_h5w_create(out_path, pq_h5r_meta(r), &w);
    for (int64_t i = 0; i < pq_h5r_count(r) && !st; i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        if (e->quantized) {
            pq_qmetrics metrics = {0};
            if ((st = pq_h5r_read_qtensor(r, e, &qt)) ||
                (e->has_metrics && (st = pq_h5r_read_metrics(r, e->name, &metrics))) ||
                (st = pq_h5w_quant_begin(w, e->name, &qt.spec, qt.rows, qt.cols, e->scheme, e->method)) ||
                (st = pq_h5w_quant_rows(w, e->name, 0, qt.rows, qt.codes, qt.scale, qt.zero_point)) ||
                (st = pq_h5w_quant_end(w, e->name, &metrics)))
                break;
            pq_qtensor_free(&qt);
        } else {
            int64_t n = 1;
            for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
            if (!(buf = malloc((size_t)(n ? n : 1) * sizeof *buf))) {
                st = pq_err(PQ_ERR_RESOURCE, "out of memory");
                break;
            }
            if ((st = pq_h5r_read_f32(r, e, buf)) ||
                (st = pq_h5w_put_float(w, e->name, e->ndim, e->shape, buf, e->stored_dtype == PQ_DT_F16)))
                break;
            free(buf);
            buf = NULL;
        }
    }
    if (!st) {
        st = pq_h5w_commit(w);
        w = NULL;
    }
    free(buf);
    pq_qtensor_free(&qt);
    pq_h5w_abort(w);
    return st;
}

static const char *const k_folder_files[] = {"model.safetensors", "config.json", "vocab.txt",
                                             "tokenizer_config.json", "special_tokens_map.json"};
#define N_FOLDER_FILES (sizeof k_folder_files / sizeof k_folder_files[0])

/* Remove what an interrupted export left in dir (its own files only). */
static void remove_partial(const char *dir)
{
    char path[4096];
    for (size_t i = 0; i < N_FOLDER_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, k_folder_files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* out must be absent or an empty folder (then replaced). */
static pq_status check_out_dir(const char *out)
{
    struct stat sb;
    if (lstat(out, &sb) != 0) return errno == ENOENT ? PQ_OK : pq_err(PQ_ERR_IO, "%s: %s", out, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return pq_err(PQ_ERR_IO, "%s exists and is not a folder", out);
    DIR *d = opendir(out);
    if (!d) return pq_err(PQ_ERR_IO, "%s: %s", out, strerror(errno));
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty ? PQ_OK : pq_err(PQ_ERR_IO, "%s exists and is not empty: remove it or choose another --out", out);
}

static pq_status sync_path(const char *path, const char *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int e = fd < 0 || fsync(fd) < 0 ? errno : 0;
    if (fd >= 0) close(fd);
    return e ? pq_err(PQ_ERR_IO, "%s: fsync before renaming to %s failed: %s", path, out, strerror(e)) : PQ_OK;
}

static pq_status export_folder(pq_h5r *r, const char *out, const pq_export_opts *o)
{
    pq_folder f;
    pq_folder_fill_ctx *fc = NULL;
    char path[4096];
    pq_status st = check_out_dir(out);
    if (st) return st;
    char *partial = pq_partial_dup(out);
    if (!partial) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    if ((st = pq_folder_plan(r, o, &f))) {
        free(partial);
        return st;
    }
    remove_partial(partial); /* a stale one */
    if (mkdir(partial, 0755) != 0) {
        st = pq_err(PQ_ERR_IO, "%s: %s", partial, strerror(errno));
        goto cleanup;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", partial);
    if ((st = pq_folder_fill_open(r, &fc)) || (st = pq_stw_write(path, f.t, f.n, pq_folder_fill, fc)) ||
        (st = pq_folder_write_json(partial, r, o, &f)))
        goto cleanup;
    for (size_t i = 0; i < N_FOLDER_FILES && !st; i++) {
        snprintf(path, sizeof path, "%s/%s", partial, k_folder_files[i]);
        st = sync_path(path, out);
    }
    if (!st) st = sync_path(partial, out);
    if (!st && rename(partial, out) != 0)
        st = pq_err(PQ_ERR_IO, "%s: rename to %s failed: %s", partial, out, strerror(errno));
cleanup:
    if (st) remove_partial(partial);
    pq_folder_fill_close(fc);
    pq_folder_free(&f);
    free(partial);
    return st;
}

pq_status pq_export_run(const char *in_path, const char *out_path, const pq_export_opts *o)
{
    pq_h5r *r = NULL;
    if (!in_path || !out_path || !*out_path) return pq_err(PQ_ERR_CONFIG, "export needs an input and an output path");
    pq_status st = pq_h5r_open(in_path, &r);
    if (st) return st;
    st = o->format == PQ_EXPORT_HDF5 ? export_h5(r, out_path) : export_folder(r, out_path, o);
    pq_h5r_close(r);
    return st;
}
