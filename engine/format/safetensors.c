/* SPDX-License-Identifier: Apache-2.0 */
/* safetensors.c - open, validate and memory-map safetensors checkpoints.
 *
 * The format: 8-byte little-endian header length N, N bytes of JSON (an
 * object of name -> {dtype, shape, data_offsets} plus an optional
 * "__metadata__" string map), then the data area. Offsets are relative to the
 * data area. Validation follows what the reference writer produces: tensors
 * tile the data area exactly (no gap, no overlap, no trailing bytes), so any
 * deviation is treated as corruption rather than guessed around. */
#include "format/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/pt_ckpt.h"

#define HEADER_MAX_BYTES (100u * 1000u * 1000u) /* far above any real header */
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define PT_INDEX_NAME "pytorch_model.bin.index.json"
#define PT_SINGLE_NAME "pytorch_model.bin"

typedef struct shard {
    char *path;
    const unsigned char *map; /* whole file, read-only */
    size_t map_bytes;
} shard;

struct pq_st_model {
    shard *files;
    int n_files;
    pq_st_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    bool any_pt; /* a shard is a PyTorch checkpoint: names may be fair-esm's */
};

/* ---------------------------------------------------------------- helpers */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const pq_st_tensor *)a)->name, ((const pq_st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const pq_st_tensor *x = *(const pq_st_tensor *const *)a, *y = *(const pq_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->n_bytes != y->n_bytes) return x->n_bytes < y->n_bytes ? -1 : 1;
    return 0;
}

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

static pq_status push_tensor(pq_st_model *m, const pq_st_tensor *t)
{
    if (m->n_tensors == m->cap_tensors) {
        int64_t cap = m->cap_tensors ? m->cap_tensors * 2 : 64;
        pq_st_tensor *p = realloc(m->tensors, (size_t)cap * sizeof *p);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory for %lld tensors", (long long)cap);
        m->tensors = p;
        m->cap_tensors = cap;
    }
    m->tensors[m->n_tensors++] = *t;
    return PQ_OK;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* Directory part of `path` including the trailing slash ("" when none). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path + 1) : 0;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

/* ------------------------------------------------------- header parsing */

/* Read a JSON integer that must be >= 0. */
static bool json_nonneg(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (int64_t)x;
    return true;
}

/* Validate one tensor entry and append it; `fi` is the shard index. */
static pq_status parse_entry(pq_st_model *m, int fi, const char *fname, const char *name,
                             const json_t *e, uint64_t data_start, uint64_t data_bytes)
{
    pq_st_tensor t;
    memset(&t, 0, sizeof t);
    if (!json_is_object(e))
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", fname, name);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)e, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': unknown field '%s'", fname, name, key);
    }
    const json_t *jd = json_object_get(e, "dtype");
    const json_t *js = json_object_get(e, "shape");
    const json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", fname, name);
    if (pq_dtype_parse(json_string_value(jd), &t.dtype) != 0)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': unsupported dtype '%s'", fname, name,
                      json_string_value(jd));
    if (!json_is_array(js))
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': missing or non-array shape", fname, name);
    if (json_array_size(js) > PQ_MAX_DIMS)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': shape has %zu dimensions, at most %d supported",
                      fname, name, json_array_size(js), PQ_MAX_DIMS);
    t.ndim = (int)json_array_size(js);
    int64_t n_elems = 1;
    for (int d = 0; d < t.ndim; d++) {
        if (!json_nonneg(json_array_get(js, (size_t)d), &t.shape[d]))
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': shape dimension %d is not a non-negative integer",
                          fname, name, d);
        if (__builtin_mul_overflow(n_elems, t.shape[d], &n_elems))
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': shape element count overflows", fname, name);
    }
    t.n_elems = n_elems;
    uint64_t need;
    if (__builtin_mul_overflow((uint64_t)n_elems, (uint64_t)pq_dtype_size(t.dtype), &need) ||
        need > SIZE_MAX)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': byte size overflows", fname, name);
    int64_t b, en;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_nonneg(json_array_get(jo, 0), &b) ||
        !json_nonneg(json_array_get(jo, 1), &en))
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers",
                      fname, name);
    if (b > en)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] has begin > end", fname,
                      name, (long long)b, (long long)en);
    if ((uint64_t)en > data_bytes)
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end beyond the data area of %llu bytes",
                      fname, name, (long long)b, (long long)en, (unsigned long long)data_bytes);
    if ((uint64_t)(en - b) != need) {
        char sh[256];
        format_shape(t.shape, t.ndim, sh, sizeof sh);
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but shape %s %s needs %llu",
                      fname, name, (long long)b, (long long)en, (long long)(en - b), sh,
                      pq_dtype_name(t.dtype), (unsigned long long)need);
    }
    t.file_idx = fi;
    t.offset = data_start + (uint64_t)b;
    t.n_bytes = (size_t)need;
    t.name = strdup(name);
    if (!t.name) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status rc = push_tensor(m, &t);
    if (rc != PQ_OK) free(t.name);
    return rc;
}

