/* SPDX-License-Identifier: Apache-2.0 */
/* pt_zip.h - the zip container that torch.save writes, read in place.
 *
 * Reads the central directory (zip64 where present) of a file already
 * mapped in memory and gives each entry's name and the absolute offset and
 * size of its bytes in the file. Only stored (uncompressed) entries can be
 * read in place; torch.save writes nothing else, and a compressed entry is
 * refused when it is looked up. Nothing is copied: entry data is a range of
 * the caller's mapping. */
#ifndef PQ_PT_ZIP_H
#define PQ_PT_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

typedef struct pq_zip_entry {
    char *name;          /* owned by the directory, NUL-terminated */
    uint16_t method;     /* 0 = stored */
    uint64_t offset;     /* absolute offset of the entry's data in the file */
    uint64_t size;       /* bytes of data as stored */
} pq_zip_entry;

typedef struct pq_zip {
    pq_zip_entry *entries;
    int64_t n_entries;
} pq_zip;

/* True when the mapping starts with a zip local header ("PK\3\4"). */
int pq_zip_is_zip(const unsigned char *map, size_t n);

/* Parse the central directory of map[0..n) into *z (released with
 * pq_zip_free). Every entry's local header and data range are checked to lie
 * inside the file. `fname` names the file in errors (PQ_ERR_FORMAT). */
pq_status pq_zip_open(const char *fname, const unsigned char *map, size_t n, pq_zip *z);
void pq_zip_free(pq_zip *z); /* a zeroed or freed *z is fine */

/* The entry called `name`, NULL if absent. */
const pq_zip_entry *pq_zip_find(const pq_zip *z, const char *name);

/* The entry called `name`, which must exist and be stored uncompressed;
 * PQ_ERR_FORMAT naming the entry otherwise. */
pq_status pq_zip_stored(const char *fname, const pq_zip *z, const char *name, const pq_zip_entry **out);

#endif
