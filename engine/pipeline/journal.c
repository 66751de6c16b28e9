/* SPDX-License-Identifier: Apache-2.0 */
/* journal.c - the resume journal (journal.h; its bytes: docs/FORMAT.md).
 *
 * File: "PQJOURNL", u32 version, u32 text length, the header text, SHA-256
 * of those bytes; then records: u32 "PQJR", u32 type (1 unit, 2 leaf, 3 block),
 * i64 id, u64 payload bytes, u64 0, the payload, SHA-256 of the 32-byte
 * record head and the payload. Every number little-endian. A unit's record
 * names its codes where they lie in OUT.partial (offset, bytes, checksum)
 * rather than holding them. */
#include "pipeline/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/pq_clock.h"
#include "base/pq_fault.h"
#include "base/pq_hash.h"
#include "base/pq_io.h"
#include "format/digest.h"
#include "format/h5model.h"
#include "pq_config.h"

#define MAGIC "PQJOURNL"
#define VERSION 2u        /* quantize's: units name their codes in OUT.partial */
#define VERSION_BLOCKS 1u /* calibrate's, embed's and score's (unchanged since version 1) */
#define REC_MAGIC 0x524a5150u /* "PQJR" */
#define REC_UNIT 1u
#define REC_LEAF 2u
#define REC_BLOCK 3u
#define HEAD_BYTES 32
#define SUM_BYTES 32
#define MAX_HEADER_TEXT (1u << 20)
#define SYNC_EVERY_S 1.0
#define MAX_OPEN_BLOCKS (1 << 24) /* an open-ended journal's block ids */

struct pq_journal {
    char *path;
    int fd;
    uint64_t end;          /* where the next record goes */
    int n_units, n_hash;   /* open-ended: n_units is the highest block + 1 */
    int cap;               /* entries of done and at */
    bool open_ended;       /* blocks of any number (PQ_JOURNAL_ANY_BLOCKS) */
    bool *done;            /* per unit (or block): a valid record */
    uint64_t *at;          /* per unit (or block): its record's offset */
    bool *leaf_have;       /* per chunk: a recorded leaf */
    uint8_t *leaves;       /* n_hash x 32 */
    int n_done, n_bad;
    double synced_t;
    bool dirty;
    /* The periodic fdatasync runs on a helper thread (bg_kick), so that the
     * writer never waits on the disk between two records. */
    pthread_t bg;
    bool bg_started;       /* a helper to join */
    bool bg_done;          /* it has returned (atomic) */
    int bg_err;            /* its errno, read after the join */
    /* quantize: the codes of the units live in OUT.partial */
    uint32_t version;      /* VERSION (units) or VERSION_BLOCKS */
    pq_digest_alg codes_alg; /* the codes' checksum (the header's codes_checksum) */
    int partial_fd;        /* this run's OUT.partial: synced before the journal; -1: none */
    int old_fd;            /* the stopped run's OUT.partial (its name removed); -1: none */
    uint64_t *codes_at;    /* per unit: where its recorded codes lie in old_fd's file */
    uint8_t *codes_sum;    /* per unit: their checksum (32 bytes) */
};

int pq_journal_name(char *buf, size_t n, const char *out)
{
    return snprintf(buf, n, "%s.journal", out) < (int)n ? 0 : ENAMETOOLONG;
}

static void put_u32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *b)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static uint64_t get_u64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* SHA-256 of up to three pieces. */
static void sha256(const void *a, size_t na, const void *b, size_t nb, uint8_t out[SUM_BYTES])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) || !EVP_DigestUpdate(c, a, na) ||
        (nb && !EVP_DigestUpdate(c, b, nb)) || !EVP_DigestFinal_ex(c, out, &n))
        memset(out, 0, SUM_BYTES); /* never matches a record's sum of real bytes */
    EVP_MD_CTX_free(c);
}

/* ---- the header text ---- */

