/* SPDX-License-Identifier: Apache-2.0 */
/* msg.h - control messages between ranks: protobuf-c encode/decode and their
 * MPI transport (probe, size check, receive), plus raw bulk buffers.
 *
 * Every decoded message is copied into a plain struct (pq_msg); nothing
 * points into freed protobuf memory. Any malformed, oversized, wrong-schema
 * or unknown message gives PQ_ERR_PROTO with a detail naming the sending
 * rank and the message type; MPI failures give PQ_ERR_MPI. */
#ifndef PQ_MSG_H
#define PQ_MSG_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"
#include "proto/pq_wire.h"

typedef struct pq_wire_plan {
    uint64_t plan_hash;
    uint32_t n_ranks, n_units;
    int64_t unit_bytes;
} pq_wire_plan;

typedef struct pq_wire_result {
    uint32_t unit_id, rank;
    int64_t n_rows;
    uint64_t code_bytes, n_scales;
    bool has_zero_point;
    int64_t n_nonfinite;
    double sum_sq, err_sq, max_abs_err;
    bool codes_in_file;      /* no codes buffer follows: they are in OUT.partial */
} pq_wire_result;

typedef struct pq_wire_layout {
    uint64_t file_dev, file_ino;
    uint32_t n_tensors;      /* a raw buffer of n_tensors uint64 offsets follows */
} pq_wire_layout;

typedef struct pq_wire_error {
    uint32_t rank;
    int32_t unit_id;   /* -1: not inside a unit */
    int32_t status;    /* a pq_status */
    char detail[1024];
} pq_wire_error;

typedef struct pq_wire_done {
    uint32_t rank, units;
    uint32_t hash_chunks;    /* digest chunks this rank hashed (HashLeaves sent) */
} pq_wire_done;

typedef struct pq_wire_leaves {
    uint32_t rank;
    int n;                   /* 1..PQ_WIRE_MAX_LEAVES */
    uint32_t chunk[PQ_WIRE_MAX_LEAVES];
    uint8_t leaf[PQ_WIRE_MAX_LEAVES][PQ_WIRE_LEAF_BYTES];
} pq_wire_leaves;

typedef struct pq_wire_shutdown {
    int32_t status;
    bool stop;
} pq_wire_shutdown;

typedef struct pq_msg {
    int tag;           /* enum pq_tag: says which member is valid */
    int source;        /* sending rank (filled on receive) */
    union {
        pq_wire_plan plan;
        pq_wire_result result;
        pq_wire_error error;
        pq_wire_done done;
        pq_wire_leaves leaves;
        pq_wire_shutdown shutdown;
        pq_wire_layout layout;
    } u;
} pq_msg;

/* "UnitResult", "Error", ... for a tag; "tag N" text for unknown ones
 * (borrowed static storage for known tags, a thread-local buffer otherwise). */
const char *pq_msg_name(int tag);

/* Encode m (by m->tag) into a new buffer. Returns owned *buf (free()). */
pq_status pq_msg_encode(const pq_msg *m, uint8_t **buf, size_t *len);

/* Decode len bytes received with `tag` from rank `source` into *out. Borrows
 * buf. Checks the size limit, the schema version and value ranges. */
pq_status pq_msg_decode(int tag, int source, const uint8_t *buf, size_t len, pq_msg *out);

/* MPI_Error_string of rc as PQ_ERR_MPI naming `what`; PQ_OK for MPI_SUCCESS. */
pq_status pq_mpi_check(int rc, const char *what);

/* Send one control message (small: returns once buffered or delivered). */
pq_status pq_msg_send(MPI_Comm comm, int dest, const pq_msg *m);

/* Non-blocking probe for a control message from `source` (or MPI_ANY_SOURCE)
 * with `tag` (or MPI_ANY_TAG). *ready tells whether one is there. */
pq_status pq_msg_poll(MPI_Comm comm, int source, int tag, bool *ready, MPI_Status *st);

/* Receive and decode the message that `probed` describes (from pq_msg_poll).
 * Rejects raw data tags, unknown tags and oversized messages before reading. */
pq_status pq_msg_recv(MPI_Comm comm, const MPI_Status *probed, pq_msg *out);

/* Broadcast a Plan from `root`; on other ranks *m is filled in. Collective. */
pq_status pq_msg_bcast_plan(MPI_Comm comm, int root, pq_msg *m);

/* Raw buffers on PQ_TAG_DATA, in chunks. isend posts them (the caller keeps
 * buf alive until pq_data_wait); recv receives exactly n bytes from `source`
 * and fails (PQ_ERR_PROTO) when the sender's chunk has another size. */
typedef struct pq_data_reqs {
    int n;
    MPI_Request req[64];
} pq_data_reqs;
pq_status pq_data_isend(MPI_Comm comm, int dest, const void *buf, size_t n, pq_data_reqs *r);
/* Wait for every posted send, sleeping between tests so a waiting rank does
 * not spin on a shared core. */
pq_status pq_data_wait(pq_data_reqs *r);
/* Without waiting: *done when every posted send has completed. */
pq_status pq_data_test(pq_data_reqs *r, bool *done);
pq_status pq_data_recv(MPI_Comm comm, int source, void *buf, size_t n, const char *what);

#endif
