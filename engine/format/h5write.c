/* SPDX-License-Identifier: Apache-2.0 */
/* h5write.c - the streaming writer of the Proteus HDF5 model (docs/FORMAT.md).
 *
 * Everything goes to OUT.partial; commit() closes every handle, fsyncs and
 * renames it, so a reader never sees a half-written OUT. Object time stamps
 * are off and the file-format bounds are pinned to 1.10 (checksummed
 * metadata), so the same calls in the same order give a byte-identical file.
 * Every dataset is chunked with the Fletcher-32 filter, with no fill, its
 * file space allocated when it is created, and written in whole chunks. A
 * quantized tensor's datasets are created when it is begun, in plan order,
 * so the layout does not depend on the order results arrive in. Its codes
 * are one chunk, whose file space is taken at begin without a byte of it
 * being written (h5vfd.h); the codes are then written once at known
 * offsets, also by other ranks on this machine (pwrite, never through
 * HDF5's caches), and each block adds its share of the chunk's checksum as
 * it comes (from memory, or read back when another rank wrote it), which
 * quant_end stores after the codes. Its scales and zero points are kept in
 * memory until quant_end and written whole.
 * Not thread-safe: one writer per process, used from one thread. */
#include "format/h5model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/h5util.h"
#include "format/h5vfd.h"
#include "base/pq_io.h"
#include "format/writeback.h"
#include "format/write_behind.h"

/* A quantized tensor between quant_begin and quant_end. */
typedef struct qopen {
    char *name;
    char where[320];          /* "/tensors/<name>" for details */
    pq_qspec spec;
    int64_t rows, cols, n_groups, row_bytes;
    hid_t grp, dq, ds, dz;    /* group, qweight, scale, zero_point (or invalid) */
    uint64_t code_off;        /* file offset of qweight's bytes (its one chunk) */
    pq_fletcher32_sum sum;    /* the checksum of the blocks written so far */
    float *scale;             /* the scales and zero points, written at quant_end */
    int32_t *zp;
    int64_t n_scales;
    uint8_t *done;            /* one flag per row, to catch gaps and overlaps */
    int64_t n_done;
} qopen;

struct pq_h5w {
    char *final_path, *partial_path;
    hid_t file, g_tensors, g_metrics, g_prov, g_recipe;
    hid_t gcpl, f16;
    hid_t vfd;                /* the file driver (h5vfd.h), registered for this writer */
    pq_h5vfd_skip skip;       /* its switch: a chunk's space taken without writing it */
    int fd;                   /* the .partial file: the codes (pwrite, and pread of
                               * other ranks' for their checksum), the commit's fsync */
    uint8_t *rbuf;            /* SEAL_BLOCK bytes for those reads, allocated on first use */
    qopen *q;
    int nq, capq;
    bool broken;              /* a write failed: the file must not be committed */
    pq_writeback *wb;         /* background writeback, joined before the file closes */
    pq_behind behind;         /* the codes written behind (large outputs) */
    bool behind_set;          /* behind initialised (at the first codes written) */
};

/* Bytes of another rank's codes read back per pread for their checksum. */
#define SEAL_BLOCK ((size_t)4 << 20)

static const char *const gran_names[] = {"tensor", "channel", "group"};

void pq_h5_recipe_text(char *buf, size_t n, bool quantized, const pq_qspec *s, const char *method, bool fp16)
{
    if (!quantized) {
        snprintf(buf, n, "%s", fp16 ? "fp16" : "fp32");
        return;
    }
    const char *g = (int)s->gran >= 0 && s->gran <= PQ_GRAN_GROUP ? gran_names[s->gran] : "?";
    char gs[16] = "";
    if (s->gran == PQ_GRAN_GROUP) snprintf(gs, sizeof gs, " %d", s->group_size);
    snprintf(buf, n, "int%d %s%s %s %s", s->bits, g, gs, s->symmetric ? "symmetric" : "asymmetric",
             method && *method ? method : "rtn");
}

/* /recipe/<name>: the tensor's recipe as pq_h5_recipe_text writes it. */
static pq_status put_recipe(pq_h5w *w, const char *name, bool quantized, const pq_qspec *s, const char *method,
                            bool fp16)
{
    char text[96];
    pq_h5_recipe_text(text, sizeof text, quantized, s, method, fp16);
    pq_status rc = pq_h5u_put_str(w->g_recipe, "/recipe", name, text);
    if (rc) w->broken = true;
    return rc;
}

static void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

static void qopen_close(qopen *q)
{
    close_id(&q->dz, H5Dclose);
    close_id(&q->ds, H5Dclose);
    close_id(&q->dq, H5Dclose);
    close_id(&q->grp, H5Gclose);
    free(q->done);
    free(q->scale);
    free(q->zp);
    free(q->name);
    memset(q, 0, sizeof *q);
}

