/* SPDX-License-Identifier: Apache-2.0 */
/* writeback.h - start the kernel's writeback of a file being written, from a
 * helper thread, so that the final fsync waits less and the caller never
 * waits on the disk queue. */
#ifndef PQ_WRITEBACK_H
#define PQ_WRITEBACK_H

typedef struct pq_writeback pq_writeback;

/* Ask for writeback of everything written to `path` so far. The first call
 * creates *wb; a call while the helper is busy makes it run once more.
 * Best effort: a failure only means the fsync does the work. */
void pq_writeback_kick(pq_writeback **wb, const char *path);

/* Wait for the helper and free it (NULL is fine). */
void pq_writeback_done(pq_writeback *wb);

#endif
