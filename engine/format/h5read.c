/* SPDX-License-Identifier: Apache-2.0 */
/* h5read.c - the validating reader of the Proteus HDF5 model (docs/FORMAT.md).
 *
 * open() checks the format name and version, /config against itself and the
 * named architecture, and every /tensors group (dtypes, shapes and the
 * Fletcher-32 filter of data, qweight, scale, zero_point against the attrs)
 * before anything is read; reads verify the checksums (unless told not to)
 * and the scales and zero points. Strings are read only from fixed-length
 * attributes (h5util.c). Details name the file and the dataset path. */
#include "format/h5model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/h5util.h"
#include "pq_config.h"

#if PQ_HAVE_OPENMP
#include <omp.h>
#endif

struct pq_h5r {
    char *path;
    hid_t file;
    hid_t dxpl;                 /* reads: Fletcher-32 verified or skipped */
    bool verify;                /* the same, for the direct reads of codes */
    int fd;                     /* the file for those reads; -1: HDF5 reads all */
    int n_threads;              /* that check a chunk's checksum (0: the OpenMP default) */
    int64_t ahead;              /* file bytes below this were asked ahead (READ_AHEAD_BYTES) */
    pq_h5_meta meta;
    char *s_arch, *s_model, *s_sha, *s_created, *s_config;  /* owned meta strings */
    pq_h5r_entry *ent;
    int64_t n, cap;
};

/* Bytes of the file past a tensor's codes that the kernel is asked to read
 * in the background (posix_fadvise WILLNEED) while the caller packs the
 * codes just read: the next tensors' codes follow them in the file. */
#define READ_AHEAD_BYTES ((int64_t)512 << 20)

/* ---- helpers ---- */

static int direct_fd(const pq_h5r *r);

static const char *type_name(hid_t t, char *buf, size_t n)
{
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    if (c == H5T_INTEGER)
        snprintf(buf, n, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", sz * 8);
    else if (c == H5T_FLOAT)
        snprintf(buf, n, "float%zu%s", sz * 8,
                 sz == 2 && !pq_h5u_is_f16(t) ? " (not IEEE half)" : "");
    else if (c == H5T_STRING)
        snprintf(buf, n, "string");
    else
        snprintf(buf, n, "HDF5 class %d size %zu", (int)c, sz);
    return buf;
}

static bool link_exists(hid_t loc, const char *name)
{
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex < 0) H5Eclear2(H5E_DEFAULT);
    return ex > 0;
}

/* Like link_exists but a damaged group is an error naming where/name. */
static pq_status link_probe(const pq_h5r *r, hid_t loc, const char *where, const char *name,
                            bool *ex)
{
    char eb[256];
    htri_t t = H5Lexists(loc, name, H5P_DEFAULT);
    if (t < 0)
        return pq_err(PQ_ERR_FORMAT, "%s: %s/%s: corrupt group: %s", r->path, where, name,
                      pq_h5u_detail(eb, sizeof eb));
    *ex = t > 0;
    return PQ_OK;
}

/* Expected element type of a dataset. */
typedef enum ds_kind { K_I8, K_U8, K_I32, K_F32, K_F32_OR_F16 } ds_kind;

static const char *const kind_names[] = {"int8", "uint8", "int32", "float32",
                                         "float32 or float16"};

static bool kind_ok(hid_t t, ds_kind k)
{
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    switch (k) {
    case K_I8: return c == H5T_INTEGER && sz == 1 && H5Tget_sign(t) == H5T_SGN_2;
    case K_U8: return c == H5T_INTEGER && sz == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
    case K_I32: return c == H5T_INTEGER && sz == 4 && H5Tget_sign(t) == H5T_SGN_2;
    case K_F32: return c == H5T_FLOAT && sz == 4;
    case K_F32_OR_F16: return (c == H5T_FLOAT && sz == 4) || pq_h5u_is_f16(t);
    }
    return false;
}

/* Check dataset <grp>/<ds> (where = the group's path) has element kind k and,
 * when nd >= 0, exactly dims[0..nd). Reports its rank/dims/f16-ness through
 * the optional outputs. */
static pq_status check_ds(const pq_h5r *r, hid_t grp, const char *where, const char *ds,
                          ds_kind k, int nd, const hsize_t *dims, int *nd_out,
                          hsize_t *dims_out, bool *is_f16)
{
    char eb[256], tb[64], db[160], xb[160];
    pq_status rc = PQ_OK;
    hid_t d = H5I_INVALID_HID, t = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    hsize_t fd[H5S_MAX_RANK];
    if ((d = H5Dopen2(grp, ds, H5P_DEFAULT)) < 0 || (t = H5Dget_type(d)) < 0 ||
        (sp = H5Dget_space(d)) < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s/%s: cannot open dataset: %s", r->path, where, ds,
                    pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    int fnd = H5Sget_simple_extent_ndims(sp);
    if (fnd < 0 || fnd > PQ_MAX_DIMS || H5Sget_simple_extent_dims(sp, fd, NULL) < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s/%s: unsupported dataspace (rank %d)", r->path,
                    where, ds, fnd);
        goto cleanup;
    }
    bool shape_ok = nd < 0 || fnd == nd;
    for (int i = 0; shape_ok && nd >= 0 && i < nd; i++) shape_ok = fd[i] == dims[i];
    if (!kind_ok(t, k) || !shape_ok) {
        if (nd >= 0) pq_h5u_dims_str(nd, dims, xb, sizeof xb);
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s/%s: expected %s%s%s, found %s %s", r->path, where,
                    ds, kind_names[k], nd >= 0 ? " " : "", nd >= 0 ? xb : "",
                    type_name(t, tb, sizeof tb), pq_h5u_dims_str(fnd, fd, db, sizeof db));
        goto cleanup;
    }
    /* docs/FORMAT.md, "Checksums on the data": a scalar cannot be chunked,
     * so it is compact, its value under the object header's checksum */
    if (fnd == 0 && !pq_h5u_is_compact(d)) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s/%s: a scalar dataset not stored compact: its value lies outside the "
                    "checksummed object header, where format version %d keeps it", r->path, where, ds,
                    PQ_FORMAT_VERSION);
        goto cleanup;
    }
    if (H5Sget_simple_extent_npoints(sp) > 0 && fnd > 0 && !pq_h5u_has_fletcher32(d)) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s/%s: not chunked with the Fletcher-32 checksum every dataset of "
                    "format version %d carries", r->path, where, ds, PQ_FORMAT_VERSION);
        goto cleanup;
    }
    if (nd_out) *nd_out = fnd;
    if (dims_out) memcpy(dims_out, fd, (size_t)fnd * sizeof *fd);
    if (is_f16) *is_f16 = pq_h5u_is_f16(t);
