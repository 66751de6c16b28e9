/* SPDX-License-Identifier: Apache-2.0 */
/* pt_zip.c - central directory of a zip file mapped in memory (PKWARE
 * APPNOTE 6.3: end of central directory, zip64 locator and record, central
 * file headers with their zip64 extra field, local file headers). */
#include "format/pt_zip.h"

#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define EOCD_BYTES 22u
#define LOC64_BYTES 20u
#define EOCD64_BYTES 56u
#define CENTRAL_BYTES 46u
#define LOCAL_BYTES 30u
#define MAX_COMMENT 65535u
#define MAX_ENTRIES ((uint64_t)1 << 22) /* a checkpoint has one entry per storage */

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

int pq_zip_is_zip(const unsigned char *map, size_t n)
{
    return n >= 4 && rd32(map) == SIG_LOCAL;
}

void pq_zip_free(pq_zip *z)
{
    if (!z) return;
    for (int64_t i = 0; i < z->n_entries; i++) free(z->entries[i].name);
    free(z->entries);
    z->entries = NULL;
    z->n_entries = 0;
}

/* The end-of-central-directory record: the last signature whose comment
 * reaches exactly the end of the file. */
static int64_t find_eocd(const unsigned char *map, size_t n)
{
    if (n < EOCD_BYTES) return -1;
    size_t lo = n - EOCD_BYTES > MAX_COMMENT ? n - EOCD_BYTES - MAX_COMMENT : 0;
    for (size_t p = n - EOCD_BYTES + 1; p-- > lo;)
        if (rd32(map + p) == SIG_EOCD && p + EOCD_BYTES + rd16(map + p + 20) == n) return (int64_t)p;
    return -1;
}

/* Replace the 0xffffffff fields of a central header from its zip64 extra
 * field (id 1: uncompressed, compressed, local offset, in that order, each
 * present only where the 32-bit field is saturated). */
static pq_status apply_zip64(const char *fname, const char *name, const unsigned char *extra, size_t n_extra,
                             uint64_t *usize, uint64_t *csize, uint64_t *local)
{
    int need_u = *usize == 0xffffffffu, need_c = *csize == 0xffffffffu, need_l = *local == 0xffffffffu;
    if (!need_u && !need_c && !need_l) return PQ_OK;
    size_t p = 0;
    while (p + 4 <= n_extra) {
        uint16_t id = rd16(extra + p), len = rd16(extra + p + 2);
        if (p + 4 + len > n_extra) break;
        if (id == 1) {
            const unsigned char *f = extra + p + 4;
            size_t k = 0, want = 8u * (size_t)(need_u + need_c + need_l);
            if (len < want) break;
            if (need_u) *usize = rd64(f + k), k += 8;
            if (need_c) *csize = rd64(f + k), k += 8;
            if (need_l) *local = rd64(f + k);
            return PQ_OK;
        }
        p += 4u + len;
    }
    return pq_err(PQ_ERR_FORMAT, "%s: zip entry '%s': sizes or offset need a zip64 extra field that is missing or short",
                  fname, name);
}

