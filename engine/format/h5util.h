/* SPDX-License-Identifier: Apache-2.0 */
/* h5util.h - small HDF5 helpers shared by the model writer and reader:
 * quiet error handling, the property lists that give checksummed metadata
 * and Fletcher-32 data, the float16 and bool types h5py understands, and
 * typed attribute I/O with fixed-length strings. Internal to engine/format
 * and engine/eval. */
#ifndef PQ_H5UTIL_H
#define PQ_H5UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "base/pq_err.h"

/* Switch off HDF5's automatic error printing for this thread (the library
 * never prints); every HDF5 failure is reported through pq_err instead. */
void pq_h5u_quiet(void);

/* H5Fopen(path) read-only with the strong close degree every reader uses
 * (closing the file closes whatever is still open in it); < 0 on failure,
 * the HDF5 detail still on its error stack for pq_h5u_detail. */
hid_t pq_h5u_open_ro(const char *path);

/* The innermost message on the HDF5 error stack ("truncated file: eof = ...",
 * "file signature not found"), copied into buf, then the stack is cleared.
 * Returns buf ("unknown HDF5 error" when the stack is empty). */
const char *pq_h5u_detail(char *buf, size_t n);

/* Longest string attribute a reader accepts, in bytes with its NUL. */
#define PQ_H5_STR_MAX ((size_t)1 << 20)

/* File access list for a file Proteus writes (H5Pclose): format bounds
 * pinned to HDF5 1.10 (superblock 3 and version-2 object headers, whose
 * checksums HDF5 verifies on every read), CLOSE_STRONG. H5I_INVALID_HID on
 * failure. */
hid_t pq_h5u_fapl_write(void);

/* Rows of a chunk for a dataset of rank nd, dims and elements of esz bytes:
 * whole trailing dimensions, about 1 MiB per chunk, at least one row. */
hsize_t pq_h5u_chunk_rows(int nd, const hsize_t *dims, size_t esz);

/* Dataset creation list (H5Pclose): chunks of chunk_rows rows and all of
 * the other dimensions, the Fletcher-32 filter, no fill, no time stamps,
 * file space allocated at creation (early: HDF5 then writes every chunk
 * once, filled with zeros and checksummed) or chunk by chunk as each is
 * written (incremental: HDF5 writes each chunk once, with its data). A
 * dataset with no element stays contiguous (nothing to checksum); one of
 * rank 0, which HDF5 cannot chunk nor so filter, is compact (allocated
 * early): its value lies in its object header, under HDF5's metadata
 * checksum. chunk_rows is clamped to [1, dims[0]]. H5I_INVALID_HID on
 * failure. */
hid_t pq_h5u_dcpl(int nd, const hsize_t *dims, hsize_t chunk_rows, bool early);

/* Data transfer list for reads: Fletcher-32 verified (verify) or skipped
 * (H5Pset_edc_check). H5I_INVALID_HID on failure. */
hid_t pq_h5u_dxpl(bool verify);

/* Whether dataset d is chunked and filtered by Fletcher-32. */
bool pq_h5u_has_fletcher32(hid_t d);

/* Whether dataset d is compact (its data inside its object header). */
bool pq_h5u_is_compact(hid_t d);

/* HDF5's Fletcher-32 of a chunk (H5Zfletcher32.c: 16-bit big-endian words,
 * folded every 360 words), computed in pieces: init, update with pieces of
 * even length (the last may be odd), final. The filter stores the result
 * as a little-endian uint32 after the chunk's bytes. */
typedef struct pq_fletcher32 {
    uint32_t s1, s2;
    size_t k;        /* words in the current block of 360 */
    int tail;        /* the last piece's odd byte, or -1 */
} pq_fletcher32;
void pq_fletcher32_init(pq_fletcher32 *f);
void pq_fletcher32_update(pq_fletcher32 *f, const void *buf, size_t n);
uint32_t pq_fletcher32_final(pq_fletcher32 *f);

