/* SPDX-License-Identifier: Apache-2.0 */
/* cleanup.h - remove rank 0's OUT.partial (and the fallback's attempt files)
 * when rank 0 dies before its commit.
 *
 * Rank 0 can go in ways that run none of its code: mpirun's SIGKILL a
 * second after its SIGTERM (a thread in an uninterruptible wait may not
 * have run the handler by then), or Open MPI's own abort (_exit) when
 * PMIx reports that another rank died. So a small watcher process, forked
 * before MPI_Init, holds the read end of a pipe from rank 0 and removes the
 * file it was told of when the pipe closes, however rank 0 ended. It leaves
 * rank 0's process group and ignores the stop signals, so the launcher's
 * signals reach only rank 0; it exits as soon as rank 0 is gone. */
#ifndef PQ_CLEANUP_H
#define PQ_CLEANUP_H

/* Rank 0, before MPI_Init: start the watcher. Falls back to signal
 * handlers (SIGTERM, SIGINT, SIGHUP) when it cannot be started. */
void pq_cleanup_start(void);

/* Without pq_cleanup_start (the rank was not known to be 0 before
 * MPI_Init): the signal handlers only. */
void pq_cleanup_handler(void);

/* The file to remove if rank 0 dies from now on, alone; NULL: none (after
 * the commit, or after removing it itself). */
void pq_cleanup_arm(const char *path);

/* One more file to remove with those armed now (at most 4 in all; NULL is
 * fine): the fallback's finished attempts. */
void pq_cleanup_arm_also(const char *path);

#endif
