/* SPDX-License-Identifier: Apache-2.0 */
/* pq_hash.h - the one FNV-1a 64 every non-cryptographic hash uses.
 *
 * FNV-1a: for each byte, h = (h ^ byte) * PQ_FNV1A64_PRIME, starting from an
 * offset basis. These hashes decide plan agreement between ranks, the order
 * of calibration records and the synthetic checkpoints' random streams, so
 * their values are part of the behaviour: never change them. */
#ifndef PQ_HASH_H
#define PQ_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The standard 64-bit offset basis and prime. */
#define PQ_FNV1A64_BASIS 0xcbf29ce484222325ULL /* 14695981039346656037 */
#define PQ_FNV1A64_PRIME 0x100000001b3ULL      /* 1099511628211 */

/* h continued over the n bytes at p; start from PQ_FNV1A64_BASIS. */
static inline uint64_t pq_fnv1a64_update(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * PQ_FNV1A64_PRIME;
    return h;
}

/* h continued over the bytes of the string s (its terminating NUL left out). */
static inline uint64_t pq_fnv1a64_str(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * PQ_FNV1A64_PRIME;
    return h;
}

#endif