char *pq_journal_header(const char *kind, const char *config_json, const pq_plan *p, const pq_st_model *m,
                        const char *extra)
{
    uint64_t tensors = PQ_FNV1A64_BASIS, units = PQ_FNV1A64_BASIS, files = 0;
    for (int i = 0; i < pq_st_file_count(m); i++) {
        size_t n = 0;
        pq_st_file_map(m, i, &n);
        files += n;
    }
    for (int64_t i = 0; i < pq_st_count(m); i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        int64_t v[4 + PQ_MAX_DIMS] = {t->dtype, t->ndim, t->file_idx, (int64_t)t->offset};
        memcpy(v + 4, t->shape, sizeof t->shape);
        tensors = pq_fnv1a64_str(tensors, t->name);
        tensors = pq_fnv1a64_update(tensors, v, sizeof v);
    }
    for (int i = 0; i < p->n_units; i++) {
        const pq_unit *u = &p->units[i];
        int64_t v[3] = {u->tensor, u->row0, u->n_rows};
        units = pq_fnv1a64_update(units, v, sizeof v);
    }
    for (int i = 0; i < p->n_tensors; i++) {
        const pq_plan_tensor *pt = &p->tensors[i];
        int v[6] = {pt->action, pt->spec.bits, pt->spec.gran, pt->spec.group_size, pt->spec.symmetric, pt->float16};
        units = pq_fnv1a64_update(units, v, sizeof v);
    }
    const char *fmt = "kind %s\nproteus " PQ_VERSION "\nformat %d\nconfiguration %s\nunit_bytes %lld\n"
                      "model_files %d\nmodel_bytes %llu\nmodel_tensors %lld, fingerprint %016llx\n"
                      "units %d, geometry %016llx\ndigest_chunks %d of %lld bytes\ncodes_checksum %s\n%s";
    char *s = NULL;
    if (asprintf(&s, fmt, kind, PQ_FORMAT_VERSION, config_json, (long long)p->unit_bytes, pq_st_file_count(m),
                 (unsigned long long)files, (long long)pq_st_count(m), (unsigned long long)tensors, p->n_units,
                 (unsigned long long)units, p->n_hash, (long long)p->hash_chunk_bytes,
                 pq_digest_name(pq_digest_default()), extra ? extra : "") < 0)
        return NULL;
    return s;
}

/* The first line of a that differs from b: "KEY: this run VALUE, the
 * journal VALUE" (values cut to a readable length). */
static void first_difference(const char *a, const char *b, char *buf, size_t n)
{
    while (*a || *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || memcmp(a, b, la)) {
            const char *sp = memchr(a, ' ', la);
            int key = sp ? (int)(sp - a) : (int)la;
            const char *va = a + key + (key < (int)la), *vb = b + key + (key < (int)lb);
            int wa = (int)(la - (size_t)(va - a)), wb = (int)(lb - (size_t)(vb - b));
            snprintf(buf, n, "%.*s: this run has %.*s%s, the journal %.*s%s", key, a, wa > 300 ? 300 : wa, va,
                     wa > 300 ? "..." : "", wb > 300 ? 300 : wb, vb, wb > 300 ? "..." : "");
            return;
        }
        a += la + (ea != NULL);
        b += lb + (eb != NULL);
    }
    snprintf(buf, n, "(none)");
}

/* ---- reading ---- */

/* Room for block id in an open-ended journal (n_units follows the highest
 * block seen). */
static pq_status make_room(pq_journal *jr, int64_t id)
{
    if (id < jr->cap) return PQ_OK;
    int64_t cap = jr->cap;
    while (cap <= id) cap *= 2;
    bool *done = realloc(jr->done, (size_t)cap * sizeof *done);
    if (done) jr->done = done;
    uint64_t *at = realloc(jr->at, (size_t)cap * sizeof *at);
    if (at) jr->at = at;
    if (!done || !at) return pq_err(PQ_ERR_RESOURCE, "out of memory for %s's blocks", jr->path);
    memset(jr->done + jr->cap, 0, (size_t)(cap - jr->cap) * sizeof *done);
    memset(jr->at + jr->cap, 0, (size_t)(cap - jr->cap) * sizeof *at);
    jr->cap = (int)cap;
    return PQ_OK;
}

/* Block id is recorded at byte pos. */
static pq_status mark_block(pq_journal *jr, int64_t id, uint64_t pos)
{
    pq_status st = jr->open_ended ? make_room(jr, id) : PQ_OK;
    if (st || jr->done[id]) return st;
    jr->done[id] = true;
    jr->at[id] = pos;
    jr->n_done++;
    if (jr->open_ended && id >= jr->n_units) jr->n_units = (int)id + 1;
    return PQ_OK;
}

/* A block id this journal can hold. */
static bool block_id_ok(const pq_journal *jr, int64_t id)
{
    return id >= 0 && id < (jr->open_ended ? MAX_OPEN_BLOCKS : jr->n_units);
}

