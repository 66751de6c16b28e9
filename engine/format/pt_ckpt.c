/* SPDX-License-Identifier: Apache-2.0 */
/* pt_ckpt.c - the tensor table of a torch.save zip checkpoint: find
 * <archive>/data.pkl, unpickle it without executing anything, find the state
 * dict and turn each tensor into a byte range of <archive>/data/<key>. */
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

/* Validate tensor `name` against its storage entry and fill *t. */
static pq_status make_tensor(const char *fname, const pq_zip *z, const char *prefix, size_t prefix_len,
                             const char *name, const pq_pk_value *v, int file_idx, pq_st_tensor *t)
{
    char sh[256], sd[256], entry[NAME_MAX_BYTES + 64];
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
    if (strlen(st->s) > NAME_MAX_BYTES) return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': storage key too long", fname, name);
    snprintf(entry, sizeof entry, "%.*s/data/%s", (int)prefix_len, prefix, st->s);
    const pq_zip_entry *e;
    pq_status rc = pq_zip_stored(fname, z, entry, &e);
    if (rc) return rc;
    uint64_t es = pq_dtype_size(st->dtype);
    if (e->size / es < (uint64_t)st->i)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': storage '%s' holds %llu bytes, fewer than its %lld %s elements",
                      fname, name, entry, (unsigned long long)e->size, (long long)st->i, pq_dtype_name(st->dtype));
    memset(t, 0, sizeof *t);
    t->dtype = v->dtype;
    t->ndim = v->ndim;
    memcpy(t->shape, v->shape, sizeof t->shape);
    t->n_elems = numel;
    t->file_idx = file_idx;
    t->offset = e->offset + (uint64_t)v->i * es;
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

pq_status pq_pt_read(const char *fname, const unsigned char *map, size_t n, int file_idx, pq_st_tensor **out,
                     int64_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    pq_zip z;
    pq_pk *pk = NULL;
    pq_st_tensor *t = NULL;
    int64_t nt = 0;
    char what[NAME_MAX_BYTES + 64];
    pq_status rc = pq_zip_open(fname, map, n, &z);
    if (rc) return rc;
    const pq_zip_entry *pe, *bo;
    size_t plen = 0;
    if ((rc = find_pickle(fname, &z, &pe, &plen))) goto done;
    const char *prefix = pe->name;
    snprintf(what, sizeof what, "%.*s/byteorder", (int)plen, prefix);
    if ((bo = pq_zip_find(&z, what)) && bo->method == 0 && bo->size == 3 && memcmp(map + bo->offset, "big", 3) == 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: tensors are stored big-endian; only little-endian checkpoints are read", fname);
        goto done;
    }
    if ((rc = pq_zip_stored(fname, &z, pe->name, &pe))) goto done;
    snprintf(what, sizeof what, "%s:%s", fname, pe->name);
    const pq_pk_value *root, *sd;
    if ((rc = pq_pk_load(what, map + pe->offset, (size_t)pe->size, &pk, &root))) goto done;
    if (root->kind != PQ_PK_DICT) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: the saved object is a %s, not a dict of tensors", fname,
                    pq_pk_kind_name(root->kind));
        goto done;
    }
    sd = root;
    const char *const wrappers[] = {"model", "state_dict"};
    for (size_t i = 0; i < 2; i++) {
        const pq_pk_value *w = pq_pk_dict_get(root, wrappers[i]);
        if (w && w->kind == PQ_PK_DICT) {
            sd = w;
            break;
        }
    }
    int64_t count = sd->n / 2;
    t = calloc((size_t)(count ? count : 1), sizeof *t);
    if (!t) {
        rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto done;
    }
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
        if ((rc = make_tensor(fname, &z, prefix, plen, k->s, v, file_idx, &t[nt]))) goto done;
        nt++;
    }
    if ((rc = check_unique(fname, t, nt))) goto done;
    *out = t;
    *n_out = nt;
    t = NULL;
done:
    pq_pt_free_tensors(t, nt);
    pq_pk_free(pk);
    pq_zip_free(&z);
    return rc;
}
