/* SPDX-License-Identifier: Apache-2.0 */
/* infer_journal.h - the record of a long inference run (embed, score):
 * OUT.journal, an append-only file of the completed chunks' results, in
 * chunk order, from which the output is assembled at the end and through
 * which `--resume` continues after a stop without recomputing a chunk.
 *
 * Layout: the header "PQINFJ01", the fingerprint's length (int64) and the
 * fingerprint (the options that decide the results: a resume with other
 * options is refused); then one record per chunk: "CHNK", the CRC-32 (zlib)
 * of the payload (uint32), the chunk index and the payload length (int64),
 * the payload. Every record is fdatasync'ed before the next chunk is taken,
 * so after kill -9 or a power cut the file holds whole records followed at
 * most by one torn record, which opening for resume detects (short, bad
 * magic, index out of sequence or CRC mismatch) and cuts off. */
#ifndef PQ_EVAL_INFER_JOURNAL_H
#define PQ_EVAL_INFER_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "eval/infer_buf.h"

typedef struct pq_infer_journal pq_infer_journal;

/* Open path for appending. resume false: create it (truncating any old one).
 * resume true: an existing journal with the same fingerprint keeps its whole
 * records (*n_done of them, chunks 0..*n_done-1) and loses a torn tail; a
 * missing one is created (*n_done 0). PQ_ERR_CONFIG when the fingerprint
 * differs (naming the file), PQ_ERR_FORMAT when it is not a journal,
 * PQ_ERR_IO naming the step. */
pq_status pq_infer_journal_open(const char *path, const char *fingerprint, bool resume, pq_infer_journal **j,
                          int64_t *n_done);

/* Append chunk `index` (the next in sequence) and make it durable. */
pq_status pq_infer_journal_append(pq_infer_journal *j, int64_t index, const pq_buf *payload);

/* Read the records back in order from the start: *got false at the end.
 * payload is replaced with the record's bytes. */
pq_status pq_infer_journal_rewind(pq_infer_journal *j);
pq_status pq_infer_journal_next(pq_infer_journal *j, pq_buf *payload, bool *got);

/* Close (NULL is fine); remove: delete the file too. */
void pq_infer_journal_close(pq_infer_journal *j, bool remove);

#endif