pq_status pq_zip_open(const char *fname, const unsigned char *map, size_t n, pq_zip *z)
{
    memset(z, 0, sizeof *z);
    int64_t eo = find_eocd(map, n);
    if (eo < 0) return pq_err(PQ_ERR_FORMAT, "%s: zip: no end of central directory record (truncated file?)", fname);
    const unsigned char *e = map + eo;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return pq_err(PQ_ERR_FORMAT, "%s: zip: multi-disk archives are not supported", fname);
    uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    if (count == 0xffffu || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        if ((uint64_t)eo < LOC64_BYTES || rd32(e - LOC64_BYTES) != SIG_LOC64)
            return pq_err(PQ_ERR_FORMAT, "%s: zip: saturated end record without a zip64 locator", fname);
        uint64_t r = rd64(e - LOC64_BYTES + 8);
        if (r > n || n - r < EOCD64_BYTES || rd32(map + r) != SIG_EOCD64)
            return pq_err(PQ_ERR_FORMAT, "%s: zip: the zip64 end record at %llu is missing or truncated", fname,
                          (unsigned long long)r);
        count = rd64(map + r + 32);
        cd_size = rd64(map + r + 40);
        cd_off = rd64(map + r + 48);
    }
    if (cd_off > n || cd_size > n - cd_off)
        return pq_err(PQ_ERR_FORMAT, "%s: zip: central directory [%llu, +%llu) lies beyond the file of %zu bytes",
                      fname, (unsigned long long)cd_off, (unsigned long long)cd_size, n);
    if (count > MAX_ENTRIES || count * CENTRAL_BYTES > cd_size)
        return pq_err(PQ_ERR_FORMAT, "%s: zip: %llu entries do not fit a central directory of %llu bytes", fname,
                      (unsigned long long)count, (unsigned long long)cd_size);
    z->entries = calloc(count ? count : 1, sizeof *z->entries);
    if (!z->entries) return pq_err(PQ_ERR_RESOURCE, "out of memory for %llu zip entries", (unsigned long long)count);
    pq_status rc = PQ_OK;
    uint64_t p = cd_off, end = cd_off + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < CENTRAL_BYTES || rd32(map + p) != SIG_CENTRAL) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip: central directory entry %llu is truncated or has a bad signature",
                        fname, (unsigned long long)i);
            goto fail;
        }
        const unsigned char *c = map + p;
        uint16_t flags = rd16(c + 8), method = rd16(c + 10);
        uint64_t csize = rd32(c + 20), usize = rd32(c + 24), local = rd32(c + 42);
        size_t nl = rd16(c + 28), xl = rd16(c + 30), cl = rd16(c + 32);
        if (end - p - CENTRAL_BYTES < (uint64_t)nl + xl + cl) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip: central directory entry %llu runs past the directory", fname,
                        (unsigned long long)i);
            goto fail;
        }
        pq_zip_entry *ze = &z->entries[z->n_entries];
        ze->name = malloc(nl + 1);
        if (!ze->name) {
            rc = pq_err(PQ_ERR_RESOURCE, "out of memory");
            goto fail;
        }
        memcpy(ze->name, c + CENTRAL_BYTES, nl);
        ze->name[nl] = '\0';
        z->n_entries++;
        if (memchr(ze->name, '\0', nl)) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip: entry %llu has a NUL byte in its name", fname, (unsigned long long)i);
            goto fail;
        }
        if ((rc = apply_zip64(fname, ze->name, c + CENTRAL_BYTES + nl, xl, &usize, &csize, &local))) goto fail;
        if (flags & 1u) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip entry '%s' is encrypted", fname, ze->name);
            goto fail;
        }
        if (method == 0 && csize != usize) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip entry '%s' is stored but its sizes differ (%llu vs %llu)", fname,
                        ze->name, (unsigned long long)csize, (unsigned long long)usize);
            goto fail;
        }
        if (local > n || n - local < LOCAL_BYTES || rd32(map + local) != SIG_LOCAL) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip entry '%s': no local header at offset %llu", fname, ze->name,
                        (unsigned long long)local);
            goto fail;
        }
        uint64_t data = local + LOCAL_BYTES + rd16(map + local + 26) + rd16(map + local + 28);
        if (data > n || csize > n - data) {
            rc = pq_err(PQ_ERR_FORMAT, "%s: zip entry '%s': data [%llu, +%llu) lies beyond the file of %zu bytes",
                        fname, ze->name, (unsigned long long)data, (unsigned long long)csize, n);
            goto fail;
        }
        ze->method = method;
        ze->offset = data;
        ze->size = csize;
        p += CENTRAL_BYTES + nl + xl + cl;
    }
    return PQ_OK;
fail:
    pq_zip_free(z);
    return rc;
}

const pq_zip_entry *pq_zip_find(const pq_zip *z, const char *name)
{
    for (int64_t i = 0; i < z->n_entries; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

pq_status pq_zip_stored(const char *fname, const pq_zip *z, const char *name, const pq_zip_entry **out)
{
    const pq_zip_entry *e = pq_zip_find(z, name);
    *out = NULL;
    if (!e) return pq_err(PQ_ERR_FORMAT, "%s: zip entry '%s' is missing", fname, name);
    if (e->method != 0)
        return pq_err(PQ_ERR_FORMAT,
                      "%s: zip entry '%s' is compressed (method %u); only stored entries, as torch.save writes "
                      "them, can be read in place: re-save the checkpoint with torch.save",
                      fname, name, e->method);
    *out = e;
    return PQ_OK;
}