static pq_status read_at(pq_journal *jr, void *buf, size_t n, uint64_t off, bool *short_read)
{
    size_t got = 0;
    *short_read = false;
    while (got < n) {
        ssize_t r = pread(jr->fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return pq_err(PQ_ERR_IO, "%s: read failed: %s", jr->path, strerror(errno));
        if (r == 0) {
            *short_read = true;
            return PQ_OK;
        }
        got += (size_t)r;
    }
    return PQ_OK;
}

/* A unit's record starts with n_nonfinite, the codes' offset in OUT.partial,
 * their bytes and their checksum (32 bytes), then the result's parts but
 * the codes. */
#define UNIT_LEAD (8 + 8 + 8 + SUM_BYTES)

/* Payload bytes of unit u's record. */
static uint64_t unit_payload(const pq_plan *p, const pq_unit *u)
{
    pq_unit_layout l;
    pq_unit_layout_of(p, u, &l);
    return UNIT_LEAD + l.scale + l.zero_point + l.row_sum_sq + l.row_err_sq + l.row_max_err;
}

/* The header at the start of the file: *text (owned) and where records
 * begin, or *text NULL when the header is cut or unreadable as one. */
static pq_status read_header(pq_journal *jr, uint64_t size, char **text, uint64_t *records)
{
    uint8_t h[16], sum[SUM_BYTES], want[SUM_BYTES];
    bool cut;
    *text = NULL;
    if (size < 16 + SUM_BYTES) return PQ_OK;
    pq_status st = read_at(jr, h, sizeof h, 0, &cut);
    if (st || cut) return st;
    uint32_t n = get_u32(h + 12);
    if (memcmp(h, MAGIC, 8))
        return pq_err(PQ_ERR_FORMAT, "%s is not a Proteus resume journal; remove it or choose another --out",
                      jr->path);
    if (get_u32(h + 8) != jr->version)
        return pq_err(PQ_ERR_CONFIG, "%s: journal version %u, this Proteus (" PQ_VERSION ") reads and writes "
                      "version %u only; remove it%s to start again", jr->path, get_u32(h + 8), jr->version,
                      jr->version == VERSION ? " and the OUT.partial beside it" : "");
    if (n > MAX_HEADER_TEXT || size < 16 + (uint64_t)n + SUM_BYTES) return PQ_OK;
    char *t = malloc((size_t)n + 1);
    if (!t) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    if ((st = read_at(jr, t, n, 16, &cut)) || (st = read_at(jr, sum, sizeof sum, 16 + n, &cut)) || cut) {
        free(t);
        return st;
    }
    sha256(h, sizeof h, t, n, want);
    if (memcmp(sum, want, SUM_BYTES)) {
        free(t);
        return PQ_OK;
    }
    t[n] = '\0';
    *text = t;
    *records = 16 + (uint64_t)n + SUM_BYTES;
    return PQ_OK;
}

/* Walk the records from `pos`: note each valid one, drop (count) those
 * whose sum fails, stop at the first that cannot be framed (cut, or a head
 * that does not fit the plan); the file is cut back to there. p NULL: a
 * journal of blocks (any payload size). */
static pq_status scan(pq_journal *jr, const pq_plan *p, uint64_t pos, uint64_t size)
{
    uint8_t head[HEAD_BYTES], sum[SUM_BYTES], want[SUM_BYTES];
    uint8_t *buf = NULL;
    size_t cap = 0;
    pq_status st = PQ_OK;
    bool cut;
    while (pos + HEAD_BYTES + SUM_BYTES <= size) {
        if ((st = read_at(jr, head, HEAD_BYTES, pos, &cut)) || cut) break;
        uint32_t type = get_u32(head + 4);
        int64_t id = (int64_t)get_u64(head + 8);
        uint64_t n = get_u64(head + 16), expect = 0;
        if (get_u32(head) != REC_MAGIC || get_u64(head + 24) != 0) break;
        if (p && type == REC_UNIT && id >= 0 && id < p->n_units) expect = unit_payload(p, &p->units[id]);
        else if (p && type == REC_LEAF && id >= 0 && id < p->n_hash) expect = 32;
        else if (!p && type == REC_BLOCK && block_id_ok(jr, id)) expect = n;
        else break;
        if (n != expect || pos + HEAD_BYTES + n + SUM_BYTES > size) break;
        if (n > cap) {
            free(buf);
            cap = n;
            if (!(buf = malloc(n))) {
                st = pq_err(PQ_ERR_RESOURCE, "out of memory reading %s", jr->path);
                break;
            }
        }
        if ((st = read_at(jr, buf, n, pos + HEAD_BYTES, &cut)) || cut) break;
        if ((st = read_at(jr, sum, SUM_BYTES, pos + HEAD_BYTES + n, &cut)) || cut) break;
        sha256(head, HEAD_BYTES, buf, n, want);
        if (memcmp(sum, want, SUM_BYTES)) {
            jr->n_bad++;
            PQ_LOG_WARN("%s: the record of %s %lld at byte %llu fails its checksum; it is redone", jr->path,
                        type == REC_UNIT ? "unit" : type == REC_BLOCK ? "block" : "digest chunk", (long long)id,
                        (unsigned long long)pos);
        } else if (type == REC_BLOCK) {
            if ((st = mark_block(jr, id, pos))) break;
        } else if (type == REC_UNIT) {
            /* the last valid record of a unit names where its codes are now */
            jr->n_done += !jr->done[id];
            jr->done[id] = true;
            jr->at[id] = pos;
            jr->codes_at[id] = get_u64(buf + 8);
            memcpy(jr->codes_sum + (size_t)id * SUM_BYTES, buf + 24, SUM_BYTES);
        } else if (type == REC_LEAF && !jr->leaf_have[id]) {
            jr->leaf_have[id] = true;
            memcpy(jr->leaves + (size_t)id * 32, buf, 32);
        }
        pos += HEAD_BYTES + n + SUM_BYTES;
    }
    free(buf);
    if (st) return st;
    if (pos < size) {
        PQ_LOG_INFO("%s: %llu bytes after the last whole record (a stop while it was written) are dropped",
                    jr->path, (unsigned long long)(size - pos));
        if (ftruncate(jr->fd, (off_t)pos) < 0)
            return pq_err(PQ_ERR_IO, "%s: cannot cut the unfinished record off: %s", jr->path, strerror(errno));
    }
    jr->end = pos;
    return PQ_OK;
}

/* ---- writing ---- */

static pq_status append(pq_journal *jr, const void *buf, size_t n)
{
    int e = pq_pwrite_all(jr->fd, buf, n, jr->end);
    if (e) return pq_err(PQ_ERR_IO, "%s: write failed: %s", jr->path, strerror(e));
    jr->end += n;
    jr->dirty = true;
    return PQ_OK;
}

static pq_status write_header(pq_journal *jr, const char *text)
{
    uint8_t h[16], sum[SUM_BYTES];
    size_t n = strlen(text);
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, jr->version);
    put_u32(h + 12, (uint32_t)n);
    sha256(h, sizeof h, text, n, sum);
    if (ftruncate(jr->fd, 0) < 0) return pq_err(PQ_ERR_IO, "%s: cannot truncate: %s", jr->path, strerror(errno));
    jr->end = 0;
    pq_status st = append(jr, h, sizeof h);
    if (!st) st = append(jr, text, n);
    if (!st) st = append(jr, sum, sizeof sum);
    if (!st) st = pq_journal_sync(jr);
    pq_sync_dir_of(jr->path); /* the new name too */
    return st;
}

