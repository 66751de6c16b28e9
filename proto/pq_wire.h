/* SPDX-License-Identifier: Apache-2.0 */
/* pq_wire.h - rank roles, MPI message tags and wire limits: the only place
 * where tags are numbered. */
#ifndef PQ_WIRE_H
#define PQ_WIRE_H

/* Rank 0 plans, writes the output and also runs units; every other rank is a
 * worker. */
#define PQ_ROLE_COORD 0

enum pq_tag {
    PQ_TAG_PLAN = 100,  /* Plan (broadcast, listed for names only) */
    PQ_TAG_RESULT,      /* UnitResult header, worker -> 0 */
    PQ_TAG_DATA,        /* raw buffers announced by a UnitResult */
    PQ_TAG_ERROR,       /* Error, worker -> 0 (final message) */
    PQ_TAG_DONE,        /* Done, worker -> 0 (final message) */
    PQ_TAG_SHUTDOWN,    /* Shutdown, 0 -> worker */
    PQ_TAG_LEAVES,      /* HashLeaves, worker -> 0 (before its Done) */
    PQ_TAG_LAYOUT,      /* OutputLayout, 0 -> worker on rank 0's machine (+ raw offsets) */
    PQ_TAG_END_
};

/* Schema version every control message carries (SchemaVersion in the .proto). */
#define PQ_WIRE_SCHEMA 3u

/* A control message larger than this is rejected before it is received: the
 * largest legitimate one (an Error with its detail line) is well under 4 kB. */
#define PQ_WIRE_MAX_MSG (64u << 10)

/* Leaves per HashLeaves message (32 bytes each, well under the limit). */
#define PQ_WIRE_MAX_LEAVES 64
#define PQ_WIRE_LEAF_BYTES 32

/* Raw buffers travel in chunks of at most this many bytes (MPI counts are int). */
#define PQ_WIRE_CHUNK (1u << 30)

#endif