/* Tensors [first, m->n_tensors) belong to one shard whose data area starts at
 * data_start; they must tile it exactly. */
static pq_status check_tiling(const pq_st_model *m, int64_t first, const char *fname,
                              uint64_t data_start, uint64_t data_bytes)
{
    int64_t n = m->n_tensors - first;
    pq_status rc = PQ_OK;
    const pq_st_tensor **by_off = malloc((size_t)(n ? n : 1) * sizeof *by_off);
    if (!by_off) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; i < n; i++) by_off[i] = &m->tensors[first + i];
    qsort(by_off, (size_t)n, sizeof *by_off, cmp_tensor_offset);
    uint64_t pos = data_start;
    const pq_st_tensor *prev = NULL;
    for (int64_t i = 0; i < n; i++) {
        const pq_st_tensor *t = by_off[i];
        if (t->offset < pos) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: tensor '%s' at data offset %llu overlaps tensor '%s' ending at %llu",
                        fname, t->name, (unsigned long long)(t->offset - data_start),
                        prev ? prev->name : "?", (unsigned long long)(pos - data_start));
            goto cleanup;
        }
        if (t->offset > pos) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': gap of %llu unreferenced bytes before its data offset %llu",
                        fname, t->name, (unsigned long long)(t->offset - pos),
                        (unsigned long long)(t->offset - data_start));
            goto cleanup;
        }
        pos = t->offset + t->n_bytes;
        prev = t;
    }
    if (pos != data_start + data_bytes)
        rc = pq_err(PQ_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor's data", fname,
                    (unsigned long long)(data_start + data_bytes - pos));
cleanup:
    free(by_off);
    return rc;
}

static pq_status check_metadata(const char *fname, const json_t *md)
{
    if (!json_is_object(md))
        return pq_err(PQ_ERR_FORMAT, "%s: __metadata__ is not a JSON object", fname);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)md, key, val) {
        if (!json_is_string(val))
            return pq_err(PQ_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", fname, key);
    }
    return PQ_OK;
}

/* Shard fi, already mapped, is a torch.save checkpoint: append its tensors. */
static pq_status load_pt_shard(pq_st_model *m, int fi)
{
    pq_st_tensor *t = NULL;
    int64_t n = 0;
    pq_status rc = pq_pt_read(m->files[fi].path, m->files[fi].map, m->files[fi].map_bytes, fi, &t, &n);
    for (int64_t i = 0; !rc && i < n; i++) {
        rc = push_tensor(m, &t[i]);
        if (!rc) t[i].name = NULL; /* the model owns it now */
    }
    pq_pt_free_tensors(t, n);
    m->any_pt = true;
    return rc;
}

/* Map `path` as shard `fi` of m, validate its header (or read it as a
 * PyTorch checkpoint) and append its tensors. */
static pq_status load_shard(pq_st_model *m, int fi)
{
    pq_status rc = PQ_OK;
    json_t *root = NULL;
    shard *s = &m->files[fi];
    const char *fname = s->path;
    int fd = open(fname, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pq_err(PQ_ERR_IO, "%s: %s", fname, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = pq_err(PQ_ERR_IO, "%s: %s", fname, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pq_err(PQ_ERR_IO, "%s: not a regular file", fname);
        goto cleanup;
    }
    uint64_t file_bytes = (uint64_t)st.st_size;
    if (file_bytes < 8) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: truncated header: file is %llu bytes, the header length alone needs 8",
                    fname, (unsigned long long)file_bytes);
        goto cleanup;
    }
    void *map = mmap(NULL, (size_t)file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = pq_err(PQ_ERR_IO, "%s: mmap: %s", fname, strerror(errno));
        goto cleanup;
    }
    s->map = map;
    s->map_bytes = (size_t)file_bytes;
    if (pq_pt_is_zip(s->map, s->map_bytes) || pq_pt_is_legacy(fname, s->map, s->map_bytes)) {
        rc = load_pt_shard(m, fi);
        goto cleanup;
    }

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | s->map[i];
    if (hlen > HEADER_MAX_BYTES) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: absurd header length %llu (limit %u)", fname,
                    (unsigned long long)hlen, HEADER_MAX_BYTES);
        goto cleanup;
    }
    if (hlen > file_bytes - 8) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: header length %llu extends beyond the file of %llu bytes", fname,
                    (unsigned long long)hlen, (unsigned long long)file_bytes);
        goto cleanup;
    }
    json_error_t jerr;
    /* Duplicate names must be an error, and jansson only detects them when asked. */
    root = json_loadb((const char *)s->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: header is not valid JSON: %s (at byte %d)", fname, jerr.text,
                    jerr.position);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: header is not a JSON object", fname);
        goto cleanup;
    }
    uint64_t data_start = 8 + hlen, data_bytes = file_bytes - data_start;
    int64_t first = m->n_tensors;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0)
            rc = check_metadata(fname, val);
        else
            rc = parse_entry(m, fi, fname, key, val, data_start, data_bytes);
        if (rc != PQ_OK) goto cleanup;
    }
    rc = check_tiling(m, first, fname, data_start, data_bytes);