/* fdatasync OUT.partial, then the journal: a record the journal's sync
 * makes durable names codes that the partial's sync made durable, but for
 * the records appended between the two (their codes are checked on
 * --resume like any others: one whose bytes a power cut lost is redone).
 * 0 or the errno. */
static int sync_both(pq_journal *jr)
{
    if (jr->partial_fd >= 0 && fdatasync(jr->partial_fd) < 0) return errno;
    return fdatasync(jr->fd) < 0 ? errno : 0;
}

static void *bg_sync(void *arg)
{
    pq_journal *jr = arg;
    jr->bg_err = sync_both(jr);
    __atomic_store_n(&jr->bg_done, true, __ATOMIC_RELEASE);
    return NULL;
}

/* Join the helper's sync once it has returned (wait: until it has); its
 * failure. */
static pq_status bg_join(pq_journal *jr, bool wait)
{
    if (!jr->bg_started || (!wait && !__atomic_load_n(&jr->bg_done, __ATOMIC_ACQUIRE))) return PQ_OK;
    pthread_join(jr->bg, NULL);
    jr->bg_started = false;
    if (jr->bg_err) return pq_err(PQ_ERR_IO, "%s: fdatasync failed: %s", jr->path, strerror(jr->bg_err));
    return PQ_OK;
}

/* Start an fdatasync of what is written so far on the helper thread; while
 * one is still running, nothing (the next record starts the next). */
static pq_status bg_kick(pq_journal *jr)
{
    pq_status st = bg_join(jr, false);
    if (st || jr->bg_started) return st;
    jr->bg_done = false;
    jr->bg_err = 0;
    jr->dirty = false;
    jr->synced_t = pq_now_s();
    jr->bg_started = pthread_create(&jr->bg, NULL, bg_sync, jr) == 0;
    if (!jr->bg_started) { /* no thread: this one waits */
        jr->dirty = true;
        return pq_journal_sync(jr);
    }
    return PQ_OK;
}

pq_status pq_journal_sync(pq_journal *jr)
{
    if (!jr) return PQ_OK;
    pq_status st = bg_join(jr, true);
    if (st || !jr->dirty) return st;
    int e = sync_both(jr);
    if (e) return pq_err(PQ_ERR_IO, "%s: fdatasync failed: %s", jr->path, strerror(e));
    jr->dirty = false;
    jr->synced_t = pq_now_s();
    return PQ_OK;
}

