/* SPDX-License-Identifier: Apache-2.0 */
/* direct.c - codes written by the worker that computed them, into rank 0's
 * OUT.partial. Only ranks on rank 0's machine are sent a layout, and the
 * device/inode check makes sure that the path names the very file rank 0
 * created; the worker's header then tells rank 0 not to expect the codes. */
#include "worker/direct.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/pq_io.h"

pq_status pq_direct_take_layout(pq_direct *d, MPI_Comm comm, const pq_job *j, const pq_wire_layout *l,
                                const char *path, int rank, bool use)
{
    const pq_plan *p = pq_job_plan(j);
    size_t n = (size_t)l->n_tensors;
    uint64_t *off = malloc(n * sizeof *off);
    if (!off) return pq_err(PQ_ERR_RESOURCE, "rank %d: out of memory receiving the output layout", rank);
    /* the announced buffer is taken off the wire even when it is not used */
    pq_status st = pq_data_recv(comm, PQ_ROLE_COORD, off, n * sizeof *off, "output layout offsets");
    if (!st && l->n_tensors != (uint32_t)p->n_tensors)
        st = pq_err(PQ_ERR_PROTO, "malformed OutputLayout message from rank 0: %u tensors, the plan has %d",
                    l->n_tensors, p->n_tensors);
    for (int i = 0; !st && i < p->n_tensors; i++)
        if (p->tensors[i].action == PQ_ACT_QUANT && p->tensors[i].rows > 0 && off[i] == 0)
            st = pq_err(PQ_ERR_PROTO, "malformed OutputLayout message from rank 0: no offset for tensor '%s'",
                        p->tensors[i].st->name);
    if (st || !use || d->fd >= 0 || !path) {
        free(off);
        return st;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0 || (uint64_t)sb.st_dev != l->file_dev || (uint64_t)sb.st_ino != l->file_ino) {
        PQ_LOG_DEBUG("%s is not the file rank 0 writes here (%s); sending codes to rank 0", path,
                     fd < 0 ? strerror(errno) : "another file");
        if (fd >= 0) close(fd);
        free(off);
        return PQ_OK;
    }
    d->fd = fd;
    d->offset = off;
    d->path = path;
    uint64_t total = 0; /* the codes of every rank: what the file holds */
    for (int i = 0; i < p->n_tensors; i++)
        if (p->tensors[i].action == PQ_ACT_QUANT)
            total += (uint64_t)p->tensors[i].rows * (uint64_t)pq_qspec_row_bytes(&p->tensors[i].spec, p->tensors[i].cols);
    pq_behind_init(&d->behind, fd, total);
    PQ_LOG_DEBUG("writing its codes straight into %s", path);
    return PQ_OK;
}

pq_status pq_direct_write(pq_direct *d, const pq_job *j, const pq_unit *u, const pq_unit_result *r,
                          int rank)
{
    pq_unit_layout l;
    pq_unit_layout_of(pq_job_plan(j), u, &l);
    int e = pq_pwrite_all(d->fd, r->codes, l.codes, d->offset[u->tensor] + (uint64_t)(u->row0 * l.row_bytes));
    if (e)
        return pq_err(PQ_ERR_IO, "rank %d, unit %d (tensor '%s'): writing its codes into %s failed: %s", rank,
                      u->id, pq_job_plan(j)->tensors[u->tensor].st->name, d->path, strerror(e));
    pq_behind_wrote(&d->behind, d->offset[u->tensor] + (uint64_t)(u->row0 * l.row_bytes), l.codes);
    return PQ_OK;
}

pq_status pq_direct_close(pq_direct *d, int rank)
{
    pq_status st = PQ_OK;
    if (d->fd >= 0 && close(d->fd) < 0)
        st = pq_err(PQ_ERR_IO, "rank %d: writing codes into %s failed: %s", rank, d->path, strerror(errno));
    d->fd = -1;
    free(d->offset);
    d->offset = NULL;
    return st;
}
