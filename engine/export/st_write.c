/* SPDX-License-Identifier: Apache-2.0 */
/* st_write.c - the safetensors writer (st_write.h): an 8-byte little-endian
 * header length, the JSON header (padded with spaces to a multiple of 8),
 * then the tensors' bytes in name order. */
#include "export/st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"

static int by_name(const void *a, const void *b)
{
    return strcmp(((const pq_stw_tensor *)a)->name, ((const pq_stw_tensor *)b)->name);
}

static uint64_t tensor_bytes(const pq_stw_tensor *t)
{
    uint64_t n = pq_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    return n;
}

/* The header JSON (owned string), its keys in name order. */
static char *build_header(const pq_stw_tensor *t, int64_t n)
{
    json_t *root = json_object(), *meta = json_object();
    uint64_t off = 0;
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    for (int64_t i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        uint64_t bytes = tensor_bytes(&t[i]);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "dtype", json_string(pq_dtype_name(t[i].dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, t[i].name, e);
        off += bytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    return s;
}

pq_status pq_stw_write(const char *path, pq_stw_tensor *t, int64_t n, pq_stw_fill fill, void *user)
{
    qsort(t, (size_t)n, sizeof *t, by_name);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(t[i - 1].name, t[i].name))
            return pq_err(PQ_ERR_INTERNAL, "%s: tensor '%s' planned twice", path, t[i].name);
    char *hdr = build_header(t, n);
    if (!hdr) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    unsigned char *head = malloc(8 + padded);
    void *buf = NULL;
    pq_status st = PQ_OK;
    int fd = -1, e = 0;
    if (!head) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
    for (int b = 0; b < 8; b++) head[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(head + 8, hdr, hlen);
    memset(head + 8 + hlen, ' ', padded - hlen);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { e = errno; goto io_error; }
    uint64_t off = 0;
    if ((e = pq_pwrite_all(fd, head, 8 + padded, off))) goto io_error;
    off += 8 + padded;
    for (int64_t i = 0; i < n; i++) {
        uint64_t bytes = tensor_bytes(&t[i]);
        if (!(buf = malloc(bytes ? bytes : 1))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto cleanup; }
        if ((st = fill(user, &t[i], buf))) goto cleanup;
        if ((e = pq_pwrite_all(fd, buf, bytes, off))) goto io_error;
        off += bytes;
        free(buf);
        buf = NULL;
    }
    if (close(fd) < 0) { fd = -1; e = errno; goto io_error; }
    fd = -1;
    goto cleanup;
io_error:
    st = pq_err(PQ_ERR_IO, "%s: %s", path, strerror(e));
cleanup:
    if (fd >= 0) close(fd);
    free(buf);
    free(head);
    free(hdr);
    return st;
}