static pq_status add_record(pq_journal *jr, uint32_t type, int64_t id, const pq_result_part *parts, int n_parts,
                            const void *lead, size_t lead_bytes)
{
    uint8_t head[HEAD_BYTES] = {0}, sum[SUM_BYTES];
    uint64_t n = lead_bytes;
    for (int i = 0; i < n_parts; i++) n += parts[i].bytes;
    put_u32(head, REC_MAGIC);
    put_u32(head + 4, type);
    put_u64(head + 8, (uint64_t)id);
    put_u64(head + 16, n);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int len = 0;
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, head, HEAD_BYTES) &&
              EVP_DigestUpdate(c, lead, lead_bytes);
    for (int i = 0; i < n_parts && ok; i++)
        if (parts[i].bytes) ok = EVP_DigestUpdate(c, *parts[i].data, parts[i].bytes);
    ok = ok && EVP_DigestFinal_ex(c, sum, &len);
    EVP_MD_CTX_free(c);
    if (!ok) return pq_err(PQ_ERR_INTERNAL, "%s: SHA-256 failed", jr->path);
    uint64_t start = jr->end;
    pq_status st = append(jr, head, HEAD_BYTES);
    if (!st) st = append(jr, lead, lead_bytes);
    for (int i = 0; i < n_parts && !st; i++)
        if (parts[i].bytes) {
            st = append(jr, *parts[i].data, parts[i].bytes);
            /* a stop in the middle of a record (tests): the next --resume
             * finds it cut */
            if (!st && i == 0 && type != REC_LEAF && pq_fault_at(PQ_FAULT_KILL_JOURNAL, id)) raise(SIGKILL);
        }
    if (!st) st = append(jr, sum, SUM_BYTES);
    if (st) {
        /* never leave half a record for the next one to follow */
        if (ftruncate(jr->fd, (off_t)start) == 0) jr->end = start;
        return st;
    }
    if (pq_now_s() - jr->synced_t >= SYNC_EVERY_S) st = bg_kick(jr);
    return st;
}

pq_status pq_journal_codes_sum(const pq_journal *jr, const void *codes, size_t n, uint8_t sum[32])
{
    return pq_digest(jr->codes_alg, codes, n, sum);
}

/* The result's parts but the codes (those after parts[0]). */
static void small_parts(const pq_plan *p, const pq_unit *u, pq_unit_result *r, pq_unit_layout *l,
                        pq_result_part parts[PQ_RESULT_PARTS])
{
    pq_unit_layout_of(p, u, l);
    pq_unit_result_parts(r, l, parts);
}

pq_status pq_journal_add_unit(pq_journal *jr, const pq_plan *p, const pq_unit *u, const pq_unit_result *r,
                              uint64_t codes_at, const uint8_t codes_sum[32])
{
    pq_unit_layout l;
    pq_result_part parts[PQ_RESULT_PARTS];
    small_parts(p, u, (pq_unit_result *)r, &l, parts);
    uint8_t lead[UNIT_LEAD];
    put_u64(lead, (uint64_t)r->n_nonfinite);
    put_u64(lead + 8, codes_at);
    put_u64(lead + 16, (uint64_t)l.codes);
    memcpy(lead + 24, codes_sum, SUM_BYTES);
    pq_status st = add_record(jr, REC_UNIT, u->id, parts + 1, PQ_RESULT_PARTS - 1, lead, sizeof lead);
    if (!st) {
        jr->n_done += !jr->done[u->id];
        jr->done[u->id] = true;
        jr->at[u->id] = jr->end; /* only its presence matters from now on */
    }
    return st;
}

pq_status pq_journal_leaf(pq_journal *jr, int64_t chunk, const uint8_t leaf[32])
{
    if (chunk < 0 || chunk >= jr->n_hash) return pq_err(PQ_ERR_INTERNAL, "digest chunk %lld out of range",
                                                        (long long)chunk);
    if (jr->leaf_have[chunk]) {
        if (memcmp(jr->leaves + (size_t)chunk * 32, leaf, 32))
            return pq_err(PQ_ERR_CONFIG, "the checkpoint changed since %s was written: the hash of its source "
                          "digest chunk %lld differs; remove the journal to start again", jr->path,
                          (long long)chunk);
        return PQ_OK;
    }
    memcpy(jr->leaves + (size_t)chunk * 32, leaf, 32);
    jr->leaf_have[chunk] = true;
    return add_record(jr, REC_LEAF, chunk, NULL, 0, leaf, 32);
}

/* The codes of unit u (l.codes bytes at at) read from the stopped run's
 * OUT.partial into codes; whether they match sum. */
static pq_status old_codes(pq_journal *jr, const pq_unit_layout *l, uint64_t at, const uint8_t *sum, void *codes,
                           bool *ok)
{
    uint8_t got[SUM_BYTES];
    size_t have = 0;
    *ok = false;
    if (jr->old_fd < 0) return PQ_OK;
    while (have < l->codes) {
        ssize_t r = pread(jr->old_fd, (char *)codes + have, l->codes - have, (off_t)(at + have));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return pq_err(PQ_ERR_IO, "%s: reading the stopped run's OUT.partial failed: %s", jr->path,
                                 strerror(errno));
        if (r == 0) return PQ_OK; /* beyond its end */
        have += (size_t)r;
    }
    pq_status st = pq_digest(jr->codes_alg, codes, l->codes, got);
    *ok = !st && !memcmp(got, sum, SUM_BYTES);
    return st;
}

