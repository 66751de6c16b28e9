/* SPDX-License-Identifier: Apache-2.0 */
/* h5util.c - quiet HDF5 errors, the checksummed property lists, HDF5's
 * Fletcher-32, h5py-compatible float16/bool types and typed attribute I/O
 * with fixed-length strings for the model writer and reader. */
#include "format/h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pq_h5u_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct walk_ctx {
    char *buf;
    size_t n;
    bool found;
} walk_ctx;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *user)
{
    walk_ctx *c = user;
    /* Walking upward, the first entry is the innermost, most specific cause. */
    if (n == 0 && !c->found) {
        const char *d = (e->desc && e->desc[0]) ? e->desc : e->func_name;
        const char *m = d ? strstr(d, "error message = '") : NULL, *colon = d ? strchr(d, ':') : NULL;
        if (m && colon && colon < m) {
            /* A file driver's I/O failure also lists a time stamp, the
             * descriptor and addresses on two lines: keep what failed and
             * the system's reason ("file write failed: File too large"). */
            m += strlen("error message = '");
            const char *end = strchr(m, '\'');
            snprintf(c->buf, c->n, "%.*s: %.*s", (int)(colon - d), d, (int)(end ? end - m : (long)strlen(m)), m);
        } else {
            snprintf(c->buf, c->n, "%s", d ? d : "unknown HDF5 error");
        }
        c->found = true;
    }
    return 0;
}

const char *pq_h5u_detail(char *buf, size_t n)
{
    walk_ctx c = {buf, n, false};
    if (n == 0) return buf;
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &c);
    if (!c.found) snprintf(buf, n, "unknown HDF5 error");
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