cleanup:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    return rc;
}

/* Most elements of one tensor: far above any model's, and low enough that
 * element and byte counts (and sizes rounded up to groups) stay in int64. */
#define MAX_NUMEL ((int64_t)1 << 40)

/* A shape read from the file (dataset dims or the shape attribute) holds at
 * most MAX_NUMEL elements: HDF5 declares a dataset's extent without storing
 * it, so a file can claim any size. */
static pq_status check_numel(const pq_h5r *r, const char *where, int nd, const hsize_t *dims)
{
    char db[160];
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        if (dims[i] > (hsize_t)MAX_NUMEL || (dims[i] && n > MAX_NUMEL / (int64_t)dims[i]))
            return pq_err(PQ_ERR_FORMAT, "%s: %s: shape %s holds more than 2^40 elements", r->path, where,
                          pq_h5u_dims_str(nd, dims, db, sizeof db));
        n *= (int64_t)dims[i];
    }
    return PQ_OK;
}

static pq_status load_float(const pq_h5r *r, hid_t g, const char *where, pq_h5r_entry *e)
{
    hsize_t dims[H5S_MAX_RANK];
    bool f16 = false;
    pq_status rc = check_ds(r, g, where, "data", K_F32_OR_F16, -1, NULL, &e->ndim, dims, &f16);
    if (rc || (rc = check_numel(r, where, e->ndim, dims))) return rc;
    for (int i = 0; i < e->ndim; i++) e->shape[i] = (int64_t)dims[i];
    e->quantized = false;
    e->stored_dtype = f16 ? PQ_DT_F16 : PQ_DT_F32;
    return PQ_OK;
}

static pq_status copy_short(const pq_h5r *r, hid_t g, const char *where, const char *attr,
                            char *dst, size_t n)
{
    char aw[640], *s = NULL;
    snprintf(aw, sizeof aw, "%s: %s", r->path, where);
    pq_status rc = pq_h5u_get_str(g, aw, attr, &s);
    if (rc) return rc;
    if (strlen(s) >= n) rc = pq_err(PQ_ERR_FORMAT, "%s: %s: attribute %s longer than %zu "
                                    "characters", r->path, where, attr, n - 1);
    else memcpy(dst, s, strlen(s) + 1);
    free(s);
    return rc;
}

static pq_status load_quant(const pq_h5r *r, hid_t g, const char *where, pq_h5r_entry *e)
{
    char aw[640];  /* "file: /tensors/<name>" for the attribute helpers */
    char *gran = NULL;
    int64_t bits = 0, gs = 0, shape[2] = {0, 0};
    bool sym = false;
    pq_status rc;

    snprintf(aw, sizeof aw, "%s: %s", r->path, where);
    if ((rc = pq_h5u_get_i64(g, aw, "bits", &bits)) ||
        (rc = pq_h5u_get_str(g, aw, "granularity", &gran)) ||
        (rc = pq_h5u_get_i64(g, aw, "group_size", &gs)) ||
        (rc = pq_h5u_get_bool(g, aw, "symmetric", &sym)) ||
        (rc = pq_h5u_get_i64_vec(g, aw, "shape", 2, shape)) ||
        (rc = copy_short(r, g, where, "scheme", e->scheme, sizeof e->scheme)) ||
        (rc = copy_short(r, g, where, "method", e->method, sizeof e->method)))
        goto cleanup;
    if (bits != 8 && bits != 4) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s: bits = %lld, expected 8 or 4", r->path, where,
                    (long long)bits);
        goto cleanup;
    }
    if (!strcmp(gran, "tensor")) e->spec.gran = PQ_GRAN_TENSOR;
    else if (!strcmp(gran, "channel")) e->spec.gran = PQ_GRAN_CHANNEL;
    else if (!strcmp(gran, "group")) e->spec.gran = PQ_GRAN_GROUP;
    else {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s: granularity '%s', expected tensor, channel or "
                    "group", r->path, where, gran);
        goto cleanup;
    }
    if (e->spec.gran == PQ_GRAN_GROUP && (gs <= 0 || gs > (1 << 30))) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s: group_size = %lld is not a positive size",
                    r->path, where, (long long)gs);
        goto cleanup;
    }
    if (shape[0] < 0 || shape[1] < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s: negative shape attribute", r->path, where);
        goto cleanup;
    }
    if ((rc = check_numel(r, where, 2, (const hsize_t[2]){(hsize_t)shape[0], (hsize_t)shape[1]})))
        goto cleanup;
    e->spec.bits = (int)bits;
    e->spec.group_size = e->spec.gran == PQ_GRAN_GROUP ? (int)gs : 0;
    e->spec.symmetric = sym;
    e->quantized = true;
    e->ndim = 2;
    e->shape[0] = shape[0];
    e->shape[1] = shape[1];
    e->stored_dtype = bits == 8 ? PQ_DT_I8 : PQ_DT_U8;

    hsize_t qd[2] = {(hsize_t)shape[0], (hsize_t)pq_qspec_row_bytes(&(pq_qspec){.bits = bits}, shape[1])};
    hsize_t sd[2] = {1, 1};
    int snd = 1;
    if (e->spec.gran == PQ_GRAN_CHANNEL) {
        sd[0] = (hsize_t)shape[0];
    } else if (e->spec.gran == PQ_GRAN_GROUP) {
        snd = 2;
        sd[0] = (hsize_t)shape[0];
        sd[1] = (hsize_t)((shape[1] + gs - 1) / gs);
    }
    if ((rc = check_ds(r, g, where, "qweight", bits == 8 ? K_I8 : K_U8, 2, qd, NULL, NULL,
                       NULL)) ||
        (rc = check_ds(r, g, where, "scale", K_F32, snd, sd, NULL, NULL, NULL)))
        goto cleanup;
    bool has_zp = false;
    if ((rc = link_probe(r, g, where, "zero_point", &has_zp))) goto cleanup;
    if (has_zp == sym) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s/zero_point: %s for a%s tensor", r->path, where,
                    has_zp ? "present" : "missing", sym ? " symmetric" : "n asymmetric");
        goto cleanup;
    }
    if (has_zp && (rc = check_ds(r, g, where, "zero_point", K_I32, snd, sd, NULL, NULL, NULL)))
        goto cleanup;
    if (link_exists(g, "act_scale")) {
        const hsize_t one = 1;
        if ((rc = check_ds(r, g, where, "act_scale", K_F32, 1, &one, NULL, NULL, NULL)))
            goto cleanup;
        if (link_exists(g, "act_zero_point") &&
            (rc = check_ds(r, g, where, "act_zero_point", K_I32, 1, &one, NULL, NULL, NULL)))
            goto cleanup;
        e->has_act_scale = true;
    }
