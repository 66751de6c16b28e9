/* SPDX-License-Identifier: Apache-2.0 */
/* journal.h - OUT.journal, the durable record of a run's committed units
 * that `--resume` goes on from (docs/FORMAT.md, "The resume journal"): the
 * one journal of every resumable command: quantize's plan units, calibrate's
 * blocks of sequences, embed's and score's chunks (blocks too).
 *
 * An HDF5 file cut by kill -9 or a power cut is not reliably readable as
 * one, so rank 0 appends each unit's small results (scales, zero points,
 * per-row sums) to an append-only log as it puts the unit into the output,
 * with where its codes lie in OUT.partial (their offset, bytes and a
 * checksum: XXH3-128 where the build has it, else SHA-256) rather than the
 * codes themselves; each record is closed by the SHA-256 of its bytes, after
 * a header naming what the run is (Proteus version, format version,
 * resolved configuration, model fingerprint, unit geometry). A stopped run
 * keeps OUT.partial beside the journal; --resume reuses a unit only when
 * its codes there still match their checksum. A record cut or damaged
 * anywhere fails its checksum and is redone; the
 * leaves of the source digest are recorded too, so a resumed run whose
 * checkpoint changed under the same names and sizes fails before the commit.
 * Whoever holds the journal holds an exclusive flock on it: never two
 * writers of one OUT. */
#ifndef PQ_JOURNAL_H
#define PQ_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "format/safetensors.h"
#include "pipeline/plan.h"
#include "pipeline/result.h"

typedef struct pq_journal pq_journal;

/* The name of the journal of output `out`: out + ".journal". Returns 0, or
 * ENAMETOOLONG when it does not fit buf[n]. */
int pq_journal_name(char *buf, size_t n, const char *out);

/* Open and lock the journal of `out` (rank 0, before any unit). header is
 * the run's identity, "key value" lines (pq_journal_header). Without
 * resume an existing journal with a header is refused (PQ_ERR_CONFIG: pass
 * --resume or remove it); with resume its header must equal header
 * (PQ_ERR_CONFIG naming the first key that differs, with both values), and
 * its records are checked against plan p: *out then knows which units and
 * digest leaves it holds. A journal whose header was cut (a stop while it
 * was made), or, without resume, one that holds no unit, starts again. PQ_ERR_IO when another process
 * holds the lock (another run writing the same OUT) or the file cannot be
 * opened, read or written. Returns owned *out (pq_journal_close or
 * pq_journal_remove). */
pq_status pq_journal_open(const char *out, bool resume, const char *header, const pq_plan *p, pq_journal **jo);

/* The same for a journal of n_blocks opaque records (calibrate's blocks of
 * sequences, calib_journal.h) instead of a plan's units: the same header
 * checks, lock and durability; records of type 3 of any size. n_blocks
 * PQ_JOURNAL_ANY_BLOCKS: a journal of blocks whose count is not known in
 * advance (embed's and score's chunks, coordinator/infer_mpi.h): any id
 * from 0 below 2^24, pq_journal_n_blocks following the highest recorded. */
#define PQ_JOURNAL_ANY_BLOCKS (-1)
pq_status pq_journal_open_blocks(const char *out, bool resume, const char *header, int n_blocks, pq_journal **jo);

/* Append block id's bytes (durable like a unit). */
pq_status pq_journal_add_block(pq_journal *jr, int64_t id, const void *data, size_t n);

/* Block id's recorded bytes (owned *data, free()), the checksum verified
 * again: PQ_ERR_FORMAT naming the journal and the block when it no longer
 * matches. */
pq_status pq_journal_read_block(pq_journal *jr, int64_t id, void **data, size_t *n);

/* Every block 0..pq_journal_n_blocks-1 in id order, each read and its
 * checksum verified again (pq_journal_read_block), to fn with its bytes
 * (borrowed for the call). Stops at fn's first error and returns it;
 * PQ_ERR_INTERNAL when a block is missing. */
typedef pq_status (*pq_journal_block_fn)(void *user, int64_t id, const void *data, size_t n);
pq_status pq_journal_each_block(pq_journal *jr, pq_journal_block_fn fn, void *user);

