/* SPDX-License-Identifier: Apache-2.0 */
/* infer_journal.c - the append-only, checksummed chunk journal. */
#include "eval/infer_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/pq_io.h"

#define MAGIC "PQINFJ01"
#define REC_MAGIC "CHNK"
#define REC_HEAD 24 /* "CHNK", crc32, index, length */

struct pq_infer_journal {
    char *path;
    int fd;
    uint64_t end;  /* offset of the next record */
    uint64_t body; /* offset of the first record */
    uint64_t pos;  /* read cursor */
    int64_t next;  /* index the next appended record must carry */
};

static pq_status io_fail(const pq_infer_journal *j, const char *what)
{
    return pq_err(PQ_ERR_IO, "%s: cannot %s: %s", j->path, what, strerror(errno));
}

/* Read exactly n bytes at off; false at a short read. */
static bool read_at(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return true;
}

static uint32_t crc_of(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* The record at off: its payload into *pl; false when it is not whole. */
static bool read_record(const pq_infer_journal *j, uint64_t off, int64_t want, pq_buf *pl, uint64_t *next)
{
    unsigned char h[REC_HEAD];
    if (!read_at(j->fd, h, sizeof h, off) || memcmp(h, REC_MAGIC, 4)) return false;
    uint32_t crc;
    int64_t index, len;
    memcpy(&crc, h + 4, 4);
    memcpy(&index, h + 8, 8);
    memcpy(&len, h + 16, 8);
    if (index != want || len < 0) return false;
    pl->len = 0;
    if (pq_buf_put(pl, NULL, 0) != PQ_OK) return false;
    if ((size_t)len > pl->cap) {
        unsigned char *d = realloc(pl->data, (size_t)len ? (size_t)len : 1);
        if (!d) return false;
        pl->data = d;
        pl->cap = (size_t)len;
    }
    if (!read_at(j->fd, pl->data, (size_t)len, off + REC_HEAD) || crc_of(pl->data, (size_t)len) != crc)
        return false;
    pl->len = (size_t)len;
    *next = off + REC_HEAD + (uint64_t)len;
    return true;
}

static pq_status write_header(pq_infer_journal *j, const char *fp)
{
    int64_t n = (int64_t)strlen(fp);
    int e = pq_pwrite_all(j->fd, MAGIC, 8, 0);
    if (!e) e = pq_pwrite_all(j->fd, &n, 8, 8);
    if (!e) e = pq_pwrite_all(j->fd, fp, (size_t)n, 16);
    if (e || fdatasync(j->fd)) {
        errno = e ? e : errno;
        return io_fail(j, "write the header");
    }
    j->body = j->end = 16 + (uint64_t)n;
    return PQ_OK;
}

/* An existing journal: check the header, keep the whole records. */
static pq_status reopen(pq_infer_journal *j, const char *fp, int64_t *n_done)
{
    unsigned char h[16];
    if (!read_at(j->fd, h, 16, 0) || memcmp(h, MAGIC, 8))
        return pq_err(PQ_ERR_FORMAT, "%s: not a Proteus inference journal", j->path);
    int64_t n;
    memcpy(&n, h + 8, 8);
    size_t want = strlen(fp);
    char *have = n >= 0 && n < (1 << 20) ? malloc((size_t)n + 1) : NULL;
    if (!have || !read_at(j->fd, have, (size_t)n, 16)) {
        free(have);
        return pq_err(PQ_ERR_FORMAT, "%s: truncated journal header", j->path);
    }
    bool same = (size_t)n == want && !memcmp(have, fp, want);
    free(have);
    if (!same)
        return pq_err(PQ_ERR_CONFIG, "%s was written by a run with other options (model, input or "
                      "output choices); rerun those options or remove it", j->path);
    j->body = j->end = 16 + (uint64_t)n;
    pq_buf pl = {0};
    uint64_t next;
    while (read_record(j, j->end, j->next, &pl, &next)) {
        j->end = next;
        j->next++;
    }
    pq_buf_free(&pl);
    if (ftruncate(j->fd, (off_t)j->end) || fdatasync(j->fd)) return io_fail(j, "cut its torn tail");
    *n_done = j->next;
    return PQ_OK;
}

pq_status pq_infer_journal_open(const char *path, const char *fingerprint, bool resume, pq_infer_journal **jp,
                          int64_t *n_done)
{
    *n_done = 0;
    pq_infer_journal *j = calloc(1, sizeof *j);
    *jp = j;
    if (!j || !(j->path = strdup(path))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    struct stat sb;
    bool exists = resume && stat(path, &sb) == 0 && sb.st_size > 0;
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (exists ? 0 : O_TRUNC), 0644);
    if (j->fd < 0) return io_fail(j, "open the journal");
    return exists ? reopen(j, fingerprint, n_done) : write_header(j, fingerprint);
}

pq_status pq_infer_journal_append(pq_infer_journal *j, int64_t index, const pq_buf *pl)
{
    if (index != j->next)
        return pq_err(PQ_ERR_INTERNAL, "%s: chunk %lld appended out of order (expected %lld)", j->path,
                      (long long)index, (long long)j->next);
    unsigned char h[REC_HEAD];
    uint32_t crc = crc_of(pl->data, pl->len);
    int64_t len = (int64_t)pl->len;
    memcpy(h, REC_MAGIC, 4);
    memcpy(h + 4, &crc, 4);
    memcpy(h + 8, &index, 8);
    memcpy(h + 16, &len, 8);
    int e = pq_pwrite_all(j->fd, h, sizeof h, j->end);
    if (!e && pl->len) e = pq_pwrite_all(j->fd, pl->data, pl->len, j->end + REC_HEAD);
    if (e || fdatasync(j->fd)) {
        errno = e ? e : errno;
        return io_fail(j, "append a chunk");
    }
    j->end += REC_HEAD + pl->len;
    j->next++;
    return PQ_OK;
}

pq_status pq_infer_journal_rewind(pq_infer_journal *j)
{
    j->pos = j->body;
    return PQ_OK;
}

pq_status pq_infer_journal_next(pq_infer_journal *j, pq_buf *pl, bool *got)
{
    *got = false;
    if (j->pos >= j->end) return PQ_OK;
    int64_t index;
    if (!read_at(j->fd, &index, 8, j->pos + 8))
        return pq_err(PQ_ERR_IO, "%s: cannot read a chunk back", j->path);
    uint64_t next;
    if (!read_record(j, j->pos, index, pl, &next))
        return pq_err(PQ_ERR_FORMAT, "%s: a chunk changed on disk since it was written", j->path);
    j->pos = next;
    *got = true;
    return PQ_OK;
}

void pq_infer_journal_close(pq_infer_journal *j, bool remove)
{
    if (!j) return;
    if (j->fd >= 0) close(j->fd);
    if (remove && j->path) unlink(j->path);
    free(j->path);
    free(j);
}