cleanup:
    free(gran);
    return rc;
}

static pq_status load_entry(pq_h5r *r, hid_t gt, hid_t gm, pq_h5r_entry *e)
{
    char eb[256], where[320];
    pq_status rc;
    snprintf(where, sizeof where, "/tensors/%s", e->name);
    hid_t g = H5Gopen2(gt, e->name, H5P_DEFAULT);
    if (g < 0)
        return pq_err(PQ_ERR_FORMAT, "%s: %s: not a group: %s", r->path, where,
                      pq_h5u_detail(eb, sizeof eb));
    bool has_data = false, has_q = false, has_s = false;
    if ((rc = link_probe(r, g, where, "data", &has_data)) ||
        (rc = link_probe(r, g, where, "qweight", &has_q)) ||
        (rc = link_probe(r, g, where, "scale", &has_s)))
        ;
    else if (has_data)
        rc = load_float(r, g, where, e);
    else if (has_q && has_s)
        rc = load_quant(r, g, where, e);
    else
        rc = pq_err(PQ_ERR_FORMAT, "%s: %s: has neither 'data' nor 'qweight' + 'scale'",
                    r->path, where);
    H5Gclose(g);
    e->has_metrics = gm >= 0 && link_exists(gm, e->name);
    if (!rc) pq_h5_recipe_text(e->recipe, sizeof e->recipe, e->quantized, &e->spec, e->method,
                               e->stored_dtype == PQ_DT_F16);
    return rc;
}

static herr_t count_cb(hid_t loc, const char *name, const H5A_info_t *info, void *user)
{
    (void)loc;
    (void)name;
    (void)info;
    ++*(int64_t *)user;
    return 0;
}

/* Format version 4: /recipe holds one entry per tensor, and each says what
 * the tensor's own datasets and attributes say. */
static pq_status check_recipe(pq_h5r *r)
{
    char eb[256];
    pq_status rc = PQ_OK;
    if (!link_exists(r->file, "recipe")) {
        H5Eclear2(H5E_DEFAULT);
        return pq_err(PQ_ERR_FORMAT, "%s: /recipe group missing (format version %d carries one)", r->path,
                      r->meta.format_version);
    }
    hid_t g = H5Gopen2(r->file, "recipe", H5P_DEFAULT);
    int64_t n_attrs = 0;
    if (g < 0 || H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, count_cb, &n_attrs) < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: /recipe: cannot open: %s", r->path, pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if (n_attrs != r->n) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: /recipe has %lld entries for %lld tensors", r->path, (long long)n_attrs,
                    (long long)r->n);
        goto cleanup;
    }
    for (int64_t i = 0; i < r->n && !rc; i++) {
        const pq_h5r_entry *e = &r->ent[i];
        char *text = NULL;
        if (!pq_h5u_has_attr(g, e->name)) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: /recipe has no entry for tensor %s", r->path, e->name);
            break;
        }
        if ((rc = pq_h5u_get_str(g, "/recipe", e->name, &text))) break;
        if (strcmp(text, e->recipe))
            rc = pq_err(PQ_ERR_FORMAT, "%s: /recipe says tensor %s is '%s', its datasets and attributes say '%s'",
                        r->path, e->name, text, e->recipe);
        free(text);
    }
cleanup:
    if (g >= 0) H5Gclose(g);
    return rc;
}

static herr_t collect_cb(hid_t g, const char *name, const H5L_info_t *info, void *user)
{
    (void)g;
    (void)info;
    pq_h5r *r = user;
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 64;
        pq_h5r_entry *ne = realloc(r->ent, (size_t)cap * sizeof *ne);
        if (!ne) return -1;
        r->ent = ne;
        r->cap = cap;
    }
    memset(&r->ent[r->n], 0, sizeof r->ent[r->n]);
    if ((r->ent[r->n].name = strdup(name)) == NULL) return -1;
    r->n++;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const pq_h5r_entry *)a)->name, ((const pq_h5r_entry *)b)->name);
}

/* /config holds together and, for a published architecture, is that
 * architecture. */
static pq_status check_config(const pq_h5r *r, const pq_esm2_config *c, double eps)
{
    if (c->num_layers < 1 || c->embed_dim < 1 || c->attention_heads < 1 || c->ffn_dim < 1 ||
        c->vocab_size < 1 || c->head_dim < 1 ||
        c->embed_dim != (int64_t)c->attention_heads * c->head_dim) /* each up to 2^30 */
        return pq_err(PQ_ERR_FORMAT, "%s: /config: %d layers, embed_dim %d, %d heads of %d, ffn_dim %d, vocab %d "
                      "do not make a model (embed_dim must be heads x head_dim, all positive)", r->path,
                      c->num_layers, c->embed_dim, c->attention_heads, c->head_dim, c->ffn_dim, c->vocab_size);
    if (!isfinite(eps) || !(eps > 0) || eps > 1)
        return pq_err(PQ_ERR_FORMAT, "%s: /config: layer_norm_eps = %g, expected a small positive number", r->path,
                      eps);
    const pq_esm2_arch *a = c->arch;
    if (a && (a->num_layers != c->num_layers || a->embed_dim != c->embed_dim ||
              a->attention_heads != c->attention_heads || a->ffn_dim != c->ffn_dim ||
              a->vocab_size != c->vocab_size))
        return pq_err(PQ_ERR_FORMAT, "%s: /config (%d layers, embed_dim %d, %d heads, ffn_dim %d, vocab %d) is not "
                      "the architecture %s the file names", r->path, c->num_layers, c->embed_dim,
                      c->attention_heads, c->ffn_dim, c->vocab_size, r->s_arch);
    return PQ_OK;
}