hid_t pq_h5u_fapl_write(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return H5I_INVALID_HID;
    /* pinned, not LATEST: the bytes must not change with the library */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

/* ~1 MiB: HDF5's default chunk cache holds one such chunk whole. */
#define CHUNK_TARGET_BYTES ((hsize_t)1 << 20)

hsize_t pq_h5u_chunk_rows(int nd, const hsize_t *dims, size_t esz)
{
    hsize_t row = esz;
    for (int i = 1; i < nd; i++) row *= dims[i] ? dims[i] : 1;
    hsize_t r = row ? CHUNK_TARGET_BYTES / row : 1;
    return r ? r : 1;
}

hid_t pq_h5u_dcpl(int nd, const hsize_t *dims, hsize_t chunk_rows, bool early)
{
    hsize_t cd[H5S_MAX_RANK];
    bool empty = nd <= 0;
    for (int i = 0; i < nd; i++) empty = empty || dims[i] == 0;
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    if (p < 0) return H5I_INVALID_HID;
    if (H5Pset_obj_track_times(p, 0) < 0 || H5Pset_fill_time(p, H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_alloc_time(p, early ? H5D_ALLOC_TIME_EARLY : H5D_ALLOC_TIME_INCR) < 0)
        goto fail;
    if (nd == 0) {
        if (H5Pset_layout(p, H5D_COMPACT) < 0 || H5Pset_alloc_time(p, H5D_ALLOC_TIME_EARLY) < 0) goto fail;
    } else if (!empty) {
        for (int i = 0; i < nd; i++) cd[i] = dims[i];
        cd[0] = chunk_rows < 1 ? 1 : chunk_rows > dims[0] ? dims[0] : chunk_rows;
        if (H5Pset_chunk(p, nd, cd) < 0 || H5Pset_fletcher32(p) < 0) goto fail;
    }
    return p;
fail:
    H5Pclose(p);
    return H5I_INVALID_HID;
}

hid_t pq_h5u_dxpl(bool verify)
{
    hid_t p = H5Pcreate(H5P_DATASET_XFER);
    if (p >= 0 && H5Pset_edc_check(p, verify ? H5Z_ENABLE_EDC : H5Z_DISABLE_EDC) < 0) {
        H5Pclose(p);
        return H5I_INVALID_HID;
    }
    return p;
}

bool pq_h5u_has_fletcher32(hid_t d)
{
    unsigned flags = 0, cfg = 0;
    size_t nel = 0;
    hid_t p = H5Dget_create_plist(d);
    if (p < 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
    }
    bool ok = H5Pget_layout(p) == H5D_CHUNKED &&
              H5Pget_filter_by_id2(p, H5Z_FILTER_FLETCHER32, &flags, &nel, NULL, 0, NULL, &cfg) >= 0;
    H5Pclose(p);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

bool pq_h5u_is_compact(hid_t d)
{
    hid_t p = H5Dget_create_plist(d);
    bool ok = p >= 0 && H5Pget_layout(p) == H5D_COMPACT;
    if (p >= 0) H5Pclose(p);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

void pq_fletcher32_init(pq_fletcher32 *f)
{
    f->s1 = f->s2 = 0;
    f->k = 0;
    f->tail = -1;
}

static void fold(pq_fletcher32 *f)
{
    f->s1 = (f->s1 & 0xffff) + (f->s1 >> 16);
    f->s2 = (f->s2 & 0xffff) + (f->s2 >> 16);
}

/* t <= 360 big-endian words into a block's sums: s1 gains a = sum w_i and s2
 * gains t * s1 + b with b = sum (t - i) w_i, which is what adding the words
 * one at a time gives (uint32 arithmetic wraps the same either way); this
 * form has no chain from one word to the next, so it vectorizes. */
__attribute__((target_clones("avx2", "default"))) static void block_sums(const uint8_t *p, size_t t, uint32_t *a,
                                                                         uint32_t *b)
{
    uint32_t sa = 0, sb = 0;
    for (size_t i = 0; i < t; i++) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        uint32_t w = (uint32_t)(uint16_t)(v << 8 | v >> 8);
        sa += w;
        sb += (uint32_t)(t - i) * w;
    }
    *a = sa;
    *b = sb;
}

void pq_fletcher32_update(pq_fletcher32 *f, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    size_t words = n / 2;
    while (words) {
        /* up to the end of the current block of 360 words, then fold */
        size_t t = 360 - f->k < words ? 360 - f->k : words;
        uint32_t a, b;
        block_sums(p, t, &a, &b);
        f->s2 += (uint32_t)t * f->s1 + b;
        f->s1 += a;
        p += 2 * t;
        words -= t;
        if ((f->k += t) == 360) {
            fold(f);
            f->k = 0;
        }
    }
    if (n % 2) f->tail = p[0];
}

uint32_t pq_fletcher32_final(pq_fletcher32 *f)
{
    if (f->k) fold(f);
    if (f->tail >= 0) {
        f->s1 += (uint32_t)f->tail << 8;
        f->s2 += f->s1;
        fold(f);
    }
    fold(f);
    return f->s2 << 16 | f->s1;
}

#define FL_MOD 65535u

/* One word v at word index k of a chunk of `words` words: HDF5's s2 adds
 * it once for every word from k to the end. */
static void add_word(pq_fletcher32_sum *s, uint32_t v, uint64_t k, uint64_t words)
{
    s->s1 = (s->s1 + v) % FL_MOD;
    s->s2 = (s->s2 + (words - k) % FL_MOD * v) % FL_MOD;
    s->nonzero |= v != 0;
}

void pq_fletcher32_add(pq_fletcher32_sum *s, const void *buf, size_t n, uint64_t off, uint64_t chunk_bytes)
{
    const uint8_t *p = buf;
    uint64_t words = (chunk_bytes + 1) / 2; /* an odd last byte is a word of its own */
    if (n == 0) return;
    if (off % 2) { /* the low byte of a word begun by the previous piece */
        add_word(s, p[0], off / 2, words);
        p++;
        n--;
        off++;
    }
    size_t full = n / 2;
    if (full) {
        /* a = sum w_i and b = sum (full - i) w_i, exact (no overflow
         * between folds) up to multiples of 65535, then moved to the
         * words' place: s2 gains (words - k0 - full) * a + b */
        pq_fletcher32 f;
        pq_fletcher32_init(&f);
        pq_fletcher32_update(&f, p, 2 * full);
        uint64_t a = f.s1 % FL_MOD, b = f.s2 % FL_MOD, k0 = off / 2;
        s->s1 = (s->s1 + a) % FL_MOD;
        s->s2 = (s->s2 + (words - k0 - full) % FL_MOD * a + b) % FL_MOD;
        s->nonzero |= f.s1 != 0; /* a sum of words: zero only when they all are */
    }
    if (n % 2) add_word(s, (uint32_t)p[2 * full] << 8, off / 2 + full, words);
}

uint32_t pq_fletcher32_sum_final(const pq_fletcher32_sum *s)
{
    /* HDF5 folds a non-zero sum into [1, 65535], so a multiple of 65535
     * that is not zero reads 65535; all-zero bytes give 0 */
    if (!s->nonzero) return 0;
    uint32_t s1 = s->s1 ? (uint32_t)s->s1 : FL_MOD, s2 = s->s2 ? (uint32_t)s->s2 : FL_MOD;
    return s2 << 16 | s1;
}

pq_status pq_h5u_read_fail(const char *path, const char *what)
{
    char eb[256];
    pq_h5u_detail(eb, sizeof eb);
    const char *sep = path ? ": " : "";
    if (!path) path = "";
    if (strstr(eb, "Fletcher32"))
        return pq_err(PQ_ERR_FORMAT, "%s%s%s: checksum mismatch, the data is corrupt (Fletcher-32)", path, sep,
                      what);
    return pq_err(PQ_ERR_FORMAT, "%s%s%s: read failed: %s", path, sep, what, eb);
}

hid_t pq_h5u_f16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return H5I_INVALID_HID;
    /* Fields first (they must fit the current precision), then shrink. */
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

bool pq_h5u_is_f16(hid_t t)
{
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 2) return false;
    if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) return false;
    return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 &&
           H5Tget_ebias(t) == 15;
}

hid_t pq_h5u_bool_type(void)
{
    hid_t t = H5Tenum_create(H5T_STD_I8LE);
    int8_t f = 0, tr = 1;
    if (t < 0) return H5I_INVALID_HID;
    if (H5Tenum_insert(t, "FALSE", &f) < 0 || H5Tenum_insert(t, "TRUE", &tr) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

const char *pq_h5u_dims_str(int ndim, const hsize_t *dims, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0) return buf;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)dims[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

/* ---- writing ---- */

static pq_status put_attr(hid_t obj, const char *where, const char *name, hid_t ftype,
                          hid_t mtype, int n, const void *val)
{
    char eb[256];
    pq_status rc = PQ_OK;
    hid_t sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    htri_t ex = H5Aexists(obj, name);
    if (ex > 0 && H5Adelete(obj, name) < 0) ex = -1;
    if (ex < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: cannot replace attribute %s: %s", where, name,
                    pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if (n < 0) {
        sp = H5Screate(H5S_SCALAR);
    } else {
        hsize_t d = (hsize_t)n;
        sp = H5Screate_simple(1, &d, NULL);
    }
    if (sp < 0 || (a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, mtype, val) < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: cannot write attribute %s: %s", where, name,
                    pq_h5u_detail(eb, sizeof eb));
    }
cleanup:
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* Fixed-length NUL-terminated UTF-8 string of n bytes (n includes the NUL). */
static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, n) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* put_attr of a scalar in type t, made for this call (t < 0: making it
 * failed, `kind` names it in the error), which is closed after. */
static pq_status put_attr_own_type(hid_t obj, const char *where, const char *name, const char *kind, hid_t t,
                                   const void *val)
{
    char eb[256];
    if (t < 0)
        return pq_err(PQ_ERR_IO, "%s: %s type for %s: %s", where, kind, name, pq_h5u_detail(eb, sizeof eb));
    pq_status rc = put_attr(obj, where, name, t, t, -1, val);
    H5Tclose(t);
    return rc;
}

pq_status pq_h5u_put_str(hid_t obj, const char *where, const char *name, const char *val)
{
    const char *v = val ? val : "";
    size_t n = strlen(v) + 1;
    if (n > PQ_H5_STR_MAX)
        return pq_err(PQ_ERR_INTERNAL, "%s: attribute %s: a string of %zu bytes is longer than %zu", where, name,
                      n, PQ_H5_STR_MAX);
    return put_attr_own_type(obj, where, name, "string", str_type(n), v);
}

pq_status pq_h5u_put_i32(hid_t obj, const char *where, const char *name, int32_t val)
{
    return put_attr(obj, where, name, H5T_STD_I32LE, H5T_NATIVE_INT32, -1, &val);
}

pq_status pq_h5u_put_i64(hid_t obj, const char *where, const char *name, int64_t val)
{
    return put_attr(obj, where, name, H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &val);
}

pq_status pq_h5u_put_f32(hid_t obj, const char *where, const char *name, float val)
{
    return put_attr(obj, where, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, -1, &val);
}

pq_status pq_h5u_put_f64(hid_t obj, const char *where, const char *name, double val)
{
    return put_attr(obj, where, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1, &val);
}

pq_status pq_h5u_put_bool(hid_t obj, const char *where, const char *name, bool val)
{
    int8_t v = val ? 1 : 0;
    return put_attr_own_type(obj, where, name, "bool", pq_h5u_bool_type(), &v);
}

pq_status pq_h5u_put_i64_vec(hid_t obj, const char *where, const char *name,
                             int n, const int64_t *val)
{
    return put_attr(obj, where, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n, val);
}

/* ---- reading ---- */

bool pq_h5u_has_attr(hid_t obj, const char *name)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) H5Eclear2(H5E_DEFAULT);
    return ex > 0;
}

/* Open attribute `name` and check it holds `n` elements (n = 1 also accepts
 * a scalar). On success *a and *t (its file type) are open. */
static pq_status open_attr(hid_t obj, const char *where, const char *name, hssize_t n,
                           hid_t *a, hid_t *t)
{
    char eb[256];
    hid_t sp = H5I_INVALID_HID;
    *a = *t = H5I_INVALID_HID;
    if (!pq_h5u_has_attr(obj, name))
        return pq_err(PQ_ERR_FORMAT, "%s: missing attribute %s", where, name);
    if ((*a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (*t = H5Aget_type(*a)) < 0 ||
        (sp = H5Aget_space(*a)) < 0) {
        pq_status rc = pq_err(PQ_ERR_FORMAT, "%s: cannot read attribute %s: %s", where,
                              name, pq_h5u_detail(eb, sizeof eb));
        if (sp >= 0) H5Sclose(sp);
        if (*t >= 0) H5Tclose(*t);
        if (*a >= 0) H5Aclose(*a);
        *a = *t = H5I_INVALID_HID;
        return rc;
    }
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (np != n) {
        H5Tclose(*t);
        H5Aclose(*a);
        *a = *t = H5I_INVALID_HID;
        return pq_err(PQ_ERR_FORMAT, "%s: attribute %s has %lld elements, expected %lld",
                      where, name, (long long)np, (long long)n);
    }
    return PQ_OK;
}

static pq_status read_fail(const char *where, const char *name)
{
    char eb[256];
    return pq_err(PQ_ERR_FORMAT, "%s: cannot read attribute %s: %s", where, name,
                  pq_h5u_detail(eb, sizeof eb));
}

pq_status pq_h5u_get_str(hid_t obj, const char *where, const char *name, char **val)
{
    hid_t a, t;
    char *s = NULL;
    *val = NULL;
    pq_status rc = open_attr(obj, where, name, 1, &a, &t);
    if (rc) return rc;
    if (H5Tget_class(t) != H5T_STRING) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: attribute %s is not a string", where, name);
        goto cleanup;
    }
    /* never H5Aread a variable-length string: it is read from the global
     * heap, which carries no checksum and which HDF5 trusts */
    if (H5Tis_variable_str(t) != 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: attribute %s is a variable-length string (a file of format version 2 "
                    "or older, or not written by Proteus): only fixed-length strings are read", where, name);
        goto cleanup;
    }
    size_t sz = H5Tget_size(t);
    if (sz == 0 || sz > PQ_H5_STR_MAX) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: attribute %s is a string of %zu bytes, expected 1 to %zu", where, name,
                    sz, PQ_H5_STR_MAX);
        goto cleanup;
    }
    if ((s = calloc(sz + 1, 1)) == NULL) {
        rc = pq_err(PQ_ERR_RESOURCE, "%s: out of memory reading attribute %s", where, name);
        goto cleanup;
    }
    if (H5Aread(a, t, s) < 0) {
        rc = read_fail(where, name);
        goto cleanup;
    }
    if (H5Tget_strpad(t) == H5T_STR_SPACEPAD)
        for (size_t i = sz; i > 0 && s[i - 1] == ' '; i--) s[i - 1] = '\0';
    for (size_t i = strlen(s); i < sz; i++)
        if (s[i] != '\0') {
            rc = pq_err(PQ_ERR_FORMAT, "%s: attribute %s: a string with a NUL inside (byte %zu of %zu)", where,
                        name, strlen(s), sz);
            goto cleanup;
        }
    *val = s;
    s = NULL;
