/* SPDX-License-Identifier: Apache-2.0 */
/* synth.h - deterministic synthetic ESM-2 checkpoints with the exact Hugging
 * Face names and shapes of a published size, streamed to disk. */
#ifndef PQ_SYNTH_H
#define PQ_SYNTH_H

#include <stdint.h>

#include "dtype.h"
#include "esm2.h"
#include "pq_err.h"

/* Write `path` (a single safetensors file, written to path.partial then
 * renamed). dtype is PQ_DT_F32 or PQ_DT_F16. Same seed -> same bytes.
 * Linear weights ~ N(0, 0.02) with a few heavy-tailed outlier rows and
 * columns; LayerNorm weights near 1, biases small; inv_freq exactly as
 * esm2.md 6.1 (fp32 formula rounded through fp16). Memory use is bounded by
 * one tensor row block, not the model size. */
pq_status pq_synth_write(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype,
                         const char *path);

#endif