static pq_status read_meta(pq_h5r *r)
{
    char *fmt = NULL;
    int64_t ver = 0, v = 0;
    pq_status rc;
    hid_t f = r->file, gc = H5I_INVALID_HID;
    char root[560], cfgw[560];
    const char *where = root;
    snprintf(root, sizeof root, "%s: /", r->path);
    snprintf(cfgw, sizeof cfgw, "%s: /config", r->path);
    pq_esm2_config *c = &r->meta.cfg;

    char eb[256];
    htri_t ex = H5Aexists(f, "format");
    if (ex < 0)
        return pq_err(PQ_ERR_FORMAT, "%s: corrupt HDF5 file: cannot read the root "
                      "attributes: %s", r->path, pq_h5u_detail(eb, sizeof eb));
    if (ex == 0)
        return pq_err(PQ_ERR_FORMAT, "%s: not a Proteus model file (no /format attribute)",
                      r->path);
    /* the version first: older files keep their strings where this build
     * does not read them (h5util.c), and deserve a clearer word */
    if (pq_h5u_has_attr(f, "format_version")) {
        if ((rc = pq_h5u_get_i64(f, where, "format_version", &ver))) return rc;
        if (ver >= 1 && ver < PQ_FORMAT_VERSION_MIN)
            return pq_err(PQ_ERR_FORMAT, "%s: format_version %lld was written by an older Proteus (strings in "
                          "HDF5's unchecked global heap, no checksums) and is not read by this build (version "
                          "%d): quantize the model again", r->path, (long long)ver, PQ_FORMAT_VERSION);
    }
    if ((rc = pq_h5u_get_str(f, where, "format", &fmt))) return rc;
    if (strcmp(fmt, PQ_FORMAT_NAME)) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: attribute /format is '%s', expected '%s'", r->path,
                    fmt, PQ_FORMAT_NAME);
        free(fmt);
        return rc;
    }
    free(fmt);
    if ((rc = pq_h5u_get_i64(f, where, "format_version", &ver))) return rc;
    if (ver < PQ_FORMAT_VERSION_MIN || ver > PQ_FORMAT_VERSION)
        return pq_err(PQ_ERR_FORMAT, "%s: format_version %lld is not supported (this build "
                      "reads versions %d to %d)", r->path, (long long)ver, PQ_FORMAT_VERSION_MIN, PQ_FORMAT_VERSION);
    r->meta.format_version = (int)ver;
    /* The tree digest: source_digest_tree in its source_digest_algorithm
     * (version 5), source_sha256_tree (SHA-256, versions 3 and 4); a
     * version-1 file exported again by an older build kept its plain
     * SHA-256 (source_sha256), which this one still carries over. */
    const char *tree_attr = pq_h5u_has_attr(f, "source_digest_tree") ? "source_digest_tree"
                            : pq_h5u_has_attr(f, "source_sha256_tree") ? "source_sha256_tree" : NULL;
    r->meta.source_digest_alg = PQ_DIGEST_SHA256;
    if (tree_attr && !strcmp(tree_attr, "source_digest_tree")) {
        char *alg = NULL;
        if ((rc = pq_h5u_get_str(f, where, "source_digest_algorithm", &alg))) goto fail;
        bool known = pq_digest_parse(alg, &r->meta.source_digest_alg) && strcmp(alg, "xxh3");
        if (!known)
            rc = pq_err(PQ_ERR_FORMAT, "%s: source_digest_algorithm is '%s', expected sha256 or xxh3-128", r->path,
                        alg);
        free(alg);
        if (rc) goto fail;
    }
    if (tree_attr && ((rc = pq_h5u_get_str(f, where, tree_attr, &r->s_sha)) ||
                      (rc = pq_h5u_get_i64(f, where, "source_hash_chunk_bytes", &r->meta.source_hash_chunk_bytes))))
        goto fail;
    if (tree_attr && r->meta.source_hash_chunk_bytes <= 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: source_hash_chunk_bytes is %lld, expected a positive size", r->path,
                    (long long)r->meta.source_hash_chunk_bytes);
        goto fail;
    }
    if (!tree_attr && (rc = pq_h5u_get_str(f, where, "source_sha256", &r->s_sha))) goto fail;
    if ((rc = pq_h5u_get_str(f, where, "architecture", &r->s_arch)) ||
        (rc = pq_h5u_get_str(f, where, "model_name", &r->s_model)) ||
        (rc = pq_h5u_get_str(f, where, "created_by", &r->s_created)) ||
        (rc = pq_h5u_get_str(f, where, "config_json", &r->s_config)) ||
        (rc = pq_h5u_get_i64(f, where, "num_ranks", &v)))
        goto fail;
    r->meta.architecture = r->s_arch;
    r->meta.model_name = r->s_model;
    r->meta.source_sha256 = r->s_sha;
    r->meta.created_by = r->s_created;
    r->meta.config_json = r->s_config;
    if (v < 1 || v > (1 << 24)) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: num_ranks = %lld is not a rank count", r->path, (long long)v);
        goto fail;
    }
    r->meta.num_ranks = (int)v;

    if (!link_exists(f, "config") || (gc = H5Gopen2(f, "config", H5P_DEFAULT)) < 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = pq_err(PQ_ERR_FORMAT, "%s: /config group missing", r->path);
        goto fail;
    }
    where = cfgw;
    int64_t iv[6];
    double eps = 0;
    static const char *const keys[6] = {"num_layers", "embed_dim", "attention_heads",
                                        "ffn_dim", "vocab_size", "head_dim"};
    for (int i = 0; i < 5; i++)
        if ((rc = pq_h5u_get_i64(gc, where, keys[i], &iv[i]))) goto fail;
    iv[5] = iv[2] > 0 ? iv[1] / iv[2] : 0;
    if (pq_h5u_has_attr(gc, keys[5]) && (rc = pq_h5u_get_i64(gc, where, keys[5], &iv[5])))
        goto fail;
    for (int i = 0; i < 6; i++)
        if (iv[i] < 0 || iv[i] > (1 << 30)) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: /config: %s = %lld out of range", r->path,
                        keys[i], (long long)iv[i]);
            goto fail;
        }
    c->num_layers = (int)iv[0];
    c->embed_dim = (int)iv[1];
    c->attention_heads = (int)iv[2];
    c->ffn_dim = (int)iv[3];
    c->vocab_size = (int)iv[4];
    c->head_dim = (int)iv[5];
    if ((rc = pq_h5u_get_f64(gc, where, "layer_norm_eps", &eps)) ||
        (rc = pq_h5u_get_bool(gc, where, "token_dropout", &c->token_dropout)))
        goto fail;
    c->layer_norm_eps = (float)eps;
    if (pq_h5u_has_attr(gc, "has_contact_head") &&
        (rc = pq_h5u_get_bool(gc, where, "has_contact_head", &c->has_contact_head)))
        goto fail;
    if (pq_h5u_has_attr(gc, "has_decoder") &&
        (rc = pq_h5u_get_bool(gc, where, "has_decoder", &c->has_decoder)))
        goto fail;
    c->arch = pq_esm2_arch_find(r->s_arch);
    rc = check_config(r, c, eps);
