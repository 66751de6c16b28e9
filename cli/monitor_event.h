/* SPDX-License-Identifier: Apache-2.0 */
/* monitor_event.h - the bytes of one progress event, as `proteus monitor`
 * receives them from a run's --monitor endpoint (quantize:
 * coordinator/monitor.h; embed and score: coordinator/infer_mpi.h), checked
 * and decoded. Never prints. */
#ifndef PQ_CLI_MONITOR_EVENT_H
#define PQ_CLI_MONITOR_EVENT_H

#include <stddef.h>

#include "base/pq_err.h"
#include "proteus.pb-c.h"

/* Decode buf[0..n) into *e (returns owned: proteus__progress_event__free_unpacked).
 * PQ_ERR_PROTO, *e NULL, with a detail naming the cause, when the bytes are
 * empty or over PQ_WIRE_MAX_MSG, not a ProgressEvent message, of another
 * schema (another Proteus version: both schemas named), without a kind or
 * of an unknown one, with fields its schema does not have (a field number
 * 0 included, which protobuf-c passes over as unknown), or count more units
 * done than there are. */
pq_status pq_monitor_event_decode(const void *buf, size_t n, Proteus__ProgressEvent **e);

#endif
