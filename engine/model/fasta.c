/* SPDX-License-Identifier: Apache-2.0 */
/* fasta.c - streaming FASTA reader over zlib's gzread (plain files pass
 * through gz untouched), split into lines here. */
#include "model/fasta.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "model/tokenizer.h"

struct pq_fasta {
    gzFile gz;
    char *path;
    pq_fasta_opts opts;
    char *line;            /* current line buffer */
    size_t line_cap;
    char buf[1 << 16];     /* bytes read from the stream, not yet split */
    size_t buf_pos, buf_len;
    bool have_pending;     /* `line` holds a header not yet consumed */
    bool eof;
    int64_t line_no;
    int64_t pending_line;  /* line number of the pending header */
    int64_t n_returned, n_skipped;
    /* residue text of the record being assembled, and where each of its
     * lines starts (to turn a character position into a line number) */
    char *seq;
    size_t seq_len, seq_cap;
    int64_t *line_starts; /* pairs (offset, line) */
    size_t n_starts, starts_cap;
};

pq_fasta_opts pq_fasta_defaults(void)
{
    pq_fasta_opts o = {.max_residues = 1022, .on_long = PQ_FASTA_CROP,
                       .unknown_to_unk = false, .skip_empty = false};
    return o;
}

void pq_fasta_record_free(pq_fasta_record *r)
{
    if (!r) return;
    free(r->id);
    free(r->desc);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

pq_status pq_fasta_open(const char *path, const pq_fasta_opts *opts, pq_fasta **out)
{
    *out = NULL;
    pq_fasta *f = calloc(1, sizeof *f);
    if (!f) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", path);
    f->opts = opts ? *opts : pq_fasta_defaults();
    f->path = strdup(path);
    f->gz = gzopen(path, "rb");
    if (!f->path || !f->gz) {
        pq_status st = pq_err(PQ_ERR_IO, "%s: cannot open: %s", path,
                              errno ? strerror(errno) : "gzopen failed");
        pq_fasta_close(f);
        return st;
    }
    gzbuffer(f->gz, 1 << 17);
    *out = f;
    return PQ_OK;
}

void pq_fasta_close(pq_fasta *f)
{
    if (!f) return;
    if (f->gz) gzclose(f->gz);
    free(f->path);
    free(f->line);
    free(f->seq);
    free(f->line_starts);
    free(f);
}

int64_t pq_fasta_n_skipped(const pq_fasta *f) { return f->n_skipped; }

/* Refill f->buf from the stream; *n = 0 at end of file. A gzip stream that
 * ends early (Z_BUF_ERROR: "unexpected end of file") is an error, not the
 * end of the data. */
static pq_status fill(pq_fasta *f, size_t *n)
{
    int got = gzread(f->gz, f->buf, (unsigned)sizeof f->buf);
    int zerr = Z_OK;
    const char *msg = got < (int)sizeof f->buf ? gzerror(f->gz, &zerr) : "";
    if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
        return pq_err(zerr == Z_ERRNO ? PQ_ERR_IO : PQ_ERR_FORMAT, "%s: read error near line %lld: %s%s", f->path,
                      (long long)f->line_no + 1, msg, zerr == Z_BUF_ERROR ? " (truncated gzip file)" : "");
    f->buf_pos = 0;
    f->buf_len = (size_t)got;
    *n = (size_t)got;
    return PQ_OK;
}

/* One line without its LF and trailing CRs into f->line; false at end of
 * file. A NUL byte is refused: no text file has one, and a binary file given
 * as FASTA must not be read as residues. */
static pq_status read_line(pq_fasta *f, bool *got)
{
    size_t len = 0;
    bool any = false;
    pq_status st;
    *got = false;
    if (f->eof) return PQ_OK;
    for (;;) {
        if (f->buf_pos == f->buf_len) {
            size_t n = 0;
            if ((st = fill(f, &n)) != PQ_OK) return st;
            if (n == 0) {
                f->eof = true;
                if (!any) return PQ_OK;
                break;
            }
        }
        any = true;
        const char *p = f->buf + f->buf_pos;
        size_t avail = f->buf_len - f->buf_pos;
        const char *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        if (memchr(p, '\0', take))
            return pq_err(PQ_ERR_FORMAT, "%s: line %lld: NUL byte: not a text FASTA file", f->path,
                          (long long)f->line_no + 1);
        if (f->line_cap - len < take + 1) {
            size_t nc = f->line_cap ? f->line_cap : 4096;
            while (nc - len < take + 1) nc *= 2;
            char *q = realloc(f->line, nc);
            if (!q) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory reading line %lld", f->path,
                                  (long long)f->line_no + 1);
            f->line = q;
            f->line_cap = nc;
        }
        memcpy(f->line + len, p, take);
        len += take;
        f->buf_pos += take + (nl ? 1 : 0);
        if (nl) break;
    }
    while (len > 0 && f->line[len - 1] == '\r') len--;
    f->line[len] = '\0';
    f->line_no++;
    *got = true;
    return PQ_OK;
}