fail:
    if (gc >= 0) H5Gclose(gc);
    return rc;
}

pq_status pq_h5r_open(const char *path, pq_h5r **out)
{
    char eb[256];
    pq_status rc = PQ_OK;
    pq_h5r *r = NULL;
    hid_t gt = H5I_INVALID_HID, gm = H5I_INVALID_HID;

    *out = NULL;
    if (!path) return pq_err(PQ_ERR_INTERNAL, "pq_h5r_open: NULL path");
    pq_h5u_quiet();
    if (access(path, R_OK) < 0)
        return pq_err(PQ_ERR_IO, "%s: cannot open for reading: %m", path);
    if ((r = calloc(1, sizeof *r)) == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", path);
    }
    r->file = H5I_INVALID_HID;
    r->fd = -1;
    r->verify = true;
    if ((r->dxpl = pq_h5u_dxpl(true)) < 0) {
        rc = pq_err(PQ_ERR_INTERNAL, "%s: HDF5 property setup failed: %s", path, pq_h5u_detail(eb, sizeof eb));
        goto fail;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: not an HDF5 file%s%s", path, is < 0 ? ": " : "",
                    is < 0 ? pq_h5u_detail(eb, sizeof eb) : "");
        goto fail;
    }
    r->file = pq_h5u_open_ro(path);
    /* Take the HDF5 detail before the next API call clears the stack. */
    if (r->file < 0)
        rc = pq_err(PQ_ERR_FORMAT, "%s: corrupt or truncated HDF5 file: %s", path,
                    pq_h5u_detail(eb, sizeof eb));
    if (rc) goto fail;
    if ((rc = read_meta(r))) goto fail;
    r->fd = direct_fd(r);
    if (!link_exists(r->file, "tensors") ||
        (gt = H5Gopen2(r->file, "tensors", H5P_DEFAULT)) < 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = pq_err(PQ_ERR_FORMAT, "%s: /tensors group missing", path);
        goto fail;
    }
    if (link_exists(r->file, "metrics")) gm = H5Gopen2(r->file, "metrics", H5P_DEFAULT);
    if (H5Literate(gt, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_cb, r) < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: cannot list /tensors: %s", path,
                    pq_h5u_detail(eb, sizeof eb));
        goto fail;
    }
    /* Sorted by strcmp so pq_h5r_find can bisect, whatever HDF5's order. */
    if (r->n > 1) qsort(r->ent, (size_t)r->n, sizeof *r->ent, cmp_entry);
    for (int64_t i = 0; i < r->n; i++)
        if ((rc = load_entry(r, gt, gm, &r->ent[i]))) goto fail;
    if (r->meta.format_version >= 4 && (rc = check_recipe(r))) goto fail;
    if (gm >= 0) H5Gclose(gm);
    H5Gclose(gt);
    *out = r;
    return PQ_OK;
fail:
    if (gm >= 0) H5Gclose(gm);
    if (gt >= 0) H5Gclose(gt);
    pq_h5r_close(r);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

void pq_h5r_close(pq_h5r *r)
{
    if (!r) return;
    if (r->file >= 0) H5Fclose(r->file);
    if (r->fd >= 0) close(r->fd);
    if (r->dxpl > 0) H5Pclose(r->dxpl);
    for (int64_t i = 0; i < r->n; i++) free(r->ent[i].name);
    free(r->ent);
    free(r->s_arch);
    free(r->s_model);
    free(r->s_sha);
    free(r->s_created);
    free(r->s_config);
    free(r->path);
    free(r);
}

void pq_h5r_set_threads(pq_h5r *r, int n_threads)
{
    r->n_threads = n_threads;
}

pq_status pq_h5r_set_verify(pq_h5r *r, bool verify)
{
    char eb[256];
    if (H5Pset_edc_check(r->dxpl, verify ? H5Z_ENABLE_EDC : H5Z_DISABLE_EDC) < 0)
        return pq_err(PQ_ERR_INTERNAL, "%s: cannot set checksum verification: %s", r->path,
                      pq_h5u_detail(eb, sizeof eb));
    r->verify = verify;
    return PQ_OK;
}

const pq_h5_meta *pq_h5r_meta(const pq_h5r *r)
{
    return &r->meta;
}

