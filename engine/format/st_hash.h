/* SPDX-License-Identifier: Apache-2.0 */
/* st_hash.h - the tree digest of a checkpoint (source_digest_tree).
 *
 * Definition (docs/FORMAT.md): the checkpoint's files in pq_st file order,
 * each cut into consecutive chunks of chunk_bytes (its last chunk shorter,
 * an empty file none); leaf = H(chunk); root = H of all leaves concatenated
 * in order (files in order, chunks in file order); the digest is the
 * lowercase hex of root. H is SHA-256 or XXH3-128 (digest.h). Unlike one plain SHA-256 stream, the leaves
 * can be hashed by several threads or ranks and combined on one; the result
 * does not depend on who hashed which chunk. */
#ifndef PQ_ST_HASH_H
#define PQ_ST_HASH_H

#include <stdint.h>

#include "base/pq_err.h"
#include "format/digest.h"
#include "format/safetensors.h"

/* The chunk size of every digest Proteus writes (attribute
 * source_hash_chunk_bytes). Other sizes exist for the tests only. */
#define PQ_HASH_CHUNK_BYTES ((int64_t)64 << 20)

/* Number of chunks of m's files (chunk_bytes > 0). */
int64_t pq_st_hash_chunk_count(const pq_st_model *m, int64_t chunk_bytes);

/* Digest index of the first chunk of file `file` (pq_st file order): the
 * chunks of the files before it. */
int64_t pq_st_hash_first_chunk(const pq_st_model *m, int64_t chunk_bytes, int file);

/* Length in bytes of chunk i (0 <= i < count), for cost estimates. */
int64_t pq_st_hash_chunk_len(const pq_st_model *m, int64_t chunk_bytes, int64_t i);

/* Chunk i dropped from the page cache (pq_st_drop_range); out of range:
 * nothing. */
void pq_st_hash_chunk_drop(const pq_st_model *m, int64_t chunk_bytes, int64_t i);

/* leaf = H(chunk i) (digest.h: a 32-byte slot), read from m's mapping
 * (whose pages are dropped from this process's resident set afterwards;
 * they stay in the page cache). Thread-safe. PQ_ERR_INTERNAL for an index
 * out of range. */
pq_status pq_st_hash_chunk(const pq_st_model *m, pq_digest_alg alg, int64_t chunk_bytes, int64_t i,
                           uint8_t leaf[PQ_HASH_LEAF_BYTES]);

/* leaves[i * 32 ..] = H(chunk i) for the n chunks idx[0..n) (NULL: chunks
 * 0..n-1), by up to n_threads OpenMP threads (<= 1: this thread). leaves
 * is indexed by chunk number. PQ_ERR_INTERNAL when any failed. */
pq_status pq_st_hash_chunks(const pq_st_model *m, pq_digest_alg alg, int64_t chunk_bytes, const int64_t *idx,
                            int64_t n, int n_threads, uint8_t *leaves);

/* hex = lowercase hex of H(leaf 0 || ... || leaf n-1), each leaf taken
 * from its 32-byte slot of leaves (borrowed) at H's own length. 65 bytes
 * with the NUL (33 used by XXH3-128). */
pq_status pq_hash_tree_combine(pq_digest_alg alg, const uint8_t *leaves, int64_t n, char hex[65]);

/* The whole digest of m in alg, its chunks hashed by up to n_threads OpenMP
 * threads (<= 1: this thread). */
pq_status pq_st_digest_tree(const pq_st_model *m, pq_digest_alg alg, int64_t chunk_bytes, int n_threads,
                            char hex[65]);

/* pq_st_digest_tree in SHA-256: how a calibration store names its model
 * (model_sha256_tree). */
pq_status pq_st_hash_tree(const pq_st_model *m, int64_t chunk_bytes, int n_threads, char hex[65]);

/* The same digest of one plain file (any content), read sequentially. */
pq_status pq_hash_tree_file(const char *path, int64_t chunk_bytes, char hex[65]);

/* hex = lowercase hex of the plain SHA-256 of a whole file (e.g. a dataset),
 * read sequentially. PQ_ERR_IO when it cannot be opened or read. */
pq_status pq_sha256_file(const char *path, char hex[65]);

#endif
