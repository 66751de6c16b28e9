/* SPDX-License-Identifier: Apache-2.0 */
/* calib_journal.c - calibrate's journal blocks (calib_journal.h).
 *
 * Image: u64 sequences, then per site: f32 min, f32 max, u64 count, n_nan,
 * n_posinf, n_neginf, n_tokens, f32 chan_absmax[dim], u8 present[512]
 * (histogram block b allocated), then the present blocks' u64[256] in
 * order. Numbers in the host's byte order (little-endian on every platform
 * Proteus builds for). */
#include "calib/calib_journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/calib_h5.h"
#include "pq_config.h"

enum { SITE_FIXED = 2 * 4 + 5 * 8 + PQ_HIST_NBLOCKS };

static size_t site_bytes(const pq_calib_site *s)
{
    size_t n = SITE_FIXED + (size_t)s->dim * 4;
    for (int b = 0; b < PQ_HIST_NBLOCKS; b++)
        if (s->blocks[b]) n += PQ_HIST_BLOCK * 8;
    return n;
}

pq_status pq_calib_image(pq_calib *c, uint8_t **buf, size_t *n)
{
    *buf = NULL;
    *n = 0;
    pq_status st = pq_calib_flush(c);
    if (st) return st;
    size_t total = 8;
    for (int i = 0; i < c->n_sites; i++) total += site_bytes(&c->sites[i]);
    uint8_t *p = malloc(total);
    if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory for a %zu-byte statistics image", total);
    uint8_t *w = p;
    memcpy(w, &c->n_sequences, 8);
    w += 8;
    for (int i = 0; i < c->n_sites; i++) {
        const pq_calib_site *s = &c->sites[i];
        float mm[2] = {s->min == 0.0f ? 0.0f : s->min, s->max == 0.0f ? 0.0f : s->max};
        uint64_t cnt[5] = {s->count, s->n_nan, s->n_posinf, s->n_neginf, s->n_tokens};
        memcpy(w, mm, sizeof mm);
        w += sizeof mm;
        memcpy(w, cnt, sizeof cnt);
        w += sizeof cnt;
        memcpy(w, s->chan_absmax, (size_t)s->dim * 4);
        w += (size_t)s->dim * 4;
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) *w++ = s->blocks[b] != NULL;
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++)
            if (s->blocks[b]) {
                memcpy(w, s->blocks[b], PQ_HIST_BLOCK * 8);
                w += PQ_HIST_BLOCK * 8;
            }
    }
    *buf = p;
    *n = total;
    return PQ_OK;
}

pq_status pq_calib_merge_image(pq_calib *dst, const uint8_t *buf, size_t n, const char *what)
{
    pq_calib *src = NULL;
    pq_status st = pq_calib_create(dst->num_layers, dst->embed_dim, dst->ffn_dim, &src);
    if (st) return st;
    const uint8_t *r = buf, *end = buf + n;
    if (n < 8) goto bad;
    memcpy(&src->n_sequences, r, 8);
    r += 8;
    for (int i = 0; i < src->n_sites; i++) {
        pq_calib_site *s = &src->sites[i];
        if ((size_t)(end - r) < SITE_FIXED + (size_t)s->dim * 4) goto bad;
        float mm[2];
        uint64_t cnt[5];
        memcpy(mm, r, sizeof mm);
        r += sizeof mm;
        memcpy(cnt, r, sizeof cnt);
        r += sizeof cnt;
        s->min = mm[0];
        s->max = mm[1];
        s->count = cnt[0];
        s->n_nan = cnt[1];
        s->n_posinf = cnt[2];
        s->n_neginf = cnt[3];
        s->n_tokens = cnt[4];
        memcpy(s->chan_absmax, r, (size_t)s->dim * 4);
        r += (size_t)s->dim * 4;
        const uint8_t *present = r;
        r += PQ_HIST_NBLOCKS;
        for (int b = 0; b < PQ_HIST_NBLOCKS; b++) {
            if (present[b] > 1) goto bad;
            if (!present[b]) continue;
            if ((size_t)(end - r) < PQ_HIST_BLOCK * 8) goto bad;
            if (!(s->blocks[b] = malloc(PQ_HIST_BLOCK * 8))) {
                st = pq_err(PQ_ERR_RESOURCE, "out of memory reading %s", what);
                goto done;
            }
            memcpy(s->blocks[b], r, PQ_HIST_BLOCK * 8);
            r += PQ_HIST_BLOCK * 8;
        }
    }
    if (r != end) goto bad;
    st = pq_calib_merge(dst, src);
    goto done;
bad:
    st = pq_err(PQ_ERR_FORMAT, "%s: %zu bytes are not the statistics of this model's %d sites", what, n,
                dst->n_sites);
done:
    pq_calib_free(src);
    return st;
}

void pq_calib_zero_sign(pq_calib *c)
{
    for (int i = 0; i < c->n_sites; i++) {
        pq_calib_site *s = &c->sites[i];
        if (s->min == 0.0f) s->min = 0.0f;
        if (s->max == 0.0f) s->max = 0.0f;
    }
}

char *pq_calib_journal_header(const char *model_sha256, const pq_calib *c, const char *data_sha256,
                              int64_t max_seqs, int64_t max_length, const char *kernels, int64_t n_records,
                              int64_t n_skipped, int64_t block_seqs, const char *extra)
{
    char *s = NULL;
    if (asprintf(&s, "kind calibrate\nproteus " PQ_VERSION "\nformat %d\nmodel sha256:%s\n"
                 "architecture %d layers, embed %d, ffn %d\ndata sha256:%s\nmax_seqs %lld\nmax_length %lld\n"
                 "kernels %s\nrecords %lld usable, %lld skipped\nblock_seqs %lld\n%s", PQ_CALIB_FORMAT_VERSION,
                 model_sha256, c->num_layers, c->embed_dim, c->ffn_dim, data_sha256, (long long)max_seqs,
                 (long long)max_length, kernels ? kernels : "best", (long long)n_records, (long long)n_skipped,
                 (long long)block_seqs, extra ? extra : "") < 0)
        return NULL;
    return s;
}
