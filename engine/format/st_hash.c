/* SPDX-License-Identifier: Apache-2.0 */
/* st_hash.c - tree digest of a checkpoint: a hash of each 64 MiB chunk,
 * then of the leaves (definition in st_hash.h and docs/FORMAT.md). */
#include "format/st_hash.h"

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

#define READ_BYTES ((size_t)1 << 20) /* read size of the file digests */

static int64_t chunks_of(int64_t bytes, int64_t chunk_bytes)
{
    return (bytes + chunk_bytes - 1) / chunk_bytes;
}

int64_t pq_st_hash_first_chunk(const pq_st_model *m, int64_t chunk_bytes, int file)
{
    int64_t n = 0;
    if (chunk_bytes <= 0) return 0;
    for (int f = 0; f < file && f < pq_st_file_count(m); f++) {
        size_t sz;
        pq_st_file_map(m, f, &sz);
        n += chunks_of((int64_t)sz, chunk_bytes);
    }
    return n;
}

int64_t pq_st_hash_chunk_count(const pq_st_model *m, int64_t chunk_bytes)
{
    return pq_st_hash_first_chunk(m, chunk_bytes, pq_st_file_count(m));
}

/* File, offset (*file, *off: NULL is fine), data and length of chunk i;
 * false when i is out of range. */
