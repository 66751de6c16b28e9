/* SPDX-License-Identifier: Apache-2.0 */
/* digest.c - SHA-256 or XXH3-128 of a buffer (digest.h). */
#include "format/digest.h"

#include <openssl/evp.h>
#include <string.h>

#include "pq_config.h"
#if PQ_HAVE_XXHASH
#include <xxhash.h>
#endif

const char *pq_digest_name(pq_digest_alg a)
{
    return a == PQ_DIGEST_XXH3 ? "xxh3-128" : "sha256";
}

bool pq_digest_parse(const char *name, pq_digest_alg *a)
{
    if (!name) return false;
    if (!strcmp(name, "sha256")) *a = PQ_DIGEST_SHA256;
    else if (!strcmp(name, "xxh3") || !strcmp(name, "xxh3-128")) *a = PQ_DIGEST_XXH3;
    else return false;
    return true;
}

bool pq_digest_available(pq_digest_alg a)
{
    return a == PQ_DIGEST_SHA256 || (a == PQ_DIGEST_XXH3 && PQ_HAVE_XXHASH);
}

pq_digest_alg pq_digest_default(void)
{
    return PQ_HAVE_XXHASH ? PQ_DIGEST_XXH3 : PQ_DIGEST_SHA256;
}

int pq_digest_bytes(pq_digest_alg a)
{
    return a == PQ_DIGEST_XXH3 ? 16 : 32;
}

pq_status pq_digest(pq_digest_alg a, const void *data, size_t n, uint8_t out[PQ_HASH_LEAF_BYTES])
{
    static const uint8_t none = 0;
    if (!data) data = &none; /* n is 0 */
    if (a == PQ_DIGEST_SHA256) {
        unsigned int len = 0;
        if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != PQ_HASH_LEAF_BYTES)
            return pq_err(PQ_ERR_INTERNAL, "EVP_Digest(sha256) failed");
        return PQ_OK;
    }
#if PQ_HAVE_XXHASH
    if (a == PQ_DIGEST_XXH3) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits(data, n));
        memcpy(out, c.digest, sizeof c.digest);
        memset(out + sizeof c.digest, 0, PQ_HASH_LEAF_BYTES - sizeof c.digest);
        return PQ_OK;
    }
#endif
    return pq_err(PQ_ERR_INTERNAL, "digest %s is not in this build", pq_digest_name(a));
}