pq_status pq_journal_read_unit(pq_journal *jr, const pq_plan *p, const pq_unit *u, pq_unit_result *r,
                               uint64_t *codes_at)
{
    pq_unit_layout l;
    pq_result_part parts[PQ_RESULT_PARTS];
    uint8_t head[HEAD_BYTES], sum[SUM_BYTES], want[SUM_BYTES], lead[UNIT_LEAD];
    bool cut = false, codes_ok = false;
    pq_unit_layout_of(p, u, &l);
    pq_status st = pq_unit_result_alloc(r, u, &l, true);
    if (st) return st;
    small_parts(p, u, r, &l, parts);
    uint64_t pos = jr->at[u->id];
    if (!(st = read_at(jr, head, HEAD_BYTES, pos, &cut)) && !cut)
        st = read_at(jr, lead, UNIT_LEAD, pos + HEAD_BYTES, &cut);
    uint64_t off = pos + HEAD_BYTES + UNIT_LEAD;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int len = 0;
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, head, HEAD_BYTES) &&
              EVP_DigestUpdate(c, lead, UNIT_LEAD);
    for (int i = 1; i < PQ_RESULT_PARTS && !st && !cut && ok; i++) {
        if (!parts[i].bytes) continue;
        st = read_at(jr, *parts[i].data, parts[i].bytes, off, &cut);
        ok = EVP_DigestUpdate(c, *parts[i].data, parts[i].bytes);
        off += parts[i].bytes;
    }
    if (!st && !cut) st = read_at(jr, sum, SUM_BYTES, off, &cut);
    ok = ok && EVP_DigestFinal_ex(c, want, &len);
    EVP_MD_CTX_free(c);
    if (!st && !cut && ok && get_u64(lead + 16) == l.codes)
        st = old_codes(jr, &l, get_u64(lead + 8), lead + 24, r->codes, &codes_ok);
    if (!st && (cut || !ok || memcmp(sum, want, SUM_BYTES) || get_u64(head + 8) != (uint64_t)u->id || !codes_ok))
        st = pq_err(PQ_ERR_FORMAT, "%s: the record of unit %d (or its codes in the stopped run's OUT.partial) "
                    "changed since it was checked; run --resume again", jr->path, u->id);
    r->n_nonfinite = (int64_t)get_u64(lead);
    if (codes_at) *codes_at = get_u64(lead + 8);
    if (st) pq_unit_result_free(r);
    return st;
}

pq_status pq_journal_take_partial(pq_journal *jr, const pq_plan *p, const char *partial)
{
    pq_status st = PQ_OK;
    void *buf = NULL;
    size_t cap = 0;
    int dropped = 0;
    if (!jr->n_done || !p) return PQ_OK;
    jr->old_fd = open(partial, O_RDONLY | O_CLOEXEC);
    if (jr->old_fd < 0 && errno != ENOENT)
        return pq_err(PQ_ERR_IO, "%s: cannot open to reuse its codes: %s", partial, strerror(errno));
    for (int i = 0; i < p->n_units && !st; i++) {
        if (!jr->done[i]) continue;
        pq_unit_layout l;
        bool ok = false;
        pq_unit_layout_of(p, &p->units[i], &l);
        if (l.codes > cap) {
            free(buf);
            cap = l.codes;
            if (!(buf = malloc(cap))) {
                cap = 0;
                st = pq_err(PQ_ERR_RESOURCE, "out of memory checking %s", partial);
                break;
            }
        }
        if ((st = old_codes(jr, &l, jr->codes_at[i], jr->codes_sum + (size_t)i * SUM_BYTES, buf, &ok))) break;
        if (ok) continue;
        jr->done[i] = false;
        jr->n_done--;
        jr->n_bad++;
        if (jr->old_fd >= 0 && dropped++ < 8)
            PQ_LOG_WARN("%s: the codes of unit %d no longer match their checksum in %s; it is redone", jr->path,
                        i, partial);
    }
    free(buf);
    if (st) return st;
    if (jr->old_fd < 0)
        PQ_LOG_WARN("%s is missing: the %d units %s records are redone", partial, jr->n_bad, jr->path);
    else if (dropped > 8)
        PQ_LOG_WARN("%s: %d units in all are redone", partial, dropped);
    /* the file stays open for pq_journal_read_unit; the run creates a new
     * OUT.partial under the name */
    if (jr->old_fd >= 0 && unlink(partial) < 0)
        return pq_err(PQ_ERR_IO, "%s: cannot remove to start it again: %s", partial, strerror(errno));
    return PQ_OK;
}

