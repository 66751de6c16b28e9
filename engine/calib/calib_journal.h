/* SPDX-License-Identifier: Apache-2.0 */
/* calib_journal.h - what `calibrate` records in OUT.journal (journal.h) so
 * that `--resume` goes on after a stop: the calibration sequences cut into
 * fixed blocks of consecutive records (a function of the data alone, never
 * of the rank count), and each finished block's exact statistics as a byte
 * image (docs/FORMAT.md, "The resume journal"). Statistics merge exactly
 * (calib_stats.h), so the merge of every block's image is the same bits as
 * one uninterrupted collection over any number of ranks. */
#ifndef PQ_CALIB_JOURNAL_H
#define PQ_CALIB_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "calib/calib_stats.h"

#define PQ_CALIB_BLOCK_SEQS 32 /* sequences per journal block unless --journal-block */

/* The byte image of c's statistics (flushed first): its sequence count,
 * then per site min, max, counts, per-channel max |x| and the histogram
 * blocks present. Returns owned *buf (free()). */
pq_status pq_calib_image(pq_calib *c, uint8_t **buf, size_t *n);

/* dst += the statistics of image buf[n] (dst's architecture). PQ_ERR_FORMAT
 * naming `what` when the image does not fit it. */
pq_status pq_calib_merge_image(pq_calib *dst, const uint8_t *buf, size_t n, const char *what);

/* -0 min/max become +0, as one uninterrupted collection stores them. */
void pq_calib_zero_sign(pq_calib *c);

/* The journal header of a collection (owned, free(); NULL when out of
 * memory): kind, Proteus and store-format versions, the model's tree
 * digest, the architecture, the data's SHA-256, the data options, the
 * usable record count and the block size, then `extra` ("key value" lines
 * of other inputs, or NULL). */
char *pq_calib_journal_header(const char *model_sha256, const pq_calib *c, const char *data_sha256,
                              int64_t max_seqs, int64_t max_length, const char *kernels, int64_t n_records,
                              int64_t n_skipped, int64_t block_seqs, const char *extra);

#endif
