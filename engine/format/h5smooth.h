/* SPDX-License-Identifier: Apache-2.0 */
/* h5smooth.h - the /smoothquant group of a Proteus model (docs/FORMAT.md):
 * the method, alpha and the per-site smoothing factors that were folded into
 * the stored LayerNorm and Linear tensors. Written before the file's float
 * tensors are final; read by `inspect` and checks. */
#ifndef PQ_H5SMOOTH_H
#define PQ_H5SMOOTH_H

#include <stdbool.h>

#include "base/pq_err.h"
#include "format/h5model.h"
#include "quant/smooth.h"

/* Add /smoothquant to a model being written (before pq_h5w_commit). */
pq_status pq_h5w_put_smooth(pq_h5w *w, const pq_smooth *s);

/* Read /smoothquant of the model file at `path`: *out NULL (and PQ_OK) when
 * the file has none; else owned (pq_smooth_free), with act_absmax and
 * w_absmax filled when stored. PQ_ERR_FORMAT naming the object when the
 * group is malformed. */
pq_status pq_h5_read_smooth(const char *path, pq_smooth **out);

#endif