cleanup:
    free(s);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* Read an integer-class or 1-byte enum attribute of n elements as int64. */
static pq_status get_ints(hid_t obj, const char *where, const char *name, int n,
                          int64_t *val)
{
    hid_t a, t;
    pq_status rc = open_attr(obj, where, name, n, &a, &t);
    if (rc) return rc;
    H5T_class_t cls = H5Tget_class(t);
    if (cls == H5T_INTEGER) {
        if (H5Aread(a, H5T_NATIVE_INT64, val) < 0) rc = read_fail(where, name);
    } else if (cls == H5T_ENUM && H5Tget_size(t) == 1 && n == 1) {
        /* HDF5 has no enum -> integer conversion; a 1-byte enum's raw value
         * is the same in any byte order. */
        int8_t b = 0;
        if (H5Aread(a, t, &b) < 0) rc = read_fail(where, name);
        else val[0] = b;
    } else {
        rc = pq_err(PQ_ERR_FORMAT, "%s: attribute %s is not an integer", where, name);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

pq_status pq_h5u_get_i64(hid_t obj, const char *where, const char *name, int64_t *val)
{
    return get_ints(obj, where, name, 1, val);
}

pq_status pq_h5u_get_i64_vec(hid_t obj, const char *where, const char *name,
                             int n, int64_t *val)
{
    return get_ints(obj, where, name, n, val);
}

pq_status pq_h5u_get_bool(hid_t obj, const char *where, const char *name, bool *val)
{
    int64_t v = 0;
    pq_status rc = get_ints(obj, where, name, 1, &v);
    if (rc == PQ_OK) *val = v != 0;
    return rc;
}

pq_status pq_h5u_get_f64(hid_t obj, const char *where, const char *name, double *val)
{
    hid_t a, t;
    pq_status rc = open_attr(obj, where, name, 1, &a, &t);
    if (rc) return rc;
    H5T_class_t cls = H5Tget_class(t);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        rc = pq_err(PQ_ERR_FORMAT, "%s: attribute %s is not a number", where, name);
    else if (H5Aread(a, H5T_NATIVE_DOUBLE, val) < 0)
        rc = read_fail(where, name);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

hid_t pq_h5u_open_ro(const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    return f;
}