static pq_status seq_append(pq_fasta *f, const char *s)
{
    size_t add = strlen(s);
    if (f->seq_cap < f->seq_len + add + 1) {
        size_t nc = f->seq_cap ? f->seq_cap : 4096;
        while (nc < f->seq_len + add + 1) nc *= 2;
        char *p = realloc(f->seq, nc);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", f->path);
        f->seq = p;
        f->seq_cap = nc;
    }
    if (f->n_starts == f->starts_cap) {
        size_t nc = f->starts_cap ? f->starts_cap * 2 : 64;
        int64_t *p = realloc(f->line_starts, nc * 2 * sizeof *p);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", f->path);
        f->line_starts = p;
        f->starts_cap = nc;
    }
    f->line_starts[2 * f->n_starts] = (int64_t)f->seq_len;
    f->line_starts[2 * f->n_starts + 1] = f->line_no;
    f->n_starts++;
    for (size_t i = 0; i < add; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r') continue; /* formatting, not residues */
        f->seq[f->seq_len++] = c;
    }
    f->seq[f->seq_len] = '\0';
    return PQ_OK;
}

/* Line and column of residue-text offset `pos`. */
static void locate(const pq_fasta *f, size_t pos, int64_t *line, int64_t *col)
{
    size_t k = 0;
    while (k + 1 < f->n_starts && (size_t)f->line_starts[2 * (k + 1)] <= pos) k++;
    *line = f->n_starts ? f->line_starts[2 * k + 1] : f->line_no;
    *col = (int64_t)(pos - (f->n_starts ? (size_t)f->line_starts[2 * k] : 0)) + 1;
}

/* Position (0-based residue-text offset) of the first character the
 * tokenizer rejects, or -1. */
static int64_t first_bad(const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '*') n--;
    for (size_t i = 0; i < n;) {
        int id, l = pq_tok_special_at(s + i, n - i, &id);
        if (l) { i += (size_t)l; continue; }
        if (pq_tok_char_id(s[i]) < 0) return (int64_t)i;
        i++;
    }
    return -1;
}

