/* SPDX-License-Identifier: Apache-2.0 */
/* pq_fault.h - test-only fault switches, in one place.
 *
 * The MPI and failure tests make a chosen rank or unit fail, sleep or die
 * to check that a failure stops every rank with one line naming it, and
 * that results do not depend on the rank count. Each switch is an
 * environment variable holding a comma-separated list of integers; all of
 * them are read once, on the first question, and asked by name at the
 * point of use. None of them is documented to users.
 *
 *   PQ_TEST_FAIL_UNIT=<id>        the rank that runs unit <id> fails it (PQ_ERR_IO)
 *   PQ_TEST_SLOW_RANK=<r>         rank r sleeps 20 ms before each unit it runs
 *                                 (calibrate: 2 s before each block; embed,
 *                                 score: 0.2 s before each chunk)
 *   PQ_TEST_KILL_RANK=<r>         rank r raises SIGKILL after its first unit
 *   PQ_TEST_FAIL_HASH=<r>         rank r fails hashing its first source chunk
 *   PQ_TEST_FAKE_PLACED=<r>       rank r claims codes_in_file without writing them
 *   PQ_TEST_HASH_CHUNK_BYTES=<n>  cut the source digest into n-byte chunks
 *   PQ_TEST_PLAN_SALT=<r>         rank r's plan hash differs (plan mismatch)
 *   PQ_TEST_REMOTE_RANKS=<r,...>  ranks counted as on another machine than rank 0
 *   PQ_TEST_KILL_JOURNAL=<id>     rank 0 raises SIGKILL halfway through the
 *                                 journal record of unit (block, chunk) <id>
 *   PQ_TEST_KILL_AT=<point>       rank 0 raises SIGKILL at a point of a run:
 *                                 1 before the plan, 2 once the journal is made,
 *                                 3 after the float tensors, 4 before the commit's
 *                                 rename, 5 after it (before the journal goes)
 *   PQ_TEST_KILL_AFTER=<n>        rank 0 raises SIGKILL once n units are in the journal
 *   PQ_TEST_DROP_SOURCE=1         quantize drops the source's chunks from the page
 *                                 cache once read, whatever the source's size
 *   PQ_TEST_WRITE_BEHIND=<n>      quantize writes its codes behind (write_behind.h),
 *                                 whatever the output's size, in a window of n bytes */
#ifndef PQ_FAULT_H
#define PQ_FAULT_H

#include <stdbool.h>

typedef enum pq_fault {
    PQ_FAULT_FAIL_UNIT = 0,
    PQ_FAULT_SLOW_RANK,
    PQ_FAULT_KILL_RANK,
    PQ_FAULT_FAIL_HASH,
    PQ_FAULT_FAKE_PLACED,
    PQ_FAULT_HASH_CHUNK_BYTES,
    PQ_FAULT_PLAN_SALT,
    PQ_FAULT_REMOTE_RANKS,
    PQ_FAULT_KILL_JOURNAL,
    PQ_FAULT_KILL_AT,
    PQ_FAULT_KILL_AFTER,
    PQ_FAULT_DROP_SOURCE,
    PQ_FAULT_WRITE_BEHIND,
    PQ__FAULT_COUNT
} pq_fault;

/* True when switch f is set and lists v. */
bool pq_fault_at(pq_fault f, long v);

/* The first value of switch f, or dflt when it is not set. */
long pq_fault_value(pq_fault f, long dflt);

#endif
