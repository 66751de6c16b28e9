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

/* Activation outliers, as trained transformers have them: `channels` hidden
 * channels (the same ones in every layer, chosen from the seed) get their
 * weight and bias in every per-layer LayerNorm (attention.LayerNorm and the
 * LayerNorm before fc1) multiplied by `scale`, so the inputs of q/k/v and
 * fc1 carry a few channels `scale` times larger than the rest. 0 channels:
 * none (the plain checkpoint, same bytes as pq_synth_write). */
typedef struct pq_synth_outliers {
    int channels;   /* 0 .. embed_dim */
    float scale;    /* > 0; the CLI default is PQ_SYNTH_OUTLIER_SCALE */
} pq_synth_outliers;

#define PQ_SYNTH_OUTLIER_SCALE 50.0f

/* The outlier channels of a seed: sorted, distinct, into out[channels]. */
void pq_synth_outlier_channels(uint64_t seed, int64_t embed_dim, int channels, int64_t *out);

/* pq_synth_write_blocked with planted outliers (NULL: none). PQ_ERR_CONFIG
 * when channels is outside [0, embed_dim] or scale is not positive. */
pq_status pq_synth_write_ex(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype, const char *path,
                            size_t block_bytes, const pq_synth_outliers *outliers);

#endif