pq_status pq_fasta_next(pq_fasta *f, pq_fasta_record *rec, bool *got)
{
    pq_status st;
    bool ok;
    memset(rec, 0, sizeof *rec);
    *got = false;
    for (;;) {
        /* find the next header */
        while (!f->have_pending) {
            if ((st = read_line(f, &ok)) != PQ_OK) return st;
            if (!ok) return PQ_OK;
            const char *p = f->line;
            while (*p == ' ' || *p == '\t') p++;
            if (*p == '\0') continue;
            if (*p == '>') {
                f->have_pending = true;
                f->pending_line = f->line_no;
                break;
            }
            return pq_err(PQ_ERR_FORMAT, "%s: line %lld: sequence data before the first '>' header",
                          f->path, (long long)f->line_no);
        }
        /* header: id = first word, desc = rest */
        char *h = f->line + 1;
        while (*h == ' ' || *h == '\t') h++;
        size_t idl = strcspn(h, " \t");
        char *d = h + idl;
        while (*d == ' ' || *d == '\t') d++;
        char *id = strndup(h, idl), *desc = strdup(d);
        int64_t hline = f->pending_line;
        f->have_pending = false;
        f->seq_len = 0;
        f->n_starts = 0;
        if (!id || !desc) {
            free(id);
            free(desc);
            return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", f->path);
        }
        if (idl == 0) {
            free(id);
            id = NULL;
            char buf[32];
            snprintf(buf, sizeof buf, "line%lld", (long long)hline);
            id = strdup(buf);
        }
        /* sequence lines up to the next header */
        for (;;) {
            if ((st = read_line(f, &ok)) != PQ_OK) goto fail;
            if (!ok) break;
            if (f->line[0] == '>') {
                f->have_pending = true;
                f->pending_line = f->line_no;
                break;
            }
            if ((st = seq_append(f, f->line)) != PQ_OK) goto fail;
        }
        int64_t bad = f->opts.unknown_to_unk ? -1 : first_bad(f->seq, f->seq_len);
        if (bad >= 0) {
            int64_t ln, col;
            locate(f, (size_t)bad, &ln, &col);
            unsigned char c = (unsigned char)f->seq[bad];
            if (c >= 0x21 && c < 0x7f)
                st = pq_err(PQ_ERR_FORMAT, "%s: record '%s' line %lld column %lld: unknown residue '%c'",
                            f->path, id, (long long)ln, (long long)col, c);
            else
                st = pq_err(PQ_ERR_FORMAT, "%s: record '%s' line %lld column %lld: unknown residue byte 0x%02x",
                            f->path, id, (long long)ln, (long long)col, c);
            goto fail;
        }
        size_t n = f->seq_len;
        if (n > 0 && f->seq[n - 1] == '*') n--;
        if (n == 0) {
            if (f->opts.skip_empty) {
                f->n_skipped++;
                free(id);
                free(desc);
                continue;
            }
            st = pq_err(PQ_ERR_FORMAT, "%s: record '%s' (line %lld) has no residues", f->path, id,
                        (long long)hline);
            goto fail;
        }
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        st = pq_tok_encode(f->seq, n, id, f->opts.unknown_to_unk ? PQ_TOK_UNKNOWN_TO_UNK : 0, &ids,
                           &n_ids);
        if (st != PQ_OK) {
            pq_err_replace(st, "%s: record '%s' (line %lld): %s", f->path, id, (long long)hline,
                           pq_err_detail());
            goto fail;
        }
        int64_t n_res = n_ids - 2, maxr = f->opts.max_residues;
        if (maxr > 0 && n_res > maxr) {
            if (f->opts.on_long == PQ_FASTA_SKIP) {
                f->n_skipped++;
                free(ids);
                free(id);
                free(desc);
                continue;
            }
            if (f->opts.on_long == PQ_FASTA_ERROR) {
                free(ids);
                st = pq_err(PQ_ERR_FORMAT, "%s: record '%s' (line %lld) has %lld residues, more than the limit %lld",
                            f->path, id, (long long)hline, (long long)n_res, (long long)maxr);
                goto fail;
            }
            ids[maxr + 1] = PQ_TOK_EOS;
            n_ids = maxr + 2;
        }
        *rec = (pq_fasta_record){.id = id, .desc = desc, .ids = ids, .n_ids = n_ids, .n_residues_orig = n_res,
                                 .line = hline, .index = f->n_returned++};
        *got = true;
        return PQ_OK;
    fail:
        free(id);
        free(desc);
        return st;
    }
}

pq_status pq_fasta_read_all(const char *path, const pq_fasta_opts *opts, int64_t max_records,
                            pq_fasta_record **recs, int64_t *n)
{
    *recs = NULL;
    *n = 0;
    pq_fasta *f = NULL;
    pq_fasta_record *arr = NULL;
    int64_t cnt = 0, cap = 0;
    pq_status st = pq_fasta_open(path, opts, &f);
    if (st != PQ_OK) return st;
    for (;;) {
        if (max_records > 0 && cnt >= max_records) break;
        pq_fasta_record r;
        bool got;
        if ((st = pq_fasta_next(f, &r, &got)) != PQ_OK) goto fail;
        if (!got) break;
        if (cnt == cap) {
            int64_t nc = cap ? cap * 2 : 64;
            pq_fasta_record *p = realloc(arr, (size_t)nc * sizeof *p);
            if (!p) {
                pq_fasta_record_free(&r);
                st = pq_err(PQ_ERR_RESOURCE, "%s: out of memory for %lld records", path, (long long)nc);
                goto fail;
            }
            arr = p;
            cap = nc;
        }
        arr[cnt++] = r;
    }
    if (cnt == 0) {
        st = pq_err(PQ_ERR_FORMAT, "%s: no usable FASTA record (%lld skipped)", path,
                    (long long)f->n_skipped);
        goto fail;
    }
    pq_fasta_close(f);
    *recs = arr;
    *n = cnt;
    return PQ_OK;
fail:
    for (int64_t i = 0; i < cnt; i++) pq_fasta_record_free(&arr[i]);
    free(arr);
    pq_fasta_close(f);
    return st;
}