cleanup:
    json_decref(root);
    close(fd);
    return rc;
}

/* ------------------------------------------------------- sharded index */

static bool unsafe_shard_path(const char *p)
{
    if (!*p || p[0] == '/') return true;
    /* reject any ".." component */
    const char *c = p;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') return true;
        if (!e) break;
        c = e + 1;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static pq_status open_index(pq_st_model *m, const char *index_path, json_t **wm_out, json_t **root_out)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (access(index_path, R_OK) != 0)
            return pq_err(PQ_ERR_IO, "%s: %s", index_path, strerror(errno));
        return pq_err(PQ_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", index_path, jerr.text, jerr.line);
    }
    *root_out = root;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm))
        return pq_err(PQ_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
    size_t n = json_object_size(wm);
    if (n == 0) return pq_err(PQ_ERR_FORMAT, "%s: empty weight_map", index_path);
    const char **names = malloc(n * sizeof *names);
    if (!names) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            free(names);
            return pq_err(PQ_ERR_FORMAT, "%s: weight_map entry '%s' is not a string", index_path, key);
        }
        const char *sp = json_string_value(val);
        if (unsafe_shard_path(sp)) {
            free(names);
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': shard path '%s' is empty, absolute or contains '..'",
                          index_path, key, sp);
        }
        names[k++] = sp;
    }
    /* Shards in sorted file-name order: deterministic, and the HF
     * model-0000i-of-0000n names sort in shard order. */
    qsort(names, n, sizeof *names, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0) names[u++] = names[i];
    pq_status rc = PQ_OK;
    char *dir = dir_of(index_path);
    m->files = calloc(u, sizeof *m->files);
    if (!dir || !m->files) {
        rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto cleanup;
    }
    m->n_files = (int)u;
    for (size_t i = 0; i < u; i++) {
        m->files[i].path = join_path(dir, names[i]);
        if (!m->files[i].path) {
            rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto cleanup;
        }
    }
    *wm_out = wm;
cleanup:
    free(dir);
    free(names);
    return rc;
}

/* Every tensor in a shard must be listed in weight_map under that shard, and
 * every weight_map entry must have been found. Tensors are sorted by name. */
static pq_status check_index(const pq_st_model *m, const char *index_path, json_t *wm)
{
    char *dir = dir_of(index_path);
    if (!dir) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    size_t dlen = strlen(dir);
    free(dir);
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const pq_st_tensor *t = &m->tensors[i];
        const char *shard_path = m->files[t->file_idx].path;
        json_t *v = json_object_get(wm, t->name);
        if (!v)
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s' is not listed in %s's weight_map", shard_path,
                          t->name, index_path);
        if (strcmp(json_string_value(v), shard_path + dlen) != 0)
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s' is found in %s but weight_map names shard '%s'",
                          index_path, t->name, shard_path, json_string_value(v));
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        pq_st_tensor probe = {.name = (char *)key};
        if (!bsearch(&probe, m->tensors, (size_t)m->n_tensors, sizeof probe, cmp_tensor_name))
            return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s' listed in weight_map is missing from shard '%s'",
                          index_path, key, json_string_value(val));
    }
    return PQ_OK;
}

/* ------------------------------------------------------------- public */

