/* SPDX-License-Identifier: Apache-2.0 */
/* pq_io.h - whole-buffer positional writes (pwrite may write less than
 * asked), and the partial-then-rename protocol every output file follows. */
#ifndef PQ_IO_H
#define PQ_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

/* Write all n bytes of buf at file offset off, retrying short writes and
 * EINTR. Returns 0, or the errno of the failure (ENOSPC for a write that
 * makes no progress). */
int pq_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);

/* The name an output is written under until it is complete: path + ".partial"
 * (docs/FORMAT.md). Returns 0, or ENAMETOOLONG when it does not fit buf[n]. */
int pq_partial_name(char *buf, size_t n, const char *path);

/* The same name in a new allocation (free() it); NULL when out of memory. */
char *pq_partial_dup(const char *path);

/* Make the completely written `partial` the file `final`: fsync it, rename
 * it, fsync the directory, so that after a crash `final` is either absent or
 * whole. PQ_ERR_IO naming the step that failed ("PARTIAL: fsync to FINAL
 * failed: REASON", or rename), partial then left for the caller to remove;
 * the directory's fsync is best effort. */
pq_status pq_publish(const char *partial, const char *final);

/* fsync the directory holding path, so that a new name or a rename in it is
 * durable (best effort). */
void pq_sync_dir_of(const char *path);

/* Whether path names an HDF5 file by its suffix (.h5 or .hdf5): the rule that
 * tells a Proteus HDF5 model from a safetensors checkpoint. */
bool pq_path_is_h5(const char *path);

#endif