/* Close every HDF5 handle of w (the file last). Returns the H5Fclose result. */
static herr_t close_all(pq_h5w *w)
{
    herr_t r = 0;
    for (int i = 0; i < w->nq; i++) qopen_close(&w->q[i]);
    w->nq = 0;
    close_id(&w->g_prov, H5Gclose);
    close_id(&w->g_recipe, H5Gclose);
    close_id(&w->g_metrics, H5Gclose);
    close_id(&w->g_tensors, H5Gclose);
    close_id(&w->f16, H5Tclose);
    close_id(&w->gcpl, H5Pclose);
    if (w->file >= 0) r = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    close_id(&w->vfd, H5FDunregister);
    return r;
}

static void free_writer(pq_h5w *w)
{
    pq_writeback_done(w->wb);
    if (w->fd >= 0) close(w->fd);
    free(w->rbuf);
    free(w->q);
    free(w->final_path);
    free(w->partial_path);
    free(w);
}

/* A failed write: w is unusable from here on. detail NULL takes it from the
 * HDF5 error stack, which must not have been touched since the failure. */
static pq_status io_fail_d(pq_h5w *w, const char *where, const char *what,
                           const char *detail)
{
    char eb[256];
    w->broken = true;
    return pq_err(PQ_ERR_IO, "%s: %s: %s failed: %s", w->partial_path, where, what,
                  detail ? detail : pq_h5u_detail(eb, sizeof eb));
}

static pq_status io_fail(pq_h5w *w, const char *where, const char *what)
{
    return io_fail_d(w, where, what, NULL);
}

static pq_status write_config(pq_h5w *w, const pq_esm2_config *c)
{
    char eb[256];
    const char *where = "/config";
    hid_t g = H5Gcreate2(w->file, "config", H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0)
        return pq_err(PQ_ERR_IO, "%s: cannot create /config: %s", w->partial_path,
                      pq_h5u_detail(eb, sizeof eb));
    pq_status rc = pq_h5u_put_i32(g, where, "num_layers", c->num_layers);
    if (!rc) rc = pq_h5u_put_i32(g, where, "embed_dim", c->embed_dim);
    if (!rc) rc = pq_h5u_put_i32(g, where, "attention_heads", c->attention_heads);
    if (!rc) rc = pq_h5u_put_i32(g, where, "head_dim", c->head_dim);
    if (!rc) rc = pq_h5u_put_i32(g, where, "ffn_dim", c->ffn_dim);
    if (!rc) rc = pq_h5u_put_i32(g, where, "vocab_size", c->vocab_size);
    if (!rc) rc = pq_h5u_put_f32(g, where, "layer_norm_eps", c->layer_norm_eps);
    if (!rc) rc = pq_h5u_put_bool(g, where, "token_dropout", c->token_dropout);
    if (!rc) rc = pq_h5u_put_bool(g, where, "has_contact_head", c->has_contact_head);
    if (!rc) rc = pq_h5u_put_bool(g, where, "has_decoder", c->has_decoder);
    H5Gclose(g);
    return rc;
}

static pq_status write_root(pq_h5w *w, const pq_h5_meta *m)
{
    const char *where = "/";
    pq_status rc = pq_h5u_put_str(w->file, where, "format", PQ_FORMAT_NAME);
    if (!rc) rc = pq_h5u_put_i32(w->file, where, "format_version", PQ_FORMAT_VERSION);
    if (!rc) rc = pq_h5u_put_str(w->file, where, "architecture", m->architecture);
    if (!rc) rc = pq_h5u_put_str(w->file, where, "model_name", m->model_name);
    /* NULL: delivered later with pq_h5w_set_source_digest (gathered from ranks) */
    if (!rc && m->source_sha256)
        rc = pq_h5w_set_source_digest(w, m->source_digest_alg, m->source_sha256, m->source_hash_chunk_bytes);
    if (!rc) rc = pq_h5u_put_str(w->file, where, "created_by", m->created_by);
    if (!rc) rc = pq_h5u_put_str(w->file, where, "config_json", m->config_json);
    if (!rc) rc = pq_h5u_put_i32(w->file, where, "num_ranks", m->num_ranks);
    return rc;
}

