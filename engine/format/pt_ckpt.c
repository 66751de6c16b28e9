/* SPDX-License-Identifier: Apache-2.0 */
/* pt_ckpt.c - the tensor table of a torch.save checkpoint: unpickle the
 * object without executing anything (zip: <archive>/data.pkl; legacy: the
 * fourth of its pickles), find the state dict and turn each tensor into a
 * byte range of its storage (zip: the entry <archive>/data/<key>; legacy: the
 * storage's span after the pickles). */
#include "format/pt_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/pt_pickle.h"
#include "format/pt_zip.h"

#define NAME_MAX_BYTES 4096

bool pq_pt_is_zip(const unsigned char *map, size_t n) { return pq_zip_is_zip(map, n) != 0; }

bool pq_pt_is_legacy(const char *path, const unsigned char *map, size_t n)
{
    static const char *const ext[] = {".pt", ".pth", ".bin", ".ckpt"};
    size_t pl = strlen(path);
    bool named = false;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t el = strlen(ext[i]);
        named |= pl >= el && strcmp(path + pl - el, ext[i]) == 0;
    }
    return named && n >= 2 && map[0] == 0x80 && map[1] >= 2 && map[1] <= 5;
}

void pq_pt_free_tensors(pq_st_tensor *t, int64_t n)
{
    if (!t) return;
    for (int64_t i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static void format_dims(const int64_t *v, int n, char *buf, size_t cap)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)v[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* The single "<dir>/data.pkl" entry; *prefix_len gets the length of "<dir>". */
static pq_status find_pickle(const char *fname, const pq_zip *z, const pq_zip_entry **out, size_t *prefix_len)
{
    *out = NULL;
    for (int64_t i = 0; i < z->n_entries; i++) {
        const char *nm = z->entries[i].name, *slash = strchr(nm, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        if (*out)
            return pq_err(PQ_ERR_FORMAT, "%s: zip holds two pickles, '%s' and '%s'", fname, (*out)->name, nm);
        *out = &z->entries[i];
        *prefix_len = (size_t)(slash - nm);
    }
    if (!*out)
        return pq_err(PQ_ERR_FORMAT, "%s: a zip without <archive>/data.pkl is not a torch.save checkpoint", fname);
    return PQ_OK;
}

/* Where a storage's bytes lie in the file: a zip entry, or a span of the
 * legacy format's data area. */
typedef struct storage_span {
    uint64_t offset, size;
    const char *label; /* names it in errors */
} storage_span;

typedef struct locator {
    const char *fname;
    /* zip */
    const pq_zip *zip;
    const char *prefix;
    size_t prefix_len;
    char entry[NAME_MAX_BYTES + 64];
    /* legacy: spans sorted by key */
    struct legacy_span *spans;
    int64_t n_spans;
} locator;

typedef struct legacy_span {
    const char *key;
    storage_span span;
} legacy_span;

static int cmp_span_key(const void *a, const void *b)
{
    return strcmp(((const legacy_span *)a)->key, ((const legacy_span *)b)->key);
}

static pq_status locate(locator *l, const pq_pk_value *st, storage_span *out)
{
    if (l->zip) {
        const pq_zip_entry *e;
        if (strlen(st->s) > NAME_MAX_BYTES)
            return pq_err(PQ_ERR_FORMAT, "%s: storage key of %zu bytes is too long", l->fname, strlen(st->s));
        snprintf(l->entry, sizeof l->entry, "%.*s/data/%s", (int)l->prefix_len, l->prefix, st->s);
        pq_status rc = pq_zip_stored(l->fname, l->zip, l->entry, &e);
        if (rc) return rc;
        *out = (storage_span){e->offset, e->size, l->entry};
        return PQ_OK;
    }
    legacy_span probe = {.key = st->s};
    const legacy_span *f = bsearch(&probe, l->spans, (size_t)l->n_spans, sizeof probe, cmp_span_key);
    if (!f) return pq_err(PQ_ERR_FORMAT, "%s: storage '%s' is not in the list of saved storages", l->fname, st->s);
    *out = f->span;
    return PQ_OK;
}

/* Validate tensor `name` against its storage and fill *t. */
static pq_status make_tensor(locator *l, const char *name, const pq_pk_value *v, int file_idx, pq_st_tensor *t)
{
    const char *fname = l->fname;
    char sh[256], sd[256];
    format_dims(v->shape, v->ndim, sh, sizeof sh);
    format_dims(v->stride, v->ndim, sd, sizeof sd);
    int64_t numel = 1, expect = 1;
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (v->shape[d] != 1 && v->stride[d] != expect)
            return pq_err(PQ_ERR_FORMAT,
                          "%s: tensor '%s' is not contiguous (shape %s, stride %s); save it after .contiguous()",
                          fname, name, sh, sd);
        if (__builtin_mul_overflow(expect, v->shape[d], &expect) || __builtin_mul_overflow(numel, v->shape[d], &numel))
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': shape %s overflows", fname, name, sh);
    }
    const pq_pk_value *st = v->storage;
    int64_t end;
    if (__builtin_add_overflow(v->i, numel, &end) || end > st->i)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': elements [%lld, %lld) lie beyond its storage '%s' of %lld",
                      fname, name, (long long)v->i, (long long)v->i + numel, st->s, (long long)st->i);
    storage_span sp = {0, 0, NULL};
    pq_status rc = locate(l, st, &sp);
    if (rc) return rc;
    uint64_t es = pq_dtype_size(st->dtype);
    if (sp.size / es < (uint64_t)st->i)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': storage '%s' holds %llu bytes, fewer than its %lld %s elements",
                      fname, name, sp.label, (unsigned long long)sp.size, (long long)st->i, pq_dtype_name(st->dtype));
    memset(t, 0, sizeof *t);
    t->dtype = v->dtype;
    t->ndim = v->ndim;
    memcpy(t->shape, v->shape, sizeof t->shape);
    t->n_elems = numel;
    t->file_idx = file_idx;
    t->offset = sp.offset + (uint64_t)v->i * es;
    t->n_bytes = (size_t)((uint64_t)numel * es);
    t->name = strdup(name);
    return t->name ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const pq_st_tensor *const *)a)->name, (*(const pq_st_tensor *const *)b)->name);
}

