/* SPDX-License-Identifier: Apache-2.0 */
/* digest.h - the hash of the source digest's leaves and root (st_hash.h):
 * SHA-256 (OpenSSL) or XXH3-128 (libxxhash; the default where the build has
 * it). A leaf is kept in a PQ_HASH_LEAF_BYTES slot whatever the algorithm:
 * XXH3-128's 16 bytes (its canonical, big-endian form, as xxhsum prints it)
 * are followed by 16 zero bytes there, so the journal's leaf records and the
 * ranks' HashLeaves messages have one size. The root hashes the leaves at
 * their own length (32 or 16 bytes each). docs/FORMAT.md gives both. */
#ifndef PQ_DIGEST_H
#define PQ_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

#define PQ_HASH_LEAF_BYTES 32

typedef enum pq_digest_alg {
    PQ_DIGEST_SHA256 = 0, /* also what a zeroed pq_h5_meta means */
    PQ_DIGEST_XXH3 = 1,   /* XXH3-128 */
} pq_digest_alg;

/* The name the file records (source_digest_algorithm): "sha256" or
 * "xxh3-128". */
const char *pq_digest_name(pq_digest_alg a);

/* a from a name: "sha256", "xxh3" or "xxh3-128". False when unknown. */
bool pq_digest_parse(const char *name, pq_digest_alg *a);

/* Whether this build computes a (SHA-256 always; XXH3 with libxxhash). */
bool pq_digest_available(pq_digest_alg a);

/* XXH3 where available, else SHA-256. */
pq_digest_alg pq_digest_default(void);

/* Bytes of a's digest: 32 (SHA-256) or 16 (XXH3-128). */
int pq_digest_bytes(pq_digest_alg a);

/* out = a's digest of the n bytes at data, zero-padded to
 * PQ_HASH_LEAF_BYTES. PQ_ERR_INTERNAL when the hash fails or the build
 * lacks it. Thread-safe. */
pq_status pq_digest(pq_digest_alg a, const void *data, size_t n, uint8_t out[PQ_HASH_LEAF_BYTES]);

#endif