int64_t pq_h5r_count(const pq_h5r *r)
{
    return r->n;
}

const pq_h5r_entry *pq_h5r_get(const pq_h5r *r, int64_t i)
{
    return i >= 0 && i < r->n ? &r->ent[i] : NULL;
}

const pq_h5r_entry *pq_h5r_find(const pq_h5r *r, const char *name)
{
    int64_t lo = 0, hi = r->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->ent[mid].name, name);
        if (c == 0) return &r->ent[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- direct reads of whole-chunk datasets (the codes) ---- */

/* n bytes at off into buf: 0, an errno, or -1 at the end of the file. */
static int pread_all(int fd, void *buf, size_t n, int64_t off)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return got < 0 ? errno : -1;
        p += got;
        n -= (size_t)got;
        off += got;
    }
    return 0;
}

/* A second descriptor of the file for direct reads, when the file's
 * addresses are its byte offsets (no user block); -1 otherwise. */
static int direct_fd(const pq_h5r *r)
{
    hsize_t ub = 1;
    hid_t fcpl = H5Fget_create_plist(r->file);
    if (fcpl >= 0) {
        if (H5Pget_userblock(fcpl, &ub) < 0) ub = 1;
        H5Pclose(fcpl);
    }
    H5Eclear2(H5E_DEFAULT);
    return ub == 0 ? open(r->path, O_RDONLY | O_CLOEXEC) : -1;
}

/* Dataset d of one-byte integers stored as ONE chunk of `bytes` bytes
 * whose only filter is Fletcher-32 (how h5write.c stores codes): true and
 * the chunk's file offset in *addr. Such a chunk is read here, straight
 * from the file, instead of through HDF5's chunk cache and filter (a second
 * buffer and copy of every byte, and a checksum loop at a fraction of this
 * one's speed); false: HDF5 reads it. */
static bool whole_chunk_at(const pq_h5r *r, hid_t d, hid_t mtype, size_t bytes, int64_t *at)
{
    hsize_t nchunks = 0, off[H5S_MAX_RANK];
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    unsigned mask = 1;
    hid_t dcpl = H5Dget_create_plist(d), ft = H5Dget_type(d), sp = H5Dget_space(d);
    bool fits = r->fd >= 0 && bytes > 0 && dcpl >= 0 && ft >= 0 && sp >= 0 && H5Pget_nfilters(dcpl) == 1 &&
                pq_h5u_has_fletcher32(d) && H5Tget_class(ft) == H5T_INTEGER && H5Tget_size(ft) == 1 &&
                H5Tget_sign(ft) == H5Tget_sign(mtype) && H5Dget_num_chunks(d, sp, &nchunks) >= 0 &&
                nchunks == 1 && H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) >= 0 && mask == 0 &&
                addr != HADDR_UNDEF && size == (hsize_t)bytes + 4;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Eclear2(H5E_DEFAULT);
    *at = (int64_t)addr;
    return fits;
}

/* Ask the kernel for the file past `end` a window at a time (not one call
 * per tensor), so a cold load reads ahead of the checking and packing. */
static void read_ahead(pq_h5r *r, int64_t end)
{
    if (end + READ_AHEAD_BYTES / 2 <= r->ahead) return;
    int64_t from = end > r->ahead ? end : r->ahead;
    posix_fadvise(r->fd, (off_t)from, (off_t)(end + READ_AHEAD_BYTES - from), POSIX_FADV_WILLNEED);
    r->ahead = end + READ_AHEAD_BYTES;
}

/* The chunk's bytes against the little-endian Fletcher-32 that follows
 * them (unless verification is off). */
static pq_status check_chunk(const pq_h5r *r, const char *where, const uint8_t *buf, size_t bytes,
                             const uint8_t le[4])
{
    if (!r->verify) return PQ_OK;
    /* pieces of at least CHECK_PIECE bytes, one per thread, added in any
     * order (pq_fletcher32_add) */
    enum { CHECK_PIECE = 4 << 20 };
    int nt = r->n_threads;
#if PQ_HAVE_OPENMP
    if (nt <= 0) nt = omp_get_max_threads();
#endif
    int64_t np = (int64_t)(bytes / CHECK_PIECE);
    if (np > nt) np = nt;
    if (np < 1) np = 1;
    uint64_t s1 = 0, s2 = 0;
    bool nonzero = false;
    const int64_t piece = ((int64_t)bytes / np + 1) / 2 * 2;
#pragma omp parallel for num_threads((int)np) schedule(static, 1) reduction(+ : s1, s2) reduction(|| : nonzero) if (np > 1)
    for (int64_t i = 0; i < np; i++) {
        int64_t a = i * piece, b = i + 1 == np ? (int64_t)bytes : a + piece;
        pq_fletcher32_sum ps = {0};
        if (b > a) pq_fletcher32_add(&ps, buf + a, (size_t)(b - a), (uint64_t)a, bytes);
        s1 += ps.s1;
        s2 += ps.s2;
        nonzero = nonzero || ps.nonzero;
    }
    pq_fletcher32_sum sum = {.s1 = s1 % 65535u, .s2 = s2 % 65535u, .nonzero = nonzero};
    uint32_t want = (uint32_t)le[0] | (uint32_t)le[1] << 8 | (uint32_t)le[2] << 16 | (uint32_t)le[3] << 24;
    if (pq_fletcher32_sum_final(&sum) != want)
        return pq_err(PQ_ERR_FORMAT, "%s: %s: checksum mismatch, the data is corrupt (Fletcher-32)", r->path, where);
    return PQ_OK;
}

static pq_status truncated(const pq_h5r *r, const char *where)
{
    return pq_err(PQ_ERR_FORMAT, "%s: %s: the file ends inside the data (truncated)", r->path, where);
}

/* The chunk of `bytes` codes at addr read with pread into buf and checked. */
static pq_status read_whole_chunk(pq_h5r *r, const char *where, int64_t addr, size_t bytes, void *buf)
{
    uint8_t le[4];
    read_ahead(r, addr + (int64_t)bytes + 4);
    int e = pread_all(r->fd, buf, bytes, addr);
    if (!e) e = pread_all(r->fd, le, sizeof le, addr + (int64_t)bytes);
    if (e < 0) return truncated(r, where);
    if (e) return pq_err(PQ_ERR_IO, "%s: %s: read failed: %s", r->path, where, strerror(e));
    return check_chunk(r, where, buf, bytes, le);
}