static pq_status check_unique(const char *fname, pq_st_tensor *t, int64_t n)
{
    const pq_st_tensor **p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; i < n; i++) p[i] = &t[i];
    qsort(p, (size_t)n, sizeof *p, cmp_name);
    pq_status rc = PQ_OK;
    for (int64_t i = 1; i < n && !rc; i++)
        if (strcmp(p[i - 1]->name, p[i]->name) == 0)
            rc = pq_err(PQ_ERR_FORMAT, "%s: tensor '%s' appears twice in the state dict", fname, p[i]->name);
    free(p);
    return rc;
}

/* The tensor table of the unpickled object `root`. */
static pq_status table_of(locator *l, const pq_pk_value *root, int file_idx, pq_st_tensor **out, int64_t *n_out)
{
    const char *fname = l->fname;
    *out = NULL;
    *n_out = 0;
    if (root->kind != PQ_PK_DICT)
        return pq_err(PQ_ERR_FORMAT, "%s: the saved object is a %s, not a dict of tensors", fname,
                      pq_pk_kind_name(root->kind));
    const pq_pk_value *sd = root;
    const char *const wrappers[] = {"model", "state_dict"};
    for (size_t i = 0; i < 2; i++) {
        const pq_pk_value *w = pq_pk_dict_get(root, wrappers[i]);
        if (w && w->kind == PQ_PK_DICT) {
            sd = w;
            break;
        }
    }
    int64_t count = sd->n / 2, nt = 0;
    pq_status rc = PQ_OK;
    pq_st_tensor *t = calloc((size_t)(count ? count : 1), sizeof *t);
    if (!t) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; i < count; i++) {
        const pq_pk_value *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        if (k->kind != PQ_PK_STR || k->len != strlen(k->s) || k->len == 0 || k->len > NAME_MAX_BYTES) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: state dict key %lld is a %s, not a tensor name", fname, (long long)i,
                        pq_pk_kind_name(k->kind));
            goto done;
        }
        if (v->kind == PQ_PK_OBJECT) {
            rc = pq_err(PQ_ERR_FORMAT,
                        "%s: tensor '%s' is built by %s, not by torch._utils._rebuild_tensor_v2; refused (nothing "
                        "was run)", fname, k->s, v->s);
            goto done;
        }
        if (v->kind != PQ_PK_TENSOR) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: state dict entry '%s' is a %s, not a tensor", fname, k->s,
                        pq_pk_kind_name(v->kind));
            goto done;
        }
        if ((rc = make_tensor(l, k->s, v, file_idx, &t[nt]))) goto done;
        nt++;
    }
    if ((rc = check_unique(fname, t, nt))) goto done;
    *out = t;
    *n_out = nt;
    t = NULL;