pq_status pq_h5w_create(const char *final_path, const pq_h5_meta *meta, pq_h5w **out)
{
    char eb[256];
    pq_status rc = PQ_OK;
    hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID;
    pq_h5w *w = NULL;

    *out = NULL;
    if (!final_path || !meta)
        return pq_err(PQ_ERR_INTERNAL, "pq_h5w_create: NULL path or meta");
    pq_h5u_quiet();
    if ((w = calloc(1, sizeof *w)) == NULL) goto nomem;
    w->file = w->g_tensors = w->g_metrics = w->g_prov = w->g_recipe = H5I_INVALID_HID;
    w->gcpl = w->f16 = w->vfd = H5I_INVALID_HID;
    w->fd = -1;
    w->final_path = strdup(final_path);
    w->partial_path = pq_partial_dup(final_path);
    if (!w->final_path || !w->partial_path) goto nomem;

    /* Pinned format bounds and no time stamps anywhere: reproducible bytes.
     * CLOSE_STRONG so that H5Fclose really closes the file. */
    if ((fapl = pq_h5u_fapl_write()) < 0 || (w->vfd = pq_h5vfd_register()) < 0 ||
        pq_h5vfd_set_fapl(fapl, w->vfd, &w->skip) < 0 ||
        (fcpl = H5Pcreate(H5P_FILE_CREATE)) < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 ||
        (w->gcpl = H5Pcreate(H5P_GROUP_CREATE)) < 0 ||
        H5Pset_obj_track_times(w->gcpl, 0) < 0 ||
        (w->f16 = pq_h5u_f16_type()) < 0) {
        rc = pq_err(PQ_ERR_INTERNAL, "%s: HDF5 property setup failed: %s", w->partial_path,
                    pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if ((w->file = H5Fcreate(w->partial_path, H5F_ACC_TRUNC, fcpl, fapl)) < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: cannot create: %s", w->partial_path,
                    pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if ((w->fd = open(w->partial_path, O_RDWR | O_CLOEXEC)) < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: cannot open for writing codes: %s", w->partial_path, strerror(errno));
        goto cleanup;
    }
    if ((rc = write_root(w, meta)) || (rc = write_config(w, &meta->cfg))) goto cleanup;
    if ((w->g_tensors = H5Gcreate2(w->file, "tensors", H5P_DEFAULT, w->gcpl, H5P_DEFAULT)) < 0 ||
        (w->g_metrics = H5Gcreate2(w->file, "metrics", H5P_DEFAULT, w->gcpl, H5P_DEFAULT)) < 0 ||
        (w->g_prov = H5Gcreate2(w->file, "provenance", H5P_DEFAULT, w->gcpl, H5P_DEFAULT)) < 0 ||
        (w->g_recipe = H5Gcreate2(w->file, "recipe", H5P_DEFAULT, w->gcpl, H5P_DEFAULT)) < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: cannot create top-level groups: %s", w->partial_path,
                    pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    *out = w;
    w = NULL;
    goto cleanup;
nomem:
    rc = pq_err(PQ_ERR_RESOURCE, "%s: out of memory creating the writer", final_path);
cleanup:
    if (fcpl >= 0) H5Pclose(fcpl);
    if (fapl >= 0) H5Pclose(fapl);
    if (w) {
        bool created = w->file >= 0;
        close_all(w);
        if (created) unlink(w->partial_path);
        free_writer(w);
    }
    return rc;
}

/* Tensor names become HDF5 link names: dots are fine, '/' would nest. */
static pq_status check_new_name(pq_h5w *w, const char *name)
{
    if (w->broken)
        return pq_err(PQ_ERR_INTERNAL, "%s: writer used after a failed write",
                      w->partial_path);
    if (!name || !name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor name '%s' is not a valid link name",
                      w->partial_path, name ? name : "(null)");
    if (strlen(name) > 255)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor name '%.40s...' is too long",
                      w->partial_path, name);
    htri_t ex = H5Lexists(w->g_tensors, name, H5P_DEFAULT);
    if (ex != 0) {
        H5Eclear2(H5E_DEFAULT);
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s written twice", w->partial_path, name);
    }
    return PQ_OK;
}

/* Write rows [row0, row0+n) of a dataset of rank nd (dims) from buf. On
 * failure the HDF5 detail is left in eb[256]. */
static herr_t write_rows(hid_t ds, hid_t mtype, int nd, const hsize_t *dims, int64_t row0,
                         int64_t n, const void *buf, char *eb)
{
    hsize_t start[PQ_MAX_DIMS] = {0}, count[PQ_MAX_DIMS];
    herr_t r = -1;
    hid_t fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    if (n <= 0) return 0;
    for (int i = 0; i < nd; i++) count[i] = dims[i];
    start[0] = (hsize_t)row0;
    count[0] = (hsize_t)n;
    if ((fs = H5Dget_space(ds)) < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        (ms = H5Screate_simple(nd, count, NULL)) < 0)
        goto cleanup;
    r = H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, buf);
cleanup:
    if (r < 0) pq_h5u_detail(eb, 256);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return r;
}

pq_status pq_h5w_put_float(pq_h5w *w, const char *name, int ndim, const int64_t *shape,
                           const float *data, bool as_fp16)
{
    char where[320];
    hsize_t dims[PQ_MAX_DIMS];
    int64_t n = 1;
    pq_status rc;
    hid_t g = H5I_INVALID_HID, sp = H5I_INVALID_HID, ds = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    uint16_t *tmp = NULL;

    if (!w) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_put_float: NULL writer");
    if ((rc = check_new_name(w, name))) return rc;
    snprintf(where, sizeof where, "/tensors/%s/data", name);
    if (ndim < 0 || ndim > PQ_MAX_DIMS || (ndim > 0 && !shape))
        return pq_err(PQ_ERR_INTERNAL, "%s: %s: bad rank %d", w->partial_path, where, ndim);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return pq_err(PQ_ERR_INTERNAL, "%s: %s: negative dimension", w->partial_path,
                          where);
        dims[i] = (hsize_t)shape[i];
        n *= shape[i];
    }
    if (n > 0 && !data)
        return pq_err(PQ_ERR_INTERNAL, "%s: %s: NULL data", w->partial_path, where);

    /* Chunks of about 1 MiB, file space taken as each is written (in row
     * order), never read back: a chunk is written by one H5Dwrite, whole
     * (the last may stop at the dataset's end; HDF5 zeroes the rest).
     * fp16 is converted one chunk of rows at a time. */
    int64_t row_elems = ndim ? (shape[0] ? n / shape[0] : 0) : 1;
    int64_t nrows = ndim ? shape[0] : 1;
    int64_t block = ndim ? (int64_t)pq_h5u_chunk_rows(ndim, dims, as_fp16 ? 2 : 4) : 1;
    if (block > nrows) block = nrows;
    if ((g = H5Gcreate2(w->g_tensors, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT)) < 0) {
        rc = io_fail(w, where, "group creation");
        goto cleanup;
    }
    if ((rc = put_recipe(w, name, false, NULL, NULL, as_fp16))) goto cleanup;
    sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    if (sp < 0 || (dcpl = pq_h5u_dcpl(ndim, dims, (hsize_t)block, false)) < 0 ||
        (ds = H5Dcreate2(g, "data", as_fp16 ? w->f16 : H5T_IEEE_F32LE, sp,
                         H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        rc = io_fail(w, where, "dataset creation");
        goto cleanup;
    }
    if (n == 0) goto cleanup;
    if (!as_fp16) {
        if (H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = io_fail(w, where, "write");
        goto cleanup;
    }
    /* fp16: our own RNE conversion (pq_f32_to_f16), a chunk at a time. */
    if ((tmp = malloc((size_t)(block * row_elems) * sizeof *tmp)) == NULL) {
        rc = pq_err(PQ_ERR_RESOURCE, "%s: %s: out of memory", w->partial_path, where);
        goto cleanup;
    }
    for (int64_t r0 = 0; r0 < nrows; r0 += block) {
        int64_t nb = nrows - r0 < block ? nrows - r0 : block;
        const float *src = data + r0 * row_elems;
        for (int64_t i = 0; i < nb * row_elems; i++) tmp[i] = pq_f32_to_f16(src[i]);
        char eb[256];
        herr_t hr = ndim ? write_rows(ds, w->f16, ndim, dims, r0, nb, tmp, eb)
                         : H5Dwrite(ds, w->f16, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp);
        if (hr < 0) {
            rc = io_fail_d(w, where, "write", ndim ? eb : NULL);
            goto cleanup;
        }
    }
cleanup:
    free(tmp);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (g >= 0) H5Gclose(g);
    return rc;
}

static qopen *find_open(pq_h5w *w, const char *name)
{
    for (int i = 0; i < w->nq; i++)
        if (!strcmp(w->q[i].name, name)) return &w->q[i];
    return NULL;
}

/* Create one dataset of q's group, dims of rank nd, as one chunk whose file
 * space is allocated now (early) or by the first write: written whole (or,
 * for the codes, by pwrite), HDF5 never reads back a chunk it has not
 * written. */
static pq_status make_ds(pq_h5w *w, qopen *q, const char *dsname, hid_t ftype, int nd,
                         const hsize_t *dims, bool early, hid_t *out)
{
    char where[352];
    pq_status rc = PQ_OK;
    hid_t sp = H5Screate_simple(nd, dims, NULL), dcpl = H5I_INVALID_HID;
    if (sp >= 0 && (dcpl = pq_h5u_dcpl(nd, dims, dims[0], early)) >= 0)
        *out = H5Dcreate2(q->grp, dsname, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (sp < 0 || dcpl < 0 || *out < 0) {
        snprintf(where, sizeof where, "%s/%s", q->where, dsname);
        rc = io_fail(w, where, "dataset creation");
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* Write all of dataset ds (whole chunks) from buf; the HDF5 detail of a
 * failure goes to eb[256]. */
static herr_t write_all(hid_t ds, hid_t mtype, const void *buf, char *eb)
{
    herr_t r = H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (r < 0) pq_h5u_detail(eb, 256);
    return r;
}

/* Rank and dims of the scale / zero_point datasets. */
static int scale_dims(const qopen *q, hsize_t *dims)
{
    switch (q->spec.gran) {
    case PQ_GRAN_TENSOR: dims[0] = 1; return 1;
    case PQ_GRAN_CHANNEL: dims[0] = (hsize_t)q->rows; return 1;
    default:
        dims[0] = (hsize_t)q->rows;
        dims[1] = (hsize_t)q->n_groups;
        return 2;
    }
}

/* The file space of q's one code chunk (its bytes and their 4-byte
 * checksum), taken now, so that its place follows plan order: a direct
 * chunk write, which runs no filter, whose bytes the file driver skips
 * (h5vfd.h). Nothing of the chunk is written until its codes come. Sets
 * q->code_off. */
static pq_status reserve_codes(pq_h5w *w, qopen *q)
{
    char where[352];
    const hsize_t origin[2] = {0, 0};
    uint64_t n = (uint64_t)q->rows * (uint64_t)q->row_bytes;
    unsigned mask = 1;
    haddr_t a = HADDR_UNDEF;
    hsize_t csize = 0;
    if (n == 0) return PQ_OK;
    snprintf(where, sizeof where, "%s/qweight", q->where);
    /* never read when the write is skipped; zeros if it were not: large,
     * so fresh pages that are never touched */
    void *zeros = calloc((size_t)n + 4, 1);
    if (!zeros) return pq_err(PQ_ERR_RESOURCE, "%s: %s: out of memory", w->partial_path, where);
    w->skip = (pq_h5vfd_skip){.size = (size_t)n + 4, .addr = HADDR_UNDEF};
    herr_t hr = H5Dwrite_chunk(q->dq, H5P_DEFAULT, 0, origin, (size_t)n + 4, zeros);
    haddr_t skipped = w->skip.addr;
    w->skip = (pq_h5vfd_skip){.size = 0, .addr = HADDR_UNDEF};
    free(zeros);
    if (hr < 0) return io_fail(w, where, "file space allocation");
    if (H5Dget_chunk_info_by_coord(q->dq, origin, &mask, &a, &csize) < 0 || a == HADDR_UNDEF ||
        csize != (hsize_t)n + 4 || mask != 0)
        return io_fail(w, where, "file space allocation");
    /* the skipped write must be the chunk's (else it wrote the zeros: slower, as correct) */
    if (skipped != HADDR_UNDEF && skipped != a)
        return io_fail_d(w, where, "file space allocation", "the driver skipped another write than the chunk's");
    q->code_off = (uint64_t)a;
    return PQ_OK;
}

/* Add rows [row0, row0 + n_rows) of q's codes to its checksum: from codes,
 * or, NULL, read back from the file, where another rank wrote them. */
static pq_status sum_codes(pq_h5w *w, qopen *q, int64_t row0, int64_t n_rows, const void *codes)
{
    char where[352];
    uint64_t total = (uint64_t)q->rows * (uint64_t)q->row_bytes;
    uint64_t off = (uint64_t)(row0 * q->row_bytes), n = (uint64_t)(n_rows * q->row_bytes);
    int e = 0;
    if (codes) {
        pq_fletcher32_add(&q->sum, codes, (size_t)n, off, total);
        return PQ_OK;
    }
    snprintf(where, sizeof where, "%s/qweight", q->where);
    if (!w->rbuf && (w->rbuf = malloc(SEAL_BLOCK)) == NULL)
        return pq_err(PQ_ERR_RESOURCE, "%s: %s: out of memory", w->partial_path, where);
    for (uint64_t done = 0; done < n;) {
        size_t c = n - done < SEAL_BLOCK ? (size_t)(n - done) : SEAL_BLOCK;
        ssize_t got = pread(w->fd, w->rbuf, c, (off_t)(q->code_off + off + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            e = got < 0 ? errno : EIO;
            break;
        }
        pq_fletcher32_add(&q->sum, w->rbuf, (size_t)got, off + done, total);
        done += (uint64_t)got;
    }
    return e ? io_fail_d(w, where, "read-back for the checksum", strerror(e)) : PQ_OK;
}

pq_status pq_h5w_quant_begin(pq_h5w *w, const char *name, const pq_qspec *spec,
                             int64_t rows, int64_t cols, const char *scheme,
                             const char *method)
{
    pq_status rc;
    qopen *q;
    if (!w || !spec) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_quant_begin: NULL argument");
    if ((rc = check_new_name(w, name))) return rc;
    if (find_open(w, name))
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s begun twice", w->partial_path, name);
    if ((spec->bits != 8 && spec->bits != 4) || (int)spec->gran < 0 ||
        spec->gran > PQ_GRAN_GROUP || (spec->gran == PQ_GRAN_GROUP && spec->group_size <= 0))
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s: unsupported qspec (bits %d, gran %d, "
                      "group_size %d)", w->partial_path, name, spec->bits, (int)spec->gran,
                      spec->group_size);
    if (rows < 0 || cols < 0)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s: negative shape", w->partial_path, name);
    if (!scheme) scheme = "";
    if (!method) method = "";
    if (strlen(scheme) >= sizeof ((pq_h5r_entry *)0)->scheme ||
        strlen(method) >= sizeof ((pq_h5r_entry *)0)->method)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s: scheme/method longer than 31 chars",
                      w->partial_path, name);

    if (w->nq == w->capq) {
        int cap = w->capq ? 2 * w->capq : 8;
        qopen *nq = realloc(w->q, (size_t)cap * sizeof *nq);
        if (!nq) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", w->partial_path);
        w->q = nq;
        w->capq = cap;
    }
    q = &w->q[w->nq];
    memset(q, 0, sizeof *q);
    q->grp = q->dq = q->ds = q->dz = H5I_INVALID_HID;
    q->spec = *spec;
    q->rows = rows;
    q->cols = cols;
    q->n_groups = spec->gran == PQ_GRAN_GROUP ? (cols + spec->group_size - 1) / spec->group_size
                                              : 1;
    q->row_bytes = pq_qspec_row_bytes(spec, cols);
    q->n_scales = spec->gran == PQ_GRAN_TENSOR ? 1 : rows * q->n_groups;
    snprintf(q->where, sizeof q->where, "/tensors/%s", name);
    /* HDF5 limits a chunk to 4 GiB, the checksum included */
    if ((uint64_t)rows * (uint64_t)q->row_bytes > UINT32_MAX - 4)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s: %lld x %lld code bytes exceed one HDF5 chunk (4 GiB)",
                      w->partial_path, name, (long long)rows, (long long)q->row_bytes);
    q->name = strdup(name);
    q->done = calloc((size_t)(rows > 0 ? rows : 1), 1);
    q->scale = calloc((size_t)(q->n_scales > 0 ? q->n_scales : 1), sizeof *q->scale);
    q->zp = calloc((size_t)(q->n_scales > 0 ? q->n_scales : 1), sizeof *q->zp);
    if (!q->name || !q->done || !q->scale || !q->zp) {
        qopen_close(q);
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", w->partial_path);
    }
    w->nq++;

    const int64_t shape[2] = {rows, cols};
    hsize_t qd[2] = {(hsize_t)rows, (hsize_t)q->row_bytes}, sd[2];
    int snd = scale_dims(q, sd);
    const char *wh = q->where;
    if ((q->grp = H5Gcreate2(w->g_tensors, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT)) < 0) {
        rc = io_fail(w, wh, "group creation");
        goto fail;
    }
    if ((rc = pq_h5u_put_i32(q->grp, wh, "bits", spec->bits)) ||
        (rc = pq_h5u_put_str(q->grp, wh, "scheme", scheme)) ||
        (rc = pq_h5u_put_str(q->grp, wh, "granularity", gran_names[spec->gran])) ||
        (rc = pq_h5u_put_i32(q->grp, wh, "group_size",
                             spec->gran == PQ_GRAN_GROUP ? spec->group_size : 0)) ||
        (rc = pq_h5u_put_bool(q->grp, wh, "symmetric", spec->symmetric)) ||
        (rc = pq_h5u_put_str(q->grp, wh, "method", method)) ||
        (rc = pq_h5u_put_i64_vec(q->grp, wh, "shape", 2, shape)) ||
        (rc = put_recipe(w, name, true, spec, method, false))) {
        w->broken = true;
        goto fail;
    }
    if ((rc = make_ds(w, q, "qweight", spec->bits == 8 ? H5T_STD_I8LE : H5T_STD_U8LE, 2, qd,
                      false, &q->dq)) ||
        (rc = reserve_codes(w, q)) ||
        (rc = make_ds(w, q, "scale", H5T_IEEE_F32LE, snd, sd, true, &q->ds)))
        goto fail;
    if (!spec->symmetric &&
        (rc = make_ds(w, q, "zero_point", H5T_STD_I32LE, snd, sd, true, &q->dz)))
        goto fail;
    return PQ_OK;
fail:
    qopen_close(q);
    w->nq--;
    return rc;
}

pq_status pq_h5w_quant_rows(pq_h5w *w, const char *name, int64_t row0, int64_t n_rows,
                            const void *codes, const float *scale, const int32_t *zp)
{
    char where[352];
    if (!w || !name) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_quant_rows: NULL argument");
    if (w->broken)
        return pq_err(PQ_ERR_INTERNAL, "%s: writer used after a failed write",
                      w->partial_path);
    qopen *q = find_open(w, name);
    if (!q)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s: rows written before quant_begin",
                      w->partial_path, name);
    if (row0 < 0 || n_rows < 0 || row0 > q->rows - n_rows)
        return pq_err(PQ_ERR_INTERNAL, "%s: %s: rows [%lld, %lld) outside [0, %lld)",
                      w->partial_path, q->where, (long long)row0,
                      (long long)(row0 + n_rows), (long long)q->rows);
    if (n_rows == 0) return PQ_OK;
    bool need_scale = q->spec.gran != PQ_GRAN_TENSOR || row0 == 0;
    if ((need_scale && !scale) || (need_scale && !q->spec.symmetric && !zp))
        return pq_err(PQ_ERR_INTERNAL, "%s: %s: NULL scale or zero_point",
                      w->partial_path, q->where);
    for (int64_t r = row0; r < row0 + n_rows; r++)
        if (q->done[r])
            return pq_err(PQ_ERR_INTERNAL, "%s: %s: row %lld written twice",
                          w->partial_path, q->where, (long long)r);

    int e = codes ? pq_pwrite_all(w->fd, codes, (size_t)(n_rows * q->row_bytes),
                                  q->code_off + (uint64_t)(row0 * q->row_bytes)) : 0;
    if (e) {
        snprintf(where, sizeof where, "%s/qweight", q->where);
        return io_fail_d(w, where, "write", strerror(e));
    }
    if (codes) {
        if (!w->behind_set) { /* every tensor is begun before the first rows */
            uint64_t total = 0;
            for (int i = 0; i < w->nq; i++) total += (uint64_t)w->q[i].rows * (uint64_t)w->q[i].row_bytes;
            pq_behind_init(&w->behind, w->fd, total);
            w->behind_set = true;
        }
        pq_behind_wrote(&w->behind, q->code_off + (uint64_t)(row0 * q->row_bytes), (uint64_t)(n_rows * q->row_bytes));
    }
    pq_status rc = sum_codes(w, q, row0, n_rows, codes);
    if (rc) return rc;
    if (need_scale) {
        /* The tensor-wide value is one element, given with the first block. */
        int64_t s0 = q->spec.gran == PQ_GRAN_TENSOR ? 0 : row0 * q->n_groups;
        int64_t ns = q->spec.gran == PQ_GRAN_TENSOR ? 1 : n_rows * q->n_groups;
        memcpy(q->scale + s0, scale, (size_t)ns * sizeof *scale);
        if (!q->spec.symmetric) memcpy(q->zp + s0, zp, (size_t)ns * sizeof *zp);
    }
    memset(q->done + row0, 1, (size_t)n_rows);
    q->n_done += n_rows;
    return PQ_OK;
}

/* The Fletcher-32 of q's codes, after them where the filter keeps it. */
static pq_status seal_codes(pq_h5w *w, const qopen *q)
{
    char where[352];
    uint64_t n = (uint64_t)q->rows * (uint64_t)q->row_bytes;
    if (n == 0) return PQ_OK;
    uint32_t sum = pq_fletcher32_sum_final(&q->sum);
    uint8_t le[4] = {(uint8_t)sum, (uint8_t)(sum >> 8), (uint8_t)(sum >> 16), (uint8_t)(sum >> 24)};
    int e = pq_pwrite_all(w->fd, le, sizeof le, q->code_off + n);
    if (!e) return PQ_OK;
    snprintf(where, sizeof where, "%s/qweight", q->where);
    return io_fail_d(w, where, "checksum write", strerror(e));
}

pq_status pq_h5w_quant_end(pq_h5w *w, const char *name, const pq_qmetrics *m)
{
    char where[352], eb[256];
    pq_status rc = PQ_OK;
    if (!w || !name) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_quant_end: NULL argument");
    qopen *q = find_open(w, name);
    if (!q)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s ended without quant_begin",
                      w->partial_path, name);
    if (q->n_done != q->rows)
        return pq_err(PQ_ERR_INTERNAL, "%s: %s: only %lld of %lld rows written",
                      w->partial_path, q->where, (long long)q->n_done, (long long)q->rows);
    if (q->n_scales > 0 && write_all(q->ds, H5T_NATIVE_FLOAT, q->scale, eb) < 0) {
        snprintf(where, sizeof where, "%s/scale", q->where);
        return io_fail_d(w, where, "write", eb);
    }
    if (q->n_scales > 0 && q->dz >= 0 && write_all(q->dz, H5T_NATIVE_INT32, q->zp, eb) < 0) {
        snprintf(where, sizeof where, "%s/zero_point", q->where);
        return io_fail_d(w, where, "write", eb);
    }
    if ((rc = seal_codes(w, q))) return rc;
    if (m) {
        snprintf(where, sizeof where, "/metrics/%s", name);
        hid_t g = H5Gcreate2(w->g_metrics, name, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
        if (g < 0) {
            rc = io_fail(w, where, "group creation");
        } else {
            if ((rc = pq_h5u_put_f64(g, where, "sqnr_db", m->sqnr_db)) ||
                (rc = pq_h5u_put_f64(g, where, "rel_l2", m->rel_l2)) ||
                (rc = pq_h5u_put_f64(g, where, "max_abs_err", m->max_abs_err)) ||
                (rc = pq_h5u_put_f64(g, where, "sum_sq", m->sum_sq)) ||
                (rc = pq_h5u_put_f64(g, where, "err_sq", m->err_sq)) ||
                (rc = pq_h5u_put_i64(g, where, "n_nonfinite", m->n_nonfinite)))
                w->broken = true;
            H5Gclose(g);
        }
    }
    qopen_close(q);
    *q = w->q[w->nq - 1];
    w->nq--;
    return rc;
}

pq_status pq_h5w_put_qtensor(pq_h5w *w, const char *name, const pq_qtensor *qt,
                             const char *scheme, const char *method)
{
    pq_status rc;
    if (!w || !qt) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_put_qtensor: NULL argument");
    int64_t rb = pq_qspec_row_bytes(&qt->spec, qt->cols);
    if (qt->code_row_bytes != rb)
        return pq_err(PQ_ERR_INTERNAL, "%s: tensor %s: code_row_bytes %lld, expected %lld",
                      w->partial_path, name ? name : "(null)",
                      (long long)qt->code_row_bytes, (long long)rb);
    if ((rc = pq_h5w_quant_begin(w, name, &qt->spec, qt->rows, qt->cols, scheme, method)))
        return rc;
    if ((rc = pq_h5w_quant_rows(w, name, 0, qt->rows, qt->codes, qt->scale, qt->zero_point)))
        return rc;
    return pq_h5w_quant_end(w, name, &qt->metrics);
}

pq_status pq_h5w_put_act_qparams(pq_h5w *w, const char *name, float scale, const int32_t *zp)
{
    char where[352];
    pq_status rc = PQ_OK;
    hsize_t one = 1;
    hid_t g = H5I_INVALID_HID, sp = H5I_INVALID_HID, d = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    if (!w || !name) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_put_act_qparams: NULL argument");
    snprintf(where, sizeof where, "/tensors/%s", name);
    if (H5Lexists(w->g_tensors, name, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return pq_err(PQ_ERR_INTERNAL, "%s: %s: act qparams for a tensor not written",
                      w->partial_path, where);
    }
    if ((g = H5Gopen2(w->g_tensors, name, H5P_DEFAULT)) < 0 ||
        (sp = H5Screate_simple(1, &one, NULL)) < 0 || (dcpl = pq_h5u_dcpl(1, &one, 1, true)) < 0 ||
        (d = H5Dcreate2(g, "act_scale", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl,
                        H5P_DEFAULT)) < 0 ||
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &scale) < 0) {
        rc = io_fail(w, where, "act_scale write");
        goto cleanup;
    }
    if (zp) {
        H5Dclose(d);
        if ((d = H5Dcreate2(g, "act_zero_point", H5T_STD_I32LE, sp, H5P_DEFAULT, dcpl,
                            H5P_DEFAULT)) < 0 ||
            H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, zp) < 0)
            rc = io_fail(w, where, "act_zero_point write");
    }
cleanup:
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    if (g >= 0) H5Gclose(g);
    return rc;
}

pq_status pq_h5w_codes_offset(pq_h5w *w, const char *name, uint64_t *offset)
{
    qopen *q = w && name ? find_open(w, name) : NULL;
    if (!q) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_codes_offset: tensor %s not begun", name ? name : "(null)");
    *offset = q->code_off;
    return PQ_OK;
}

const char *pq_h5w_partial_path(const pq_h5w *w)
{
    return w ? w->partial_path : NULL;
}

hid_t pq_h5w_file_id(pq_h5w *w)
{
    return w ? w->file : H5I_INVALID_HID;
}

pq_status pq_h5w_provenance(pq_h5w *w, const char *key, const char *value)
{
    if (!w || !key) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_provenance: NULL argument");
    pq_status rc = pq_h5u_put_str(w->g_prov, "/provenance", key, value);
    if (rc) w->broken = true;
    return rc;
}

pq_status pq_h5w_set_source_digest(pq_h5w *w, pq_digest_alg alg, const char *hex, int64_t chunk_bytes)
{
    /* A plain SHA-256 (a version-1 file exported again): the only hash
     * known, kept under its version-1 name. */
    if (chunk_bytes <= 0) return pq_h5u_put_str(w->file, "/", "source_sha256", hex);
    pq_status rc = pq_h5u_put_str(w->file, "/", "source_digest_algorithm", pq_digest_name(alg));
    if (!rc) rc = pq_h5u_put_str(w->file, "/", "source_digest_tree", hex);
    return rc ? rc : pq_h5u_put_i64(w->file, "/", "source_hash_chunk_bytes", chunk_bytes);
}

pq_status pq_h5w_preallocate(pq_h5w *w)
{
    haddr_t eoa = 0;
    if (!w || w->broken) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_preallocate: no usable writer");
    if (H5Fget_eoa(w->file, &eoa) < 0 || eoa == 0) {
        H5Eclear2(H5E_DEFAULT);
        return PQ_OK;
    }
    /* fallocate(2), never posix_fallocate: where the file system cannot
     * preallocate, glibc's fallback writes every byte */
    if (fallocate(w->fd, 0, 0, (off_t)eoa) == 0) return PQ_OK;
    if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG) {
        w->broken = true;
        return pq_err(PQ_ERR_IO, "%s: no room for the %.1f MB output: %s", w->partial_path, (double)eoa / 1e6,
                      strerror(errno));
    }
    return PQ_OK; /* EOPNOTSUPP and the like: the writes allocate as they go */
}

void pq_h5w_start_writeback(pq_h5w *w)
{
    if (!w || w->broken) return;
    pq_writeback_kick(&w->wb, w->partial_path);
}

pq_status pq_h5w_commit(pq_h5w *w)
{
    char eb[256];
    pq_status rc = PQ_OK;
    if (!w) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_commit: NULL writer");
    if (w->broken) {
        rc = pq_err(PQ_ERR_IO, "%s: not committed: an earlier write failed", w->final_path);
        goto fail;
    }
    if (w->nq) {
        rc = pq_err(PQ_ERR_INTERNAL, "%s: not committed: tensor %s begun but not ended",
                    w->final_path, w->q[0].name);
        goto fail;
    }
    /* The codes' last pages go out while H5Fclose writes the metadata, so
     * that the fsync below waits for less. H5Fclose flushes everything: a
     * flush of its own first only costs a second walk of the metadata cache */
    pq_writeback_kick(&w->wb, w->partial_path);
    if (close_all(w) < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: close failed: %s", w->partial_path,
                    pq_h5u_detail(eb, sizeof eb));
        goto fail;
    }
    pq_writeback_done(w->wb);
    w->wb = NULL;
    if ((rc = pq_publish(w->partial_path, w->final_path))) goto fail;
    free_writer(w);
    return PQ_OK;
fail:
    pq_h5w_abort(w);
    return rc;
}

void pq_h5w_close_keep(pq_h5w *w)
{
    if (!w) return;
    close_all(w);
    H5Eclear2(H5E_DEFAULT);
    free_writer(w);
}

void pq_h5w_abort(pq_h5w *w)
{
    if (!w) return;
    close_all(w);
    H5Eclear2(H5E_DEFAULT);
    unlink(w->partial_path);
    free_writer(w);
}