/* The path of the journal file (borrowed). */
const char *pq_journal_path(const pq_journal *jr);

/* Units (blocks) with a valid record, per plan unit (borrowed; in an
 * open-ended journal until the next pq_journal_add_block), and their count. */
const bool *pq_journal_done(const pq_journal *jr);
int pq_journal_n_done(const pq_journal *jr); /* 0 for NULL */

/* The entries of pq_journal_done: the plan's units, the blocks asked for,
 * or in an open-ended journal the highest recorded block + 1 (0 for NULL). */
int pq_journal_n_blocks(const pq_journal *jr);

/* Records that failed their checksum and were dropped (their units are
 * redone). */
int pq_journal_n_bad(const pq_journal *jr);

/* Resuming (rank 0, before the units are shared out): the codes of every
 * unit the journal holds are checked where its record says they lie in
 * `partial`, the stopped run's OUT.partial; a unit whose bytes there no
 * longer match their checksum (or are missing, or the file is) is dropped
 * from pq_journal_done and redone (a warning names it; pq_journal_n_bad
 * counts it). The file stays open for pq_journal_read_unit and its name is
 * removed, for the run's new OUT.partial. PQ_ERR_IO when it cannot be read
 * or removed. */
pq_status pq_journal_take_partial(pq_journal *jr, const pq_plan *p, const char *partial);

/* This run's OUT.partial (once created): every sync of the journal
 * fdatasyncs it first, so that a record made durable names durable codes. */
pq_status pq_journal_watch_partial(pq_journal *jr, const char *partial);

/* Unit u's recorded result into r (owned buffers), its checksum verified
 * again, its codes read from the stopped run's OUT.partial
 * (pq_journal_take_partial) and checked against theirs; *codes_at (NULL is
 * fine) where they lay there. PQ_ERR_FORMAT naming the journal and the unit
 * when either no longer matches. */
pq_status pq_journal_read_unit(pq_journal *jr, const pq_plan *p, const pq_unit *u, pq_unit_result *r,
                               uint64_t *codes_at);

/* The checksum of a unit's codes that its record carries (the journal's
 * algorithm: the header's codes_checksum), zero-padded to 32 bytes. */
pq_status pq_journal_codes_sum(const pq_journal *jr, const void *codes, size_t n, uint8_t sum[32]);

/* Append unit u's result r, whose codes lie at byte codes_at of this run's
 * OUT.partial with checksum codes_sum (pq_journal_codes_sum). Durable
 * within about a second (OUT.partial, then the journal fdatasynced at most
 * once a second; pq_journal_sync forces it). */
pq_status pq_journal_add_unit(pq_journal *jr, const pq_plan *p, const pq_unit *u, const pq_unit_result *r,
                              uint64_t codes_at, const uint8_t codes_sum[32]);

/* Digest leaf `chunk` is known: recorded if the journal had none; compared
 * if it had one (PQ_ERR_CONFIG when it differs: the checkpoint changed). */
pq_status pq_journal_leaf(pq_journal *jr, int64_t chunk, const uint8_t leaf[32]);

/* fdatasync what was appended (OUT.partial first, once watched). */
pq_status pq_journal_sync(pq_journal *jr);

/* Make everything appended durable, unlock and free (the file stays for a
 * --resume). NULL is fine. */
void pq_journal_close(pq_journal *jr);

/* After the output was renamed into place: remove the file, unlock, free.
 * NULL is fine. */
void pq_journal_remove(pq_journal *jr);

/* The header text of a run (owned, free()): its kind ("quantize"), the
 * Proteus and file-format versions, the resolved configuration (JSON), the
 * unit size, the model's fingerprint (every file's size and every tensor's
 * name, dtype, shape and offset) and the digest of the units' geometry
 * (tensor, first row, rows of every unit), then `extra` ("key value" lines
 * of the caller's other inputs, or NULL). NULL when out of memory. */
char *pq_journal_header(const char *kind, const char *config_json, const pq_plan *p, const pq_st_model *m,
                        const char *extra);

#endif
