/* SPDX-License-Identifier: Apache-2.0 */
/* stop.h - SIGUSR1 and SIGTERM as a request to stop between work items.
 *
 * Slurm sends SIGUSR1 ahead of a job's time limit (--signal=B:USR1@N, passed
 * on by the batch script) and SIGTERM on scancel. A rank that gets one
 * finishes the batch it is running, its results go into the resume journal
 * (journal.h) as usual, and the run stops with PQ_ERR_INTERRUPTED (exit
 * status 14); `--resume` goes on from there. The handler only sets a flag
 * (a process-wide one: a signal handler has no context to reach). */
#ifndef PQ_STOP_H
#define PQ_STOP_H

#include "base/pq_err.h"

/* Catch SIGUSR1 and SIGTERM from now on. */
void pq_stop_catch(void);

/* The signal that asked to stop (0: none yet). */
int pq_stop_signal(void);

/* PQ_ERR_INTERRUPTED naming the signal, or PQ_OK when none came. */
pq_status pq_stop_check(void);

#endif
