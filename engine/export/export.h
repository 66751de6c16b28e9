/* SPDX-License-Identifier: Apache-2.0 */
/* export.h - a Proteus HDF5 model in the formats other tools load
 * (docs/FORMAT.md, "Exports"): a fresh HDF5 copy, a Hugging Face model
 * folder (dequantized safetensors), or a compressed-tensors folder (the
 * integer codes themselves). One implementation behind `proteus export` and
 * pq_export. */
#ifndef PQ_EXPORT_H
#define PQ_EXPORT_H

#include <stdbool.h>

#include "base/pq_err.h"

typedef enum pq_export_format {
    PQ_EXPORT_HDF5 = 0,           /* "hdf5": every tensor read, checked and rewritten */
    PQ_EXPORT_SAFETENSORS,        /* "safetensors": config.json + model.safetensors, dequantized */
    PQ_EXPORT_COMPRESSED_TENSORS, /* "compressed-tensors": int-quantized / pack-quantized */
} pq_export_format;

/* "hdf5", "safetensors", "compressed-tensors" -> *out; PQ_ERR_CONFIG listing
 * them otherwise. */
pq_status pq_export_format_parse(const char *name, pq_export_format *out);

typedef struct pq_export_opts {
    pq_export_format format;
    bool fp16;                    /* float tensors as F16 instead of F32 (folders only) */
} pq_export_opts;

/* Export the Proteus model at in_path to out_path: a file for hdf5, a folder
 * otherwise. Nothing appears at out_path unless the whole export succeeds
 * (written as out_path.partial, then renamed). A folder out_path must not
 * exist or be empty. PQ_ERR_IO / PQ_ERR_FORMAT for the input as the reader
 * reports them, PQ_ERR_IO for the output, PQ_ERR_CONFIG when the model
 * cannot be expressed in the format (naming the tensor and why). */
pq_status pq_export_run(const char *in_path, const char *out_path, const pq_export_opts *o);

#endif