static bool is_regular(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

pq_status pq_st_open(const char *path, pq_st_model **out)
{
    pq_status rc = PQ_OK;
    char *resolved = NULL;
    json_t *index_root = NULL, *wm = NULL;
    *out = NULL;
    pq_st_model *m = calloc(1, sizeof *m);
    if (!m) return pq_err(PQ_ERR_RESOURCE, "out of memory");

    struct stat st;
    if (stat(path, &st) != 0) {
        rc = pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        /* safetensors first, then PyTorch's names, each index before its single file */
        static const char *const names[] = {INDEX_NAME, SINGLE_NAME, PT_INDEX_NAME, PT_SINGLE_NAME};
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !resolved; i++) {
            char *cand = join_path(path, names[i]);
            if (!cand) {
                rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
                goto fail;
            }
            if (is_regular(cand))
                resolved = cand;
            else
                free(cand);
        }
        if (!resolved) {
            rc = pq_err(PQ_ERR_IO, "%s: directory holds none of %s, %s, %s, %s", path, SINGLE_NAME, INDEX_NAME,
                        PT_SINGLE_NAME, PT_INDEX_NAME);
            goto fail;
        }
    } else {
        resolved = strdup(path);
        if (!resolved) {
            rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto fail;
        }
    }

    bool sharded = has_suffix(resolved, ".json");
    if (sharded) {
        rc = open_index(m, resolved, &wm, &index_root);
        if (rc != PQ_OK) goto fail;
    } else {
        m->files = calloc(1, sizeof *m->files);
        if (!m->files) {
            rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto fail;
        }
        m->n_files = 1;
        m->files[0].path = resolved;
        resolved = NULL;
    }
    for (int fi = 0; fi < m->n_files; fi++) {
        /* a shard the index names but that is not there makes the
         * checkpoint inconsistent, not merely unreadable */
        if (sharded && access(m->files[fi].path, F_OK) != 0 && errno == ENOENT) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: shard '%s' named in weight_map does not exist", resolved,
                        m->files[fi].path);
            goto fail;
        }
        rc = load_shard(m, fi);
        if (rc != PQ_OK) goto fail;
    }
    if (m->n_tensors > 1)
        qsort(m->tensors, (size_t)m->n_tensors, sizeof *m->tensors, cmp_tensor_name);
    for (int64_t i = 1; i < m->n_tensors; i++) {
        const pq_st_tensor *a = &m->tensors[i - 1], *b = &m->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: tensor '%s' appears in two shards (also in %s)",
                        m->files[b->file_idx].path, b->name, m->files[a->file_idx].path);
            goto fail;
        }
    }
    if (sharded) {
        rc = check_index(m, resolved, wm);
        if (rc != PQ_OK) goto fail;
    }
    if (m->any_pt) {
        /* fair-esm names become Hugging Face names, once the index (which
         * lists the names as stored) has been checked */
        if ((rc = pq_pt_map_names(m->tensors, &m->n_tensors))) goto fail;
        qsort(m->tensors, (size_t)m->n_tensors, sizeof *m->tensors, cmp_tensor_name);
        for (int64_t i = 1; i < m->n_tensors; i++)
            if (strcmp(m->tensors[i - 1].name, m->tensors[i].name) == 0) {
                rc = pq_err(PQ_ERR_FORMAT, "%s: two tensors of the checkpoint are both named '%s' once fair-esm's "
                            "names are mapped to Hugging Face's", path, m->tensors[i].name);
                goto fail;
            }
    }
    json_decref(index_root);
    free(resolved);
    *out = m;
    return PQ_OK;
fail:
    json_decref(index_root);
    free(resolved);
    pq_st_close(m);
    return rc;
}

void pq_st_close(pq_st_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) {
        if (m->files[i].map) munmap((void *)m->files[i].map, m->files[i].map_bytes);
        free(m->files[i].path);
    }
    free(m->files);
    for (int64_t i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->tensors);
    free(m);
}

int64_t pq_st_count(const pq_st_model *m) { return m->n_tensors; }

const pq_st_tensor *pq_st_get(const pq_st_model *m, int64_t i)
{
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}

const pq_st_tensor *pq_st_find(const pq_st_model *m, const char *name)
{
    pq_st_tensor probe = {.name = (char *)name};
    return bsearch(&probe, m->tensors, (size_t)m->n_tensors, sizeof probe, cmp_tensor_name);
}

const char *pq_st_file_path(const pq_st_model *m, int file_idx)
{
    return file_idx >= 0 && file_idx < m->n_files ? m->files[file_idx].path : NULL;
}

int pq_st_file_count(const pq_st_model *m) { return m->n_files; }

const char *pq_st_kind(const pq_st_model *m) { return m->any_pt ? "PyTorch" : "safetensors"; }

