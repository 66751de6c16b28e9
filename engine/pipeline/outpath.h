/* SPDX-License-Identifier: Apache-2.0 */
/* outpath.h - the check every command makes of the file it will write. */
#ifndef PQ_OUTPATH_H
#define PQ_OUTPATH_H

#include "base/pq_err.h"

/* Before any work, on the rank that writes `out`: PQ_ERR_IO when its folder
 * does not exist or takes no new files; PQ_ERR_CONFIG naming `opt` when
 * `out` is an existing directory, or the
 * existing file `out` is one of the input files inputs[0..n) (same device
 * and inode, so other spellings of a path are caught too): writing it would
 * destroy an input. Inputs that are not regular files are skipped. */
pq_status pq_out_check(const char *opt, const char *out, const char *const *inputs, int n_inputs);

#endif