/* The same checksum from pieces in any order: it is linear in the chunk's
 * words (HDF5's sums never overflow between its folds, and a fold keeps the
 * value mod 65535 and whether it is zero), so each piece adds its share,
 * given its byte offset in the chunk and the chunk's length. Start from
 * {0}; every byte added once; then final. */
typedef struct pq_fletcher32_sum {
    uint64_t s1, s2;  /* mod 65535 */
    bool nonzero;     /* a byte that is not zero was added */
} pq_fletcher32_sum;
void pq_fletcher32_add(pq_fletcher32_sum *s, const void *buf, size_t n, uint64_t off, uint64_t chunk_bytes);
uint32_t pq_fletcher32_sum_final(const pq_fletcher32_sum *s);

/* The HDF5 failure of a read of `what` in file `path` (NULL: what names
 * the file already; the stack is cleared): a checksum
 * mismatch is PQ_ERR_FORMAT saying the data is corrupt, any other failure
 * PQ_ERR_FORMAT with HDF5's detail. */
pq_status pq_h5u_read_fail(const char *path, const char *what);

/* IEEE binary16, little-endian, built from an fp32 type (HDF5 1.10 has no
 * predefined half type); h5py reads it as numpy.float16. Returns an owned
 * type id (H5Tclose) or H5I_INVALID_HID. */
hid_t pq_h5u_f16_type(void);
/* True when t is a float type with exactly the binary16 layout. */
bool pq_h5u_is_f16(hid_t t);

/* h5py's boolean: an int8 enum {FALSE = 0, TRUE = 1}. Owned type id. */
hid_t pq_h5u_bool_type(void);

/* "[3, 5]" style rendering of dims into buf; returns buf. */
const char *pq_h5u_dims_str(int ndim, const hsize_t *dims, char *buf, size_t n);

/* The open HDF5 file of a model being written (borrowed from w), so that
 * other engine/format modules (calib_h5.c) can add their groups before commit. */
struct pq_h5w;
hid_t pq_h5w_file_id(struct pq_h5w *w);

/* ---- attributes (written on obj; `where` names obj in error details) ----
 * Writers replace an existing attribute of the same name. Strings are
 * scalar fixed-length UTF-8, NUL-terminated, of strlen + 1 bytes. */
pq_status pq_h5u_put_str(hid_t obj, const char *where, const char *name, const char *val);
pq_status pq_h5u_put_i32(hid_t obj, const char *where, const char *name, int32_t val);
pq_status pq_h5u_put_i64(hid_t obj, const char *where, const char *name, int64_t val);
pq_status pq_h5u_put_f32(hid_t obj, const char *where, const char *name, float val);
pq_status pq_h5u_put_f64(hid_t obj, const char *where, const char *name, double val);
pq_status pq_h5u_put_bool(hid_t obj, const char *where, const char *name, bool val);
pq_status pq_h5u_put_i64_vec(hid_t obj, const char *where, const char *name,
                             int n, const int64_t *val);

/* Readers return PQ_ERR_FORMAT naming where/name when the attribute is
 * missing (unless the *_opt form is used) or has the wrong class or shape. */
bool pq_h5u_has_attr(hid_t obj, const char *name);
/* *val: returns owned string (free()). Only a scalar fixed-length string of
 * at most PQ_H5_STR_MAX bytes whose bytes after the first NUL are all NUL:
 * a variable-length one (kept in HDF5's unchecked global heap, and written
 * by format versions before 3) is refused. */
pq_status pq_h5u_get_str(hid_t obj, const char *where, const char *name, char **val);
/* Any integer type (or h5py bool enum) that fits int64. */
pq_status pq_h5u_get_i64(hid_t obj, const char *where, const char *name, int64_t *val);
pq_status pq_h5u_get_f64(hid_t obj, const char *where, const char *name, double *val);
/* Integer or h5py bool enum; non-zero is true. */
pq_status pq_h5u_get_bool(hid_t obj, const char *where, const char *name, bool *val);
/* Exactly n integers. */
pq_status pq_h5u_get_i64_vec(hid_t obj, const char *where, const char *name,
                             int n, int64_t *val);

#endif