pq_status pq_journal_watch_partial(pq_journal *jr, const char *partial)
{
    if (jr->partial_fd >= 0) close(jr->partial_fd);
    if ((jr->partial_fd = open(partial, O_RDONLY | O_CLOEXEC)) < 0)
        return pq_err(PQ_ERR_IO, "%s: cannot open to sync it with %s: %s", partial, jr->path, strerror(errno));
    return PQ_OK;
}

pq_status pq_journal_add_block(pq_journal *jr, int64_t id, const void *data, size_t n)
{
    if (!block_id_ok(jr, id)) return pq_err(PQ_ERR_INTERNAL, "block %lld out of range", (long long)id);
    /* two halves: a test stop between them leaves a cut record */
    void *a = (void *)data, *b = (char *)data + n / 2;
    pq_result_part parts[2] = {{.data = &a, .bytes = n / 2}, {.data = &b, .bytes = n - n / 2}};
    uint64_t start = jr->end;
    pq_status st = add_record(jr, REC_BLOCK, id, parts, 2, NULL, 0);
    return st ? st : mark_block(jr, id, start);
}

pq_status pq_journal_read_block(pq_journal *jr, int64_t id, void **data, size_t *n)
{
    uint8_t head[HEAD_BYTES], sum[SUM_BYTES], want[SUM_BYTES];
    bool cut = false;
    *data = NULL;
    *n = 0;
    if (id < 0 || id >= jr->n_units || !jr->done[id])
        return pq_err(PQ_ERR_INTERNAL, "block %lld is not in %s", (long long)id, jr->path);
    uint64_t pos = jr->at[id];
    pq_status st = read_at(jr, head, HEAD_BYTES, pos, &cut);
    uint64_t len = cut ? 0 : get_u64(head + 16);
    uint8_t *buf = NULL;
    if (!st && !cut && !(buf = malloc(len ? len : 1))) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st && !cut) st = read_at(jr, buf, len, pos + HEAD_BYTES, &cut);
    if (!st && !cut) st = read_at(jr, sum, SUM_BYTES, pos + HEAD_BYTES + len, &cut);
    if (!st && !cut) sha256(head, HEAD_BYTES, buf, len, want);
    if (!st && (cut || memcmp(sum, want, SUM_BYTES) || get_u32(head + 4) != REC_BLOCK ||
                get_u64(head + 8) != (uint64_t)id))
        st = pq_err(PQ_ERR_FORMAT, "%s: the record of block %lld changed since it was checked; run --resume again",
                    jr->path, (long long)id);
    if (st) {
        free(buf);
        return st;
    }
    *data = buf;
    *n = (size_t)len;
    return PQ_OK;
}

pq_status pq_journal_each_block(pq_journal *jr, pq_journal_block_fn fn, void *user)
{
    pq_status st = PQ_OK;
    for (int64_t id = 0; id < jr->n_units && !st; id++) {
        void *data = NULL;
        size_t n = 0;
        if (!jr->done[id])
            return pq_err(PQ_ERR_INTERNAL, "%s holds no block %lld of %d", jr->path, (long long)id, jr->n_units);
        if (!(st = pq_journal_read_block(jr, id, &data, &n))) st = fn(user, id, data, n);
        free(data);
    }
    return st;
}

/* ---- open, close ---- */

