/* SPDX-License-Identifier: Apache-2.0 */
/* st_write.h - write a safetensors file: tensors laid out by name, each
 * one's bytes asked for in turn, so that only one tensor is in memory. */
#ifndef PQ_ST_WRITE_H
#define PQ_ST_WRITE_H

#include <stdint.h>

#include "base/dtype.h"
#include "base/pq_err.h"

#define PQ_STW_MAX_DIMS 4

typedef struct pq_stw_tensor {
    char *name;                        /* owned by the caller */
    pq_dtype dtype;
    int ndim;
    int64_t shape[PQ_STW_MAX_DIMS];
    int tag;                           /* the caller's: what to fill it with */
    int64_t index;                     /* the caller's */
} pq_stw_tensor;

/* Fill dst (the tensor's bytes: dtype size times its elements) for t. */
typedef pq_status (*pq_stw_fill)(void *user, const pq_stw_tensor *t, void *dst);

/* Write the n tensors of t (sorted by name here) to path (created or
 * truncated; the caller publishes it), with __metadata__ {"format": "pt"}.
 * PQ_ERR_IO naming path on a failed write; a fill's failure is returned as
 * is. */
pq_status pq_stw_write(const char *path, pq_stw_tensor *t, int64_t n, pq_stw_fill fill, void *user);

#endif
