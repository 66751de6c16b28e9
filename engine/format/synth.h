/* SPDX-License-Identifier: Apache-2.0 */
/* synth.h - deterministic synthetic ESM-2 checkpoints with the exact Hugging
 * Face names and shapes of a published size, streamed to disk. */
#ifndef PQ_SYNTH_H
#define PQ_SYNTH_H

#include <stdint.h>

#include "base/dtype.h"
#include "format/esm2.h"
#include "base/pq_err.h"

/* Write `path` (a single safetensors file, written to path.partial then
 * renamed). dtype is PQ_DT_F32 or PQ_DT_F16. Same seed -> same bytes.
 * Linear weights ~ N(0, 0.02) with a few heavy-tailed outlier rows and
 * columns; LayerNorm weights near 1, biases small; inv_freq exactly as
 * esm2.md 6.1 (fp32 formula rounded through fp16). Memory use is bounded by
 * one tensor row block, not the model size.
 *
 * What is written (HF names, esm2.md 4.2): all per-layer tensors including the
 * rotary inv_freq buffers, the embedding, final LayerNorm, LM head and the
 * contact-head regression. lm_head.decoder.weight is omitted (tied to the
 * embedding, as in current HF safetensors exports) and so are the legacy
 * position_ids / position_embeddings / pooler tensors. Each value is a pure
 * function of (seed, tensor name, element index) through a splitmix64
 * counter-based generator; synth.c documents the distributions. */
pq_status pq_synth_write(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype,
                         const char *path);

/* As pq_synth_write, staging at most block_bytes of fp32 rows at a time (at
 * least one row); pq_synth_write uses 16 MiB. The file's bytes do not depend
 * on block_bytes. `arch` is borrowed; a custom arch must have D divisible by
 * H and an even head_dim. Errors: PQ_ERR_CONFIG (bad arch/dtype), PQ_ERR_IO
 * (no partial file is left behind), PQ_ERR_RESOURCE. */
pq_status pq_synth_write_blocked(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype,
                                 const char *path, size_t block_bytes);

#endif