done:
    pq_pt_free_tensors(t, nt);
    return rc;
}

/* ------------------------------------------------------ legacy format */

/* torch.save's legacy format (torch/serialization.py, _legacy_save): five
 * pickles in a row (the magic number, the protocol version 1001, a sys_info
 * dict, the object, the sorted list of storage keys), then for each key in
 * that order an int64 element count and the storage's raw bytes. */
static const unsigned char k_legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                               0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
#define LEGACY_PROTOCOL 1001

static int cmp_storage_key(const void *a, const void *b)
{
    return strcmp((*(const pq_pk_value *const *)a)->s, (*(const pq_pk_value *const *)b)->s);
}

/* The spans of the storages listed by `keys`, laid out from map[pos]. */
static pq_status legacy_spans(const char *fname, const unsigned char *map, size_t n, size_t pos, const pq_pk *main_pk,
                              const pq_pk_value *keys, locator *l)
{
    if (keys->kind != PQ_PK_LIST)
        return pq_err(PQ_ERR_FORMAT, "%s: legacy format: the storage key list is a %s", fname, pq_pk_kind_name(keys->kind));
    int64_t ns = 0;
    pq_pk_value *const *st = pq_pk_storages(main_pk, &ns);
    pq_pk_value **sorted = malloc((size_t)(ns ? ns : 1) * sizeof *sorted);
    l->spans = calloc((size_t)(keys->n ? keys->n : 1), sizeof *l->spans);
    pq_status rc = PQ_OK;
    if (!sorted || !l->spans) {
        rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto done;
    }
    memcpy(sorted, st, (size_t)ns * sizeof *sorted);
    qsort(sorted, (size_t)ns, sizeof *sorted, cmp_storage_key);
    for (int64_t i = 1; i < ns; i++)
        if (strcmp(sorted[i - 1]->s, sorted[i]->s) == 0 && sorted[i - 1]->dtype != sorted[i]->dtype) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: storage '%s' is named with two dtypes", fname, sorted[i]->s);
            goto done;
        }
    for (int64_t i = 0; i < keys->n; i++) {
        const pq_pk_value *k = keys->items[i];
        if (k->kind != PQ_PK_STR) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: storage key %lld is a %s", fname, (long long)i,
                        pq_pk_kind_name(k->kind));
            goto done;
        }
        const pq_pk_value probe = {.s = k->s}, *pp = &probe;
        pq_pk_value **f = bsearch(&pp, sorted, (size_t)ns, sizeof *sorted, cmp_storage_key);
        if (!f) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: saved storage '%s' is named by no persistent id", fname, k->s);
            goto done;
        }
        uint64_t numel = 0, es = pq_dtype_size((*f)->dtype);
        if (n - pos < 8) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: truncated before storage '%s'", fname, k->s);
            goto done;
        }
        for (int b = 7; b >= 0; b--) numel = numel << 8 | map[pos + (size_t)b];
        pos += 8;
        if (numel > (n - pos) / es) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: storage '%s' of %llu elements runs past the end", fname,
                        k->s, (unsigned long long)numel);
            goto done;
        }
        l->spans[l->n_spans++] = (legacy_span){k->s, {pos, numel * es, k->s}};
        pos += numel * es;
    }
    if (pos != n) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: %zu bytes after the last storage", fname, n - pos);
        goto done;
    }
    qsort(l->spans, (size_t)l->n_spans, sizeof *l->spans, cmp_span_key);
