/* SPDX-License-Identifier: Apache-2.0 */
/* pq_io.c - see pq_io.h. */
#include "base/pq_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int pq_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const char *p = buf;
    while (n > 0) {
        /* at most 1 GiB per call: Linux caps one write near 2 GiB anyway */
        size_t c = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
        ssize_t w = pwrite(fd, p, c, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return ENOSPC;
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return 0;
}

int pq_partial_name(char *buf, size_t n, const char *path)
{
    int k = snprintf(buf, n, "%s.partial", path);
    return k < 0 || (size_t)k >= n ? ENAMETOOLONG : 0;
}

char *pq_partial_dup(const char *path)
{
    size_t n = strlen(path) + sizeof ".partial";
    char *p = malloc(n);
    if (p) pq_partial_name(p, n, path);
    return p;
}

void pq_sync_dir_of(const char *path)
{
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = dir;
    if (!slash) d = ".";
    else if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static pq_status step_failed(const char *partial, const char *step, const char *final, int e)
{
    return pq_err(PQ_ERR_IO, "%s: %s to %s failed: %s", partial, step, final, strerror(e));
}

pq_status pq_publish(const char *partial, const char *final)
{
    /* fsync is per inode: any descriptor covers every writer's data */
    int fd = open(partial, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return step_failed(partial, "fsync", final, errno);
    int e = fsync(fd) < 0 ? errno : 0;
    close(fd);
    if (e) return step_failed(partial, "fsync", final, e);
    if (rename(partial, final) < 0) return step_failed(partial, "rename", final, errno);
    pq_sync_dir_of(final);
    return PQ_OK;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

bool pq_path_is_h5(const char *path)
{
    return ends_with(path, ".h5") || ends_with(path, ".hdf5");
}