static pq_status lock_file(pq_journal *jr)
{
    for (int tries = 0; tries < 8; tries++) {
        struct stat a, b;
        if ((jr->fd = open(jr->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
            return pq_err(PQ_ERR_IO, "%s: cannot open: %s", jr->path, strerror(errno));
        if (flock(jr->fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(jr->fd);
            jr->fd = -1;
            if (e == EWOULDBLOCK)
                return pq_err(PQ_ERR_IO, "%s is locked: another proteus run is writing the same --out now; "
                              "wait for it or choose another --out", jr->path);
            return pq_err(PQ_ERR_IO, "%s: cannot lock: %s", jr->path, strerror(e));
        }
        /* the holder before us may have removed the file it locked */
        if (fstat(jr->fd, &a) == 0 && stat(jr->path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return PQ_OK;
        close(jr->fd);
        jr->fd = -1;
    }
    return pq_err(PQ_ERR_IO, "%s: removed and created again while being locked; try again", jr->path);
}

/* p: a journal of units and digest leaves; NULL: of n_units blocks. */
static pq_status open_journal(const char *out, bool resume, const char *header, const pq_plan *p, int n_units,
                              int n_hash, pq_journal **jo)
{
    char path[4096];
    struct stat sb;
    pq_status st;
    char *text = NULL;
    uint64_t records = 0;
    *jo = NULL;
    if (pq_journal_name(path, sizeof path, out))
        return pq_err(PQ_ERR_CONFIG, "--out %s: the path is too long", out);
    pq_journal *jr = calloc(1, sizeof *jr);
    if (!jr) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    jr->fd = -1;
    jr->partial_fd = -1;
    jr->old_fd = -1;
    jr->version = p ? VERSION : VERSION_BLOCKS;
    jr->codes_alg = pq_digest_default();
    jr->open_ended = n_units < 0;
    jr->n_units = jr->open_ended ? 0 : n_units;
    jr->cap = jr->open_ended ? 64 : n_units + 1;
    jr->n_hash = n_hash;
    jr->synced_t = pq_now_s();
    if (!(jr->path = strdup(path)) || !(jr->done = calloc((size_t)jr->cap, sizeof *jr->done)) ||
        !(jr->at = calloc((size_t)jr->cap, sizeof *jr->at)) ||
        !(jr->leaf_have = calloc((size_t)n_hash + 1, sizeof *jr->leaf_have)) ||
        !(jr->leaves = malloc(((size_t)n_hash + 1) * 32)) ||
        !(jr->codes_at = calloc((size_t)jr->cap, sizeof *jr->codes_at)) ||
        !(jr->codes_sum = calloc((size_t)jr->cap, SUM_BYTES))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        goto fail;
    }
    if ((st = lock_file(jr))) goto fail;
    if (fstat(jr->fd, &sb) < 0) {
        st = pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((st = read_header(jr, (uint64_t)sb.st_size, &text, &records))) goto fail;
    /* without --resume, a journal of this run that holds no unit (a stop
     * before the first) is simply started again */
    if (text && !resume && !strcmp(text, header)) {
        if ((st = scan(jr, p, records, (uint64_t)sb.st_size))) goto fail;
        if (!jr->n_done) {
            free(text);
            text = NULL;
            memset(jr->leaf_have, 0, (size_t)n_hash * sizeof *jr->leaf_have);
            jr->n_bad = 0;
        }
    } else if (text && !resume && (uint64_t)sb.st_size == records) {
        free(text);
        text = NULL;
    }
    if (text && !resume) {
        st = pq_err(PQ_ERR_CONFIG, "%s exists: an earlier run of --out %s stopped before it finished; pass "
                    "--resume to go on from it, or remove it to start again", path, out);
        goto fail;
    }
    if (text && strcmp(text, header)) {
        char diff[800];
        first_difference(header, text, diff, sizeof diff);
        st = pq_err(PQ_ERR_CONFIG, "%s was written by a different run, so it cannot be resumed: %s; rerun the "
                    "command that made it, or remove it to start again", path, diff);
        goto fail;
    }
    if (text) {
        if ((st = scan(jr, p, records, (uint64_t)sb.st_size))) goto fail;
    } else if ((st = write_header(jr, header))) {
        goto fail;
    }
    free(text);
    *jo = jr;
    return PQ_OK;
fail:
    free(text);
    if (jr->fd >= 0) close(jr->fd);
    jr->fd = -1;
    pq_journal_close(jr);
    return st;
}

pq_status pq_journal_open(const char *out, bool resume, const char *header, const pq_plan *p, pq_journal **jo)
{
    return open_journal(out, resume, header, p, p->n_units, p->n_hash, jo);
}

pq_status pq_journal_open_blocks(const char *out, bool resume, const char *header, int n_blocks, pq_journal **jo)
{
    return open_journal(out, resume, header, NULL, n_blocks, 0, jo);
}

const char *pq_journal_path(const pq_journal *jr) { return jr->path; }
const bool *pq_journal_done(const pq_journal *jr) { return jr->done; }
int pq_journal_n_blocks(const pq_journal *jr) { return jr ? jr->n_units : 0; }
int pq_journal_n_done(const pq_journal *jr) { return jr ? jr->n_done : 0; }
int pq_journal_n_bad(const pq_journal *jr) { return jr->n_bad; }

static void free_journal(pq_journal *jr)
{
    bg_join(jr, true);
    if (jr->fd >= 0) close(jr->fd); /* releases the lock */
    if (jr->partial_fd >= 0) close(jr->partial_fd);
    if (jr->old_fd >= 0) close(jr->old_fd);
    free(jr->codes_at);
    free(jr->codes_sum);
    free(jr->path);
    free(jr->done);
    free(jr->at);
    free(jr->leaf_have);
    free(jr->leaves);
    free(jr);
}

void pq_journal_close(pq_journal *jr)
{
    if (!jr) return;
    if (jr->fd >= 0 && pq_journal_sync(jr))
        PQ_LOG_WARN("%s", pq_err_detail());
    free_journal(jr);
}

void pq_journal_remove(pq_journal *jr)
{
    if (!jr) return;
    if (unlink(jr->path) < 0 && errno != ENOENT) PQ_LOG_WARN("%s: cannot remove: %s", jr->path, strerror(errno));
    pq_sync_dir_of(jr->path);
    free_journal(jr);
}
