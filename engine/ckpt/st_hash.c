/* SPDX-License-Identifier: Apache-2.0 */
/* st_hash.c - tree digest of a checkpoint: SHA-256 of 64 MiB chunks, then
 * SHA-256 of the leaves (definition in st_hash.h and docs/FORMAT.md). */
#include "st_hash.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BYTES ((size_t)1 << 20) /* pq_hash_tree_file's read size */

static int64_t chunks_of(int64_t bytes, int64_t chunk_bytes)
{
    return (bytes + chunk_bytes - 1) / chunk_bytes;
}

int64_t pq_st_hash_chunk_count(const pq_st_model *m, int64_t chunk_bytes)
{
    int64_t n = 0;
    if (chunk_bytes <= 0) return 0;
    for (int f = 0; f < pq_st_file_count(m); f++) {
        size_t sz;
        pq_st_file_map(m, f, &sz);
        n += chunks_of((int64_t)sz, chunk_bytes);
    }
    return n;
}

/* File, offset and length of chunk i; false when i is out of range. */
static bool locate(const pq_st_model *m, int64_t chunk_bytes, int64_t i, const uint8_t **data,
                   int64_t *len)
{
    if (chunk_bytes <= 0 || i < 0) return false;
    for (int f = 0; f < pq_st_file_count(m); f++) {
        size_t sz;
        const uint8_t *map = pq_st_file_map(m, f, &sz);
        int64_t n = chunks_of((int64_t)sz, chunk_bytes);
        if (i < n) {
            int64_t off = i * chunk_bytes;
            *data = map + off;
            *len = (int64_t)sz - off < chunk_bytes ? (int64_t)sz - off : chunk_bytes;
            return true;
        }
        i -= n;
    }
    return false;
}

int64_t pq_st_hash_chunk_len(const pq_st_model *m, int64_t chunk_bytes, int64_t i)
{
    const uint8_t *d;
    int64_t len;
    return locate(m, chunk_bytes, i, &d, &len) ? len : 0;
}

static pq_status sha256(const void *data, size_t n, uint8_t out[PQ_HASH_LEAF_BYTES])
{
    unsigned int len = 0;
    if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != PQ_HASH_LEAF_BYTES)
        return pq_err(PQ_ERR_INTERNAL, "EVP_Digest(sha256) failed");
    return PQ_OK;
}

pq_status pq_st_hash_chunk(const pq_st_model *m, int64_t chunk_bytes, int64_t i,
                           uint8_t leaf[PQ_HASH_LEAF_BYTES])
{
    const uint8_t *d;
    int64_t len;
    if (!locate(m, chunk_bytes, i, &d, &len))
        return pq_err(PQ_ERR_INTERNAL, "hash chunk %lld out of range (%lld chunks of %lld bytes)",
                      (long long)i, (long long)pq_st_hash_chunk_count(m, chunk_bytes),
                      (long long)chunk_bytes);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)d & ~(page - 1), e = (uintptr_t)d + (uintptr_t)len;
    /* read the whole chunk ahead instead of one fault-around at a time */
    madvise((void *)b, e - b, MADV_WILLNEED);
    pq_status st = sha256(d, (size_t)len, leaf);
    /* Drop the mapping's pages from the resident set (the page cache keeps
     * them): only whole pages inside the chunk, since a neighbour chunk may
     * be hashed concurrently by another thread. */
    uintptr_t rb = ((uintptr_t)d + page - 1) & ~(page - 1), re = e & ~(page - 1);
    if (rb < re) madvise((void *)rb, re - rb, MADV_DONTNEED);
    return st;
}

pq_status pq_hash_tree_combine(const uint8_t *leaves, int64_t n, char hex[65])
{
    uint8_t root[PQ_HASH_LEAF_BYTES];
    static const uint8_t none = 0;
    pq_status st = sha256(n ? leaves : &none, (size_t)n * PQ_HASH_LEAF_BYTES, root);
    if (st) return st;
    for (int i = 0; i < PQ_HASH_LEAF_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", root[i]);
    return PQ_OK;
}

pq_status pq_st_hash_tree(const pq_st_model *m, int64_t chunk_bytes, int n_threads, char hex[65])
{
    if (chunk_bytes <= 0) return pq_err(PQ_ERR_INTERNAL, "hash chunk size %lld", (long long)chunk_bytes);
    int64_t n = pq_st_hash_chunk_count(m, chunk_bytes);
    uint8_t *leaves = malloc((size_t)(n ? n : 1) * PQ_HASH_LEAF_BYTES);
    if (!leaves) return pq_err(PQ_ERR_RESOURCE, "out of memory for %lld hash leaves", (long long)n);
    int failed = 0;
    if (n_threads < 1) n_threads = 1;
    /* Any failure is recorded by pq_err on its thread; the detail is the
     * same kind on every one, so the first seen is kept below. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n_threads > 1 && n > 1) \
    reduction(| : failed)
    for (int64_t i = 0; i < n; i++)
        if (pq_st_hash_chunk(m, chunk_bytes, i, leaves + i * PQ_HASH_LEAF_BYTES)) failed |= 1;
    pq_status st = failed ? pq_err(PQ_ERR_INTERNAL, "hashing the checkpoint's chunks failed")
                          : pq_hash_tree_combine(leaves, n, hex);
    free(leaves);
    return st;
}

pq_status pq_hash_tree_file(const char *path, int64_t chunk_bytes, char hex[65])
{
    pq_status st = PQ_OK;
    uint8_t *leaves = NULL, *buf = NULL;
    EVP_MD_CTX *ctx = NULL;
    struct stat sb;
    if (chunk_bytes <= 0) return pq_err(PQ_ERR_INTERNAL, "hash chunk size %lld", (long long)chunk_bytes);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    int64_t n = chunks_of((int64_t)sb.st_size, chunk_bytes);
    leaves = malloc((size_t)(n ? n : 1) * PQ_HASH_LEAF_BYTES);
    buf = malloc(READ_BYTES);
    ctx = EVP_MD_CTX_new();
    if (!leaves || !buf || !ctx) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory hashing %s", path);
        goto cleanup;
    }
    for (int64_t c = 0; c < n; c++) {
        int64_t off = c * chunk_bytes, end = off + chunk_bytes;
        if (end > (int64_t)sb.st_size) end = (int64_t)sb.st_size;
        unsigned int len = 0;
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
            st = pq_err(PQ_ERR_INTERNAL, "EVP_DigestInit_ex(sha256) failed");
            goto cleanup;
        }
        while (off < end) {
            size_t want = (size_t)(end - off) < READ_BYTES ? (size_t)(end - off) : READ_BYTES;
            ssize_t got = pread(fd, buf, want, (off_t)off);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                st = pq_err(PQ_ERR_IO, "%s: read at byte %lld: %s", path, (long long)off,
                            got ? strerror(errno) : "file shrank while hashing");
                goto cleanup;
            }
            if (EVP_DigestUpdate(ctx, buf, (size_t)got) != 1) {
                st = pq_err(PQ_ERR_INTERNAL, "EVP_DigestUpdate failed");
                goto cleanup;
            }
            off += got;
        }
        if (EVP_DigestFinal_ex(ctx, leaves + c * PQ_HASH_LEAF_BYTES, &len) != 1 || len != 32) {
            st = pq_err(PQ_ERR_INTERNAL, "EVP_DigestFinal_ex failed");
            goto cleanup;
        }
    }
    st = pq_hash_tree_combine(leaves, n, hex);
cleanup:
    EVP_MD_CTX_free(ctx);
    free(buf);
    free(leaves);
    close(fd);
    return st;
}