/* The chunk of `bytes` codes at addr mapped read-only (from the page below
 * it) and checked, the mapping handed to qt (its codes point into it, the
 * malloc'd codes freed). A chunk past the end of the file (its size now,
 * not at the open) is refused before anything is mapped: touching it would
 * raise SIGBUS. *done false: mmap failed (a file system without it),
 * nothing changed; the caller preads. */
static pq_status map_whole_chunk(pq_h5r *r, const char *where, int64_t addr, size_t bytes, pq_qtensor *qt,
                                 bool *done)
{
    *done = false;
    int64_t end = addr + (int64_t)bytes + 4;
    struct stat sb;
    if (fstat(r->fd, &sb) != 0 || end > (int64_t)sb.st_size) return truncated(r, where);
    long pg = sysconf(_SC_PAGESIZE);
    int64_t base = pg > 0 ? addr / pg * pg : addr;
    size_t len = (size_t)(end - base);
    read_ahead(r, end);
    uint8_t *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, r->fd, (off_t)base);
    if (m == MAP_FAILED) return PQ_OK;
    const uint8_t *codes = m + (addr - base);
    pq_status rc = check_chunk(r, where, codes, bytes, codes + bytes);
    if (rc) {
        munmap(m, len);
        return rc;
    }
    free(qt->codes);
    qt->codes = (void *)codes;
    qt->codes_map = m;
    qt->codes_map_bytes = len;
    *done = true;
    return PQ_OK;
}

/* Read all of /tensors/<name>/<ds> as mtype into buf, its checksum
 * verified unless pq_h5r_set_verify said otherwise. With map_qt (a qweight
 * whose codes buffer is buf), the codes may be mapped instead (map_whole_chunk). */
static pq_status read_ds(pq_h5r *r, const char *name, const char *ds, hid_t mtype, void *buf, pq_qtensor *map_qt)
{
    char p[352];
    snprintf(p, sizeof p, "/tensors/%s/%s", name, ds);
    hid_t d = H5Dopen2(r->file, p, H5P_DEFAULT);
    int64_t addr = 0;
    if (d >= 0 && !strcmp(ds, "qweight")) {
        hid_t sp = H5Dget_space(d);
        hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        if (sp >= 0) H5Sclose(sp);
        if (n > 0 && whole_chunk_at(r, d, mtype, (size_t)n, &addr)) {
            H5Dclose(d);
            bool done = false;
            pq_status rc = map_qt ? map_whole_chunk(r, p, addr, (size_t)n, map_qt, &done) : PQ_OK;
            return rc || done ? rc : read_whole_chunk(r, p, addr, (size_t)n, buf);
        }
    }
    herr_t hr = d < 0 ? -1 : H5Dread(d, mtype, H5S_ALL, H5S_ALL, r->dxpl, buf);
    /* the detail before H5Dclose clears HDF5's error stack */
    pq_status rc = hr < 0 ? pq_h5u_read_fail(r->path, p) : PQ_OK;
    if (d >= 0) H5Dclose(d);
    return rc;
}

/* Scales finite and positive, zero points inside the code range: what the
 * dequantization rule needs (FORMAT.md). */
static pq_status check_qparams(const pq_h5r *r, const pq_h5r_entry *e, const pq_qtensor *qt)
{
    int32_t qmin = 0, qmax = 0;
    pq_qspec_range(&e->spec, &qmin, &qmax);
    for (int64_t i = 0; i < qt->n_scales; i++) {
        if (!isfinite(qt->scale[i]) || !(qt->scale[i] > 0))
            return pq_err(PQ_ERR_FORMAT, "%s: /tensors/%s/scale[%lld] = %g is not a positive finite scale", r->path,
                          e->name, (long long)i, (double)qt->scale[i]);
        if (qt->zero_point && (qt->zero_point[i] < qmin || qt->zero_point[i] > qmax))
            return pq_err(PQ_ERR_FORMAT, "%s: /tensors/%s/zero_point[%lld] = %d is outside [%d, %d]", r->path,
                          e->name, (long long)i, qt->zero_point[i], qmin, qmax);
    }
    return PQ_OK;
}

static pq_status read_qtensor(pq_h5r *r, const pq_h5r_entry *e, pq_qtensor *qt, bool map)
{
    pq_status rc;
    if (!r || !e || !qt) return pq_err(PQ_ERR_INTERNAL, "pq_h5r_read_qtensor: NULL argument");
    if (!e->quantized)
        return pq_err(PQ_ERR_INTERNAL, "%s: /tensors/%s is not quantized", r->path, e->name);
    memset(qt, 0, sizeof *qt);
    if ((rc = pq_qtensor_alloc(qt, &e->spec, e->shape[0], e->shape[1]))) return rc;
    int64_t rb = pq_qspec_row_bytes(&e->spec, e->shape[1]);
    int64_t ng = e->spec.gran == PQ_GRAN_GROUP
                     ? (e->shape[1] + e->spec.group_size - 1) / e->spec.group_size : 1;
    int64_t ns = e->spec.gran == PQ_GRAN_TENSOR ? 1 : e->shape[0] * ng;
    if (qt->code_row_bytes != rb || qt->n_scales != ns ||
        (!e->spec.symmetric && !qt->zero_point)) {
        rc = pq_err(PQ_ERR_INTERNAL, "%s: /tensors/%s: qtensor layout disagrees with the "
                    "file (row bytes %lld vs %lld, scales %lld vs %lld)", r->path, e->name,
                    (long long)qt->code_row_bytes, (long long)rb, (long long)qt->n_scales,
                    (long long)ns);
        goto fail;
    }
    if (e->shape[0] > 0 && rb > 0 &&
        (rc = read_ds(r, e->name, "qweight", e->spec.bits == 8 ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8, qt->codes,
                      map ? qt : NULL)))
        goto fail;
    if (ns > 0 && (rc = read_ds(r, e->name, "scale", H5T_NATIVE_FLOAT, qt->scale, NULL))) goto fail;
    if (ns > 0 && !e->spec.symmetric &&
        (rc = read_ds(r, e->name, "zero_point", H5T_NATIVE_INT32, qt->zero_point, NULL)))
        goto fail;
    if ((rc = check_qparams(r, e, qt))) goto fail;
    if (e->has_metrics && (rc = pq_h5r_read_metrics(r, e->name, &qt->metrics))) goto fail;
    return PQ_OK;
fail:
    pq_qtensor_free(qt);
    return rc;
}

