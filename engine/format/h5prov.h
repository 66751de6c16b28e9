/* SPDX-License-Identifier: Apache-2.0 */
/* h5prov.h - a provenance string added to a model file already written
 * (quantize's fallback trail, known only once the file is evaluated). */
#ifndef PQ_H5PROV_H
#define PQ_H5PROV_H

#include "base/pq_err.h"

/* Open the Proteus HDF5 file at path for writing, set the string attribute
 * `key` of /provenance to value (replacing one of that name), close it.
 * With the writer's pinned format bounds, the same file and value give the
 * same bytes. The caller fsyncs and renames the file (pq_publish). PQ_ERR_IO
 * when the file cannot be opened for writing, PQ_ERR_FORMAT when it has no
 * /provenance group. */
pq_status pq_h5_provenance_add(const char *path, const char *key, const char *value);

#endif