static bool locate(const pq_st_model *m, int64_t chunk_bytes, int64_t i, const uint8_t **data,
                   int64_t *len, int *file, int64_t *off)
{
    if (chunk_bytes <= 0 || i < 0) return false;
    for (int f = 0; f < pq_st_file_count(m); f++) {
        size_t sz;
        const uint8_t *map = pq_st_file_map(m, f, &sz);
        int64_t n = chunks_of((int64_t)sz, chunk_bytes);
        if (i < n) {
            int64_t at = i * chunk_bytes;
            *data = map + at;
            *len = (int64_t)sz - at < chunk_bytes ? (int64_t)sz - at : chunk_bytes;
            if (file) *file = f;
            if (off) *off = at;
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
    return locate(m, chunk_bytes, i, &d, &len, NULL, NULL) ? len : 0;
}

void pq_st_hash_chunk_drop(const pq_st_model *m, int64_t chunk_bytes, int64_t i)
{
    const uint8_t *d;
    int64_t len, off;
    int f;
    if (locate(m, chunk_bytes, i, &d, &len, &f, &off)) pq_st_drop_range(m, f, (uint64_t)off, (uint64_t)len);
}

pq_status pq_st_hash_chunk(const pq_st_model *m, pq_digest_alg alg, int64_t chunk_bytes, int64_t i,
                           uint8_t leaf[PQ_HASH_LEAF_BYTES])
{
    const uint8_t *d;
    int64_t len;
    if (!locate(m, chunk_bytes, i, &d, &len, NULL, NULL))
        return pq_err(PQ_ERR_INTERNAL, "hash chunk %lld out of range (%lld chunks of %lld bytes)",
                      (long long)i, (long long)pq_st_hash_chunk_count(m, chunk_bytes),
                      (long long)chunk_bytes);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)d & ~(page - 1), e = (uintptr_t)d + (uintptr_t)len;
    /* read the whole chunk ahead instead of one fault-around at a time */
    madvise((void *)b, e - b, MADV_WILLNEED);
    pq_status st = pq_digest(alg, d, (size_t)len, leaf);
    /* Drop the mapping's pages from the resident set (the page cache keeps
     * them): only whole pages inside the chunk, since a neighbour chunk may
     * be hashed concurrently by another thread. */
    uintptr_t rb = ((uintptr_t)d + page - 1) & ~(page - 1), re = e & ~(page - 1);
    if (rb < re) madvise((void *)rb, re - rb, MADV_DONTNEED);
    return st;
}

static void to_hex(const uint8_t *md, int n, char hex[65])
{
    for (int i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

pq_status pq_hash_tree_combine(pq_digest_alg alg, const uint8_t *leaves, int64_t n, char hex[65])
{
    uint8_t root[PQ_HASH_LEAF_BYTES];
    const size_t k = (size_t)pq_digest_bytes(alg);
    uint8_t *packed = NULL;
    const uint8_t *in = leaves;
    if (k < PQ_HASH_LEAF_BYTES && n > 0) { /* the leaves at their own length */
        if (!(packed = malloc((size_t)n * k))) return pq_err(PQ_ERR_RESOURCE, "out of memory for the digest");
        for (int64_t i = 0; i < n; i++) memcpy(packed + (size_t)i * k, leaves + (size_t)i * PQ_HASH_LEAF_BYTES, k);
        in = packed;
    }
    pq_status st = pq_digest(alg, n ? in : NULL, (size_t)n * k, root);
    if (!st) to_hex(root, (int)k, hex);
    free(packed);
    return st;
}

pq_status pq_st_hash_chunks(const pq_st_model *m, pq_digest_alg alg, int64_t chunk_bytes, const int64_t *idx,
                            int64_t n, int n_threads, uint8_t *leaves)
{
    int failed = 0;
    if (n_threads < 1) n_threads = 1;
    /* Any failure is recorded by pq_err on its thread; the detail is the
     * same kind on every one, so the first seen is kept below. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n_threads > 1 && n > 1) \
    reduction(| : failed)
    for (int64_t k = 0; k < n; k++) {
        int64_t i = idx ? idx[k] : k;
        if (pq_st_hash_chunk(m, alg, chunk_bytes, i, leaves + i * PQ_HASH_LEAF_BYTES)) failed |= 1;
    }
    return failed ? pq_err(PQ_ERR_INTERNAL, "hashing the checkpoint's chunks failed") : PQ_OK;
}

pq_status pq_st_digest_tree(const pq_st_model *m, pq_digest_alg alg, int64_t chunk_bytes, int n_threads,
                            char hex[65])
{
    if (chunk_bytes <= 0) return pq_err(PQ_ERR_INTERNAL, "hash chunk size %lld", (long long)chunk_bytes);
    int64_t n = pq_st_hash_chunk_count(m, chunk_bytes);
    uint8_t *leaves = malloc((size_t)(n ? n : 1) * PQ_HASH_LEAF_BYTES);
    if (!leaves) return pq_err(PQ_ERR_RESOURCE, "out of memory for %lld hash leaves", (long long)n);
    pq_status st = pq_st_hash_chunks(m, alg, chunk_bytes, NULL, n, n_threads, leaves);
    if (!st) st = pq_hash_tree_combine(alg, leaves, n, hex);
    free(leaves);
    return st;
}

pq_status pq_st_hash_tree(const pq_st_model *m, int64_t chunk_bytes, int n_threads, char hex[65])
{
    return pq_st_digest_tree(m, PQ_DIGEST_SHA256, chunk_bytes, n_threads, hex);
}

/* SHA-256 of the next `limit` bytes of fd (fewer at the end of the file)
 * into md, read sequentially through buf; *got says how many were read. */
static pq_status sha256_stream(int fd, const char *path, int64_t limit, EVP_MD_CTX *ctx, uint8_t *buf,
                               uint8_t md[PQ_HASH_LEAF_BYTES], int64_t *got)
{
    unsigned int len = 0;
    *got = 0;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        return pq_err(PQ_ERR_INTERNAL, "EVP_DigestInit_ex(sha256) failed");
    while (*got < limit) {
        size_t want = (size_t)(limit - *got) < READ_BYTES ? (size_t)(limit - *got) : READ_BYTES;
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return pq_err(PQ_ERR_IO, "%s: read: %s", path, strerror(errno));
        if (n == 0) break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) return pq_err(PQ_ERR_INTERNAL, "EVP_DigestUpdate failed");
        *got += n;
    }
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != PQ_HASH_LEAF_BYTES)
        return pq_err(PQ_ERR_INTERNAL, "EVP_DigestFinal_ex failed");
    return PQ_OK;
}

/* Opens path and the buffers both file digests read through. */
static pq_status open_stream(const char *path, int *fd, uint8_t **buf, EVP_MD_CTX **ctx)
{
    *buf = NULL;
    *ctx = NULL;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
    *buf = malloc(READ_BYTES);
    *ctx = EVP_MD_CTX_new();
    if (!*buf || !*ctx) return pq_err(PQ_ERR_RESOURCE, "out of memory hashing %s", path);
    return PQ_OK;
}

static void close_stream(int fd, uint8_t *buf, EVP_MD_CTX *ctx)
{
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (fd >= 0) close(fd);
}

pq_status pq_hash_tree_file(const char *path, int64_t chunk_bytes, char hex[65])
{
    uint8_t *leaves = NULL, *buf = NULL;
    EVP_MD_CTX *ctx = NULL;
    int fd = -1;
    struct stat sb;
    if (chunk_bytes <= 0) return pq_err(PQ_ERR_INTERNAL, "hash chunk size %lld", (long long)chunk_bytes);
    pq_status st = open_stream(path, &fd, &buf, &ctx);
    if (st) goto cleanup;
    if (fstat(fd, &sb) != 0) {
        st = pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    int64_t n = chunks_of((int64_t)sb.st_size, chunk_bytes);
    if (!(leaves = malloc((size_t)(n ? n : 1) * PQ_HASH_LEAF_BYTES))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory hashing %s", path);
        goto cleanup;
    }
    for (int64_t c = 0; c < n; c++) {
        int64_t off = c * chunk_bytes, want = (int64_t)sb.st_size - off < chunk_bytes ? (int64_t)sb.st_size - off
                                                                                   : chunk_bytes;
        int64_t got = 0;
        if ((st = sha256_stream(fd, path, want, ctx, buf, leaves + c * PQ_HASH_LEAF_BYTES, &got))) goto cleanup;
        if (got != want) {
            st = pq_err(PQ_ERR_IO, "%s: read at byte %lld: file shrank while hashing", path,
                        (long long)(off + got));
            goto cleanup;
        }
    }
    st = pq_hash_tree_combine(PQ_DIGEST_SHA256, leaves, n, hex);
cleanup:
    close_stream(fd, buf, ctx);
    free(leaves);
    return st;
}

pq_status pq_sha256_file(const char *path, char hex[65])
{
    uint8_t *buf = NULL, md[PQ_HASH_LEAF_BYTES];
    EVP_MD_CTX *ctx = NULL;
    int fd = -1;
    int64_t got = 0;
    pq_status st = open_stream(path, &fd, &buf, &ctx);
    if (!st) st = sha256_stream(fd, path, INT64_MAX, ctx, buf, md, &got);
    if (!st) to_hex(md, PQ_HASH_LEAF_BYTES, hex);
    close_stream(fd, buf, ctx);
    return st;
}
