/* SPDX-License-Identifier: Apache-2.0 */
/* monitor_event.c - a progress event's bytes checked and decoded
 * (monitor_event.h). */
#include "cli/monitor_event.h"

#include <string.h>

#include "proto/pq_wire.h"

static const char *const k_kinds[] = {"start", "unit", "finished", "error"};

pq_status pq_monitor_event_decode(const void *buf, size_t n, Proteus__ProgressEvent **out)
{
    *out = NULL;
    if (!n) return pq_err(PQ_ERR_PROTO, "an empty event");
    if (n > PQ_WIRE_MAX_MSG)
        return pq_err(PQ_ERR_PROTO, "an event of %zu bytes, over the %u-byte limit", n, PQ_WIRE_MAX_MSG);
    Proteus__ProgressEvent *e = proteus__progress_event__unpack(NULL, n, buf);
    if (!e) return pq_err(PQ_ERR_PROTO, "%zu bytes that are not a ProgressEvent protobuf message", n);
    pq_status st = PQ_OK;
    size_t k = 0;
    while (e->kind && k < sizeof k_kinds / sizeof *k_kinds && strcmp(e->kind, k_kinds[k])) k++;
    if (e->schema != PQ_WIRE_SCHEMA)
        st = pq_err(PQ_ERR_PROTO, "an event of schema %u, where this proteus reads schema %u: watch the run with "
                    "the proteus that started it", e->schema, PQ_WIRE_SCHEMA);
    else if (!e->kind || !*e->kind)
        st = pq_err(PQ_ERR_PROTO, "an event without a kind");
    else if (k == sizeof k_kinds / sizeof *k_kinds)
        st = pq_err(PQ_ERR_PROTO, "an event of unknown kind '%.40s' (expected start, unit, finished or error)",
                    e->kind);
    else if (e->base.n_unknown_fields)
        st = pq_err(PQ_ERR_PROTO, "an event with %u field(s) schema %u does not have (field number %u first)",
                    e->base.n_unknown_fields, PQ_WIRE_SCHEMA, e->base.unknown_fields[0].tag);
    else if (e->units_done > e->units_total)
        st = pq_err(PQ_ERR_PROTO, "an event counting %u units done of %u", e->units_done, e->units_total);
    if (st != PQ_OK) {
        proteus__progress_event__free_unpacked(e, NULL);
        return st;
    }
    *out = e;
    return PQ_OK;
}
