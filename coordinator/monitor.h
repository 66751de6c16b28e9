/* SPDX-License-Identifier: Apache-2.0 */
/* monitor.h - rank 0's ZeroMQ progress publisher: ProgressEvent messages on
 * a PUB socket. A read-only side channel: it never blocks or fails the run. */
#ifndef PQ_MONITOR_H
#define PQ_MONITOR_H

#include <stdbool.h>

#include "pipeline/job.h"
#include "base/pq_err.h"

typedef struct pq_monitor pq_monitor;

/* Check a bind endpoint. tcp:// hosts must be loopback (127.0.0.0/8,
 * localhost, ::1) unless allow_remote; ipc:// is always local. Returns
 * PQ_ERR_CONFIG naming the endpoint otherwise. */
pq_status pq_monitor_check_endpoint(const char *endpoint, bool allow_remote);

/* Bind a publisher on endpoint and wait up to wait_s seconds for a first
 * subscriber (so a monitor started earlier sees the whole run). Returns owned
 * monitor, or NULL after logging one warning when it cannot be set up. */
pq_monitor *pq_monitor_open(const char *endpoint, double wait_s);

/* Publish one event (non-blocking; dropped when nobody listens or the queue
 * is full; the first failure is logged once at WARN). kind is "start",
 * "unit", "finished" or "error"; unit_id/rank -1 when not a unit event;
 * error is the error line for kind "error". m may be NULL (no-op). */
void pq_monitor_publish(pq_monitor *m, const char *kind, const pq_progress *ev, int unit_id, int rank,
                        int n_ranks, pq_status status, const char *error);

/* Flush (bounded by a short linger) and close. Takes m; NULL is a no-op. */
void pq_monitor_close(pq_monitor *m);

#endif
