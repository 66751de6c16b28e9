/* SPDX-License-Identifier: Apache-2.0 */
/* direct.h - a worker on rank 0's machine writes its units' codes straight
 * into rank 0's OUT.partial, at the offsets rank 0's OutputLayout gives,
 * instead of sending them: rank 0 then neither receives nor writes them. */
#ifndef PQ_DIRECT_H
#define PQ_DIRECT_H

#include <mpi.h>
#include <stdint.h>

#include "format/write_behind.h"
#include "pipeline/job.h"
#include "proto/msg.h"
#include "base/pq_err.h"

typedef struct pq_direct {
    int fd;               /* OUT.partial, or -1: the codes are sent */
    uint64_t *offset;     /* per plan tensor: file offset of its codes */
    const char *path;     /* OUT.partial (borrowed) */
    pq_behind behind;     /* the codes written behind (large outputs) */
} pq_direct;

#define PQ_DIRECT_INIT {.fd = -1, .behind = {.fd = -1}}

/* After receiving an OutputLayout header l from rank 0: receive its offsets
 * and, unless use is false, open path for writing. When the file there is
 * not the one rank 0 created (another device or inode), or cannot be
 * opened, d stays off and the codes go to rank 0 as before. Fails only on a
 * malformed layout or an MPI failure. */
pq_status pq_direct_take_layout(pq_direct *d, MPI_Comm comm, const pq_job *j, const pq_wire_layout *l,
                                const char *path, int rank, bool use);

/* Write unit u's codes (r) at their place; PQ_ERR_IO naming the rank, the
 * unit and the file on failure. */
pq_status pq_direct_write(pq_direct *d, const pq_job *j, const pq_unit *u, const pq_unit_result *r,
                          int rank);

/* Close the file (its errors are write errors) and free d's memory. */
pq_status pq_direct_close(pq_direct *d, int rank);

#endif