uint64_t pq_st_total_bytes(const pq_st_model *m)
{
    uint64_t s = 0;
    for (int i = 0; i < m->n_files; i++) s += m->files[i].map_bytes;
    return s;
}

const void *pq_st_data(const pq_st_model *m, const pq_st_tensor *t)
{
    return m->files[t->file_idx].map + t->offset;
}

pq_status pq_st_read_rows_f32(const pq_st_model *m, const pq_st_tensor *t, int64_t row0,
                              int64_t n_rows, float *dst)
{
    int64_t rows = t->ndim >= 2 ? t->shape[0] : 1;
    int64_t cols = rows ? t->n_elems / rows : 0;
    if (row0 < 0 || n_rows < 0 || row0 > rows || n_rows > rows - row0)
        return pq_err(PQ_ERR_INTERNAL, "tensor '%s': rows [%lld, %lld) outside its %lld rows", t->name,
                      (long long)row0, (long long)(row0 + n_rows), (long long)rows);
    const unsigned char *src = (const unsigned char *)pq_st_data(m, t) +
                               (size_t)(row0 * cols) * pq_dtype_size(t->dtype);
    int64_t n = n_rows * cols;
    switch (t->dtype) {
    case PQ_DT_F32:
    case PQ_DT_F16:
    case PQ_DT_BF16:
        pq_convert_to_f32(t->dtype, src, n, dst);
        return PQ_OK;
    case PQ_DT_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return PQ_OK;
    default:
        return pq_err(PQ_ERR_FORMAT, "%s: tensor '%s': dtype %s cannot be read as floating point",
                      m->files[t->file_idx].path, t->name, pq_dtype_name(t->dtype));
    }
}

/* A fault maps the whole page-cache folio that holds the byte, and the
 * folios of a file written or read ahead in large blocks reach 2 MiB: had
 * the release kept to the pages inside a tensor, each small float tensor
 * would leave up to 2 MiB mapped (~200 MiB of resident set on a 150M model
 * just written). So it covers the 2 MiB blocks (by file offset, as folios
 * are aligned) that the tensor touches. Pages of neighbours in them that
 * are still in use fault in again from the page cache: the mapping is
 * read-only, so nothing is lost. */
#define RELEASE_BLOCK ((uint64_t)2 << 20)

void pq_st_release(const pq_st_model *m, const pq_st_tensor *t)
{
    const shard *s = &m->files[t->file_idx];
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t end_of_map = ((uint64_t)s->map_bytes + page - 1) & ~(page - 1);
    uint64_t b = t->offset & ~(RELEASE_BLOCK - 1);
    uint64_t e = (t->offset + t->n_bytes + RELEASE_BLOCK - 1) & ~(RELEASE_BLOCK - 1);
    if (e > end_of_map) e = end_of_map;
    if (b < e) madvise((void *)(s->map + b), (size_t)(e - b), MADV_DONTNEED);
}

void pq_st_drop_range(const pq_st_model *m, int file_idx, uint64_t off, uint64_t len)
{
    if (file_idx < 0 || file_idx >= m->n_files) return;
    const shard *s = &m->files[file_idx];
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    const uint64_t e = off + len > s->map_bytes ? s->map_bytes : off + len;
    const uint64_t mb = (off + page - 1) / page * page, me = e / page * page;
    if (mb < me) madvise((void *)(s->map + mb), (size_t)(me - mb), MADV_DONTNEED);
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (off < e) posix_fadvise(fd, (off_t)off, (off_t)(e - off), POSIX_FADV_DONTNEED);
        close(fd);
    }
}

void pq_st_prefetch(const pq_st_model *m, const pq_st_tensor *t, int64_t row0, int64_t n_rows)
{
    if (!t->n_bytes || !n_rows) return;
    int64_t rows = t->ndim >= 2 ? t->shape[0] : 1;
    size_t row_bytes = rows ? t->n_bytes / (size_t)rows : t->n_bytes;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)pq_st_data(m, t) + (uintptr_t)row0 * row_bytes;
    uintptr_t e = b + (uintptr_t)n_rows * row_bytes;
    b &= ~(page - 1);
    /* a hint: the kernel starts reading the range now, asynchronously */
    madvise((void *)b, e - b, MADV_WILLNEED);
}

const void *pq_st_file_map(const pq_st_model *m, int file_idx, size_t *n_bytes)
{
    if (file_idx < 0 || file_idx >= m->n_files) {
        *n_bytes = 0;
        return NULL;
    }
    *n_bytes = m->files[file_idx].map_bytes;
    return m->files[file_idx].map;
}