pq_status pq_h5r_read_qtensor(pq_h5r *r, const pq_h5r_entry *e, pq_qtensor *qt)
{
    return read_qtensor(r, e, qt, false);
}

pq_status pq_h5r_map_qtensor(pq_h5r *r, const pq_h5r_entry *e, pq_qtensor *qt)
{
    return read_qtensor(r, e, qt, true);
}

pq_status pq_h5r_read_f32(pq_h5r *r, const pq_h5r_entry *e, float *dst)
{
    pq_status rc;
    if (!r || !e || !dst) return pq_err(PQ_ERR_INTERNAL, "pq_h5r_read_f32: NULL argument");
    if (e->quantized) {
        pq_qtensor qt;
        if ((rc = pq_h5r_map_qtensor(r, e, &qt))) return rc;
        pq_qtensor_dequantize_rows(&qt, 0, qt.rows, dst);
        pq_qtensor_free(&qt);
        return PQ_OK;
    }
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    if (n == 0) return PQ_OK;
    if (e->stored_dtype == PQ_DT_F32) return read_ds(r, e->name, "data", H5T_NATIVE_FLOAT, dst, NULL);
    /* fp16: read the raw halves and widen exactly with pq_f16_to_f32. */
    uint16_t *tmp = malloc((size_t)n * sizeof *tmp);
    hid_t t = pq_h5u_f16_type();
    if (!tmp || t < 0) {
        free(tmp);
        if (t >= 0) H5Tclose(t);
        return pq_err(PQ_ERR_RESOURCE, "%s: /tensors/%s: out of memory", r->path, e->name);
    }
    rc = read_ds(r, e->name, "data", t, tmp, NULL);
    if (!rc)
        for (int64_t i = 0; i < n; i++) dst[i] = pq_f16_to_f32(tmp[i]);
    H5Tclose(t);
    free(tmp);
    return rc;
}

pq_status pq_h5r_verify_data(pq_h5r *r)
{
    pq_status rc = PQ_OK;
    float *buf = NULL;
    int64_t cap = 0;
    for (int64_t i = 0; i < r->n && !rc; i++) {
        const pq_h5r_entry *e = &r->ent[i];
        int64_t n = 1;
        for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
        if (e->quantized) {
            pq_qtensor qt;
            if ((rc = pq_h5r_map_qtensor(r, e, &qt)) == PQ_OK) pq_qtensor_free(&qt);
            continue;
        }
        if (n > cap) {
            free(buf);
            if ((buf = malloc((size_t)n * sizeof *buf)) == NULL) {
                cap = 0;
                rc = pq_err(PQ_ERR_RESOURCE, "%s: /tensors/%s: out of memory", r->path, e->name);
                break;
            }
            cap = n;
        }
        rc = pq_h5r_read_f32(r, e, buf);
    }
    free(buf);
    return rc;
}

pq_status pq_h5r_read_metrics(pq_h5r *r, const char *name, pq_qmetrics *m)
{
    char where[640];
    pq_status rc;
    if (!r || !name || !m) return pq_err(PQ_ERR_INTERNAL, "pq_h5r_read_metrics: NULL argument");
    snprintf(where, sizeof where, "%s: /metrics/%s", r->path, name);
    memset(m, 0, sizeof *m);
    if (!link_exists(r->file, "metrics")) goto missing;
    hid_t gm = H5Gopen2(r->file, "metrics", H5P_DEFAULT);
    if (gm < 0) goto missing;
    bool ex = link_exists(gm, name);
    hid_t g = ex ? H5Gopen2(gm, name, H5P_DEFAULT) : H5I_INVALID_HID;
    H5Gclose(gm);
    if (g < 0) goto missing;
    if ((rc = pq_h5u_get_f64(g, where, "sqnr_db", &m->sqnr_db)) ||
        (rc = pq_h5u_get_f64(g, where, "rel_l2", &m->rel_l2)) ||
        (rc = pq_h5u_get_f64(g, where, "max_abs_err", &m->max_abs_err)) ||
        (rc = pq_h5u_get_i64(g, where, "n_nonfinite", &m->n_nonfinite)))
        goto done;
    if (pq_h5u_has_attr(g, "sum_sq") && (rc = pq_h5u_get_f64(g, where, "sum_sq", &m->sum_sq)))
        goto done;
    if (pq_h5u_has_attr(g, "err_sq"))
        rc = pq_h5u_get_f64(g, where, "err_sq", &m->err_sq);
done:
    H5Gclose(g);
    return rc;
missing:
    H5Eclear2(H5E_DEFAULT);
    return pq_err(PQ_ERR_FORMAT, "%s: no metrics recorded", where);
}

pq_status pq_h5r_provenance(pq_h5r *r, const char *key, char **value)
{
    if (!r || !key || !value) return pq_err(PQ_ERR_INTERNAL, "pq_h5r_provenance: NULL argument");
    *value = NULL;
    if (!link_exists(r->file, "provenance")) return PQ_OK;
    hid_t g = H5Gopen2(r->file, "provenance", H5P_DEFAULT);
    if (g < 0) {
        H5Eclear2(H5E_DEFAULT);
        return PQ_OK;
    }
    pq_status rc = PQ_OK;
    char pw[560];
    snprintf(pw, sizeof pw, "%s: /provenance", r->path);
    if (pq_h5u_has_attr(g, key)) rc = pq_h5u_get_str(g, pw, key, value);
    H5Gclose(g);
    return rc;
}
