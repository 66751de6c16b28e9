/* SPDX-License-Identifier: Apache-2.0 */
/* h5util.h - small HDF5 helpers shared by the model writer and reader:
 * quiet error handling, the float16 and bool types h5py understands, and
 * typed attribute I/O. Internal to engine/format. */
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
 * Writers replace an existing attribute of the same name. */
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
/* *val: returns owned string (free()). Accepts variable or fixed length. */
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