done:
    free(sorted);
    return rc;
}

static pq_status read_legacy(const char *fname, const unsigned char *map, size_t n, int file_idx, pq_st_tensor **out,
                             int64_t *n_out)
{
    pq_pk *pk[4] = {NULL, NULL, NULL, NULL}; /* version, sys_info, object, keys */
    const pq_pk_value *v[4];
    locator l = {.fname = fname};
    pq_status rc = PQ_OK;
    size_t pos = sizeof k_legacy_magic;
    if (n < pos || memcmp(map, k_legacy_magic, pos) != 0)
        return pq_err(PQ_ERR_FORMAT, "%s: a pickle that does not start with torch.save's magic number", fname);
    for (int i = 0; i < 4; i++) {
        size_t used = 0;
        if ((rc = pq_pk_load(fname, map + pos, n - pos, &pk[i], &v[i], &used))) goto done;
        pos += used;
    }
    if (v[0]->kind != PQ_PK_INT || v[0]->i != LEGACY_PROTOCOL) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: protocol version is not %d", fname, LEGACY_PROTOCOL);
        goto done;
    }
    const pq_pk_value *le = pq_pk_dict_get(v[1], "little_endian");
    if (!le || le->kind != PQ_PK_BOOL || !le->i) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: legacy format: not saved little-endian", fname);
        goto done;
    }
    if ((rc = legacy_spans(fname, map, n, pos, pk[2], v[3], &l))) goto done;
    rc = table_of(&l, v[2], file_idx, out, n_out);
done:
    free(l.spans);
    for (int i = 0; i < 4; i++) pq_pk_free(pk[i]);
    return rc;
}

/* ------------------------------------------------------ zip format */

static pq_status read_zip(const char *fname, const unsigned char *map, size_t n, int file_idx, pq_st_tensor **out,
                          int64_t *n_out)
{
    pq_zip z;
    pq_pk *pk = NULL;
    char what[NAME_MAX_BYTES + 64];
    pq_status rc = pq_zip_open(fname, map, n, &z);
    if (rc) return rc;
    const pq_zip_entry *pe, *bo;
    size_t plen = 0;
    if ((rc = find_pickle(fname, &z, &pe, &plen))) goto done;
    snprintf(what, sizeof what, "%.*s/byteorder", (int)plen, pe->name);
    if ((bo = pq_zip_find(&z, what)) && bo->method == 0 && bo->size == 3 && memcmp(map + bo->offset, "big", 3) == 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: tensors are stored big-endian; only little-endian checkpoints are read", fname);
        goto done;
    }
    if ((rc = pq_zip_stored(fname, &z, pe->name, &pe))) goto done;
    snprintf(what, sizeof what, "%s:%s", fname, pe->name);
    const pq_pk_value *root;
    if ((rc = pq_pk_load(what, map + pe->offset, (size_t)pe->size, &pk, &root, NULL))) goto done;
    locator l = {.fname = fname, .zip = &z, .prefix = pe->name, .prefix_len = plen};
    rc = table_of(&l, root, file_idx, out, n_out);
done:
    pq_pk_free(pk);
    pq_zip_free(&z);
    return rc;
}

pq_status pq_pt_read(const char *fname, const unsigned char *map, size_t n, int file_idx, pq_st_tensor **out,
                     int64_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    return pq_zip_is_zip(map, n) ? read_zip(fname, map, n, file_idx, out, n_out)
                                 : read_legacy(fname, map, n, file_idx, out, n_out);
}
