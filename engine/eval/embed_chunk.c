/* SPDX-License-Identifier: Apache-2.0 */
/* embed_chunk.c - a chunk's embeddings as bytes, and the file from them. */
#include "eval/embed_chunk.h"

#include <stdlib.h>
#include <string.h>

#include "eval/embed_h5.h"
#include "eval/eval_metrics.h"
#include "model/batch.h"

/* The records of one forward batch into out. */
static pq_status encode(const pq_fasta_record *recs, const pq_packed *pk, int64_t np, const pq_esm2_outputs *o,
                        const pq_embed_want *w, int64_t D, float *mean, pq_buf *out)
{
    pq_status st = PQ_OK;
    for (int64_t s = 0; s < np && st == PQ_OK; s++) {
        int64_t t0 = pk->offsets[s], T = pk->offsets[s + 1] - t0, n_res = T - 2;
        if ((st = pq_buf_put_str(out, recs[s].id)) || (st = pq_buf_put_i64(out, n_res))) break;
        for (int i = 0; i < w->n_layers && st == PQ_OK; i++) {
            const float *rows = o->repr[i] + t0 * D;
            pq_eval_mean_pool(rows, T, D, mean);
            st = pq_buf_put(out, mean, (size_t)D * sizeof *mean);
            if (st == PQ_OK && w->bos) st = pq_buf_put(out, rows, (size_t)D * sizeof *rows);
            if (st == PQ_OK && w->per_tok) st = pq_buf_put(out, rows + D, (size_t)(n_res * D) * sizeof *rows);
        }
        if (st == PQ_OK && w->contacts)
            st = pq_buf_put(out, o->contacts + o->contact_off[s], (size_t)(n_res * n_res) * sizeof(float));
    }
    return st;
}

typedef struct enc_ctx {
    const pq_fasta_record *recs;
    const pq_embed_want *w;
    int64_t D;
    float *mean;
    pq_buf *out;
} enc_ctx;

static pq_status encode_cb(void *user, const pq_packed *pk, int64_t np, const pq_esm2_outputs *o)
{
    enc_ctx *c = user;
    return encode(c->recs + pk->first, pk, np, o, c->w, c->D, c->mean, c->out);
}

pq_status pq_embed_chunk_run(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n,
                             const pq_embed_want *w, pq_buf *out)
{
    int64_t D = pq_esm2_model_config(m)->embed_dim;
    enc_ctx c = {.recs = recs, .w = w, .D = D, .mean = malloc((size_t)D * sizeof(float)), .out = out};
    if (!c.mean) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_eval_embed_batches(m, recs, n, w->layers, w->n_layers, w->contacts, w->batch_tokens,
                                         encode_cb, &c);
    free(c.mean);
    return st;
}

typedef struct seq_list {
    pq_fasta_record *recs; /* id and n_ids only */
    int64_t n, cap, residues, contact_cells;
} seq_list;

static void list_free(seq_list *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->recs[i].id);
    free(l->recs);
}

/* Skip one record's arrays; its id and n_res into l. */
static pq_status scan_record(pq_cursor *c, const pq_embed_want *w, int64_t D, seq_list *l)
{
    char *id = pq_cursor_str(c);
    int64_t n_res = pq_cursor_i64(c);
    if (!id || n_res < 0) {
        free(id);
        return pq_err(PQ_ERR_FORMAT, "a journal chunk is not an embedding record");
    }
    int64_t per_layer = D * (1 + (w->bos ? 1 : 0)) + (w->per_tok ? n_res * D : 0);
    pq_cursor_take(c, (size_t)(w->n_layers * per_layer + (w->contacts ? n_res * n_res : 0)) * sizeof(float));
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 1024;
        pq_fasta_record *r = realloc(l->recs, (size_t)cap * sizeof *r);
        if (!r) {
            free(id);
            return pq_err(PQ_ERR_RESOURCE, "out of memory for the sequence ids");
        }
        l->recs = r;
        l->cap = cap;
    }
    l->recs[l->n++] = (pq_fasta_record){.id = id, .n_ids = n_res + 2, .index = l->n};
    l->residues += n_res;
    l->contact_cells += n_res * n_res;
    return c->bad ? pq_err(PQ_ERR_FORMAT, "a journal chunk ends inside a record") : PQ_OK;
}

/* The journal's second pass: every record's arrays into the file. */
typedef struct write_ctx {
    pq_embed_h5 *h;
    const pq_embed_want *w;
    int64_t D, seq, cell;
} write_ctx;

static pq_status write_chunk(void *user, int64_t id, const void *data, size_t n)
{
    write_ctx *x = user;
    const pq_embed_want *w = x->w;
    int64_t D = x->D;
    pq_cursor c = {data, n, false};
    pq_status st = PQ_OK;
    (void)id;
    while (st == PQ_OK && c.left) {
        free(pq_cursor_str(&c));
        int64_t n_res = pq_cursor_i64(&c);
        for (int i = 0; i < w->n_layers && st == PQ_OK && !c.bad; i++) {
            const float *mean = pq_cursor_take(&c, (size_t)D * sizeof(float));
            const float *bos = w->bos ? pq_cursor_take(&c, (size_t)D * sizeof(float)) : NULL;
            const float *rows = w->per_tok ? pq_cursor_take(&c, (size_t)(n_res * D) * sizeof(float)) : NULL;
            if (c.bad) break;
            st = pq_embed_h5_sink(x->h, x->seq, i, mean, rows, n_res, D);
            if (st == PQ_OK && bos) st = pq_embed_h5_extra_write(x->h, i, x->seq, 1, bos);
        }
        if (st == PQ_OK && w->contacts && !c.bad) {
            const float *map = pq_cursor_take(&c, (size_t)(n_res * n_res) * sizeof(float));
            if (map) st = pq_embed_h5_extra_write(x->h, w->n_layers, x->cell, n_res * n_res, map);
            x->cell += n_res * n_res;
        }
        if (c.bad) st = pq_err(PQ_ERR_FORMAT, "a journal chunk ends inside a record");
        x->seq++;
    }
    return st;
}

/* The journal's first pass: the ids and lengths. */
typedef struct scan_ctx {
    const pq_embed_want *w;
    int64_t D;
    seq_list *l;
} scan_ctx;

static pq_status scan_chunk(void *user, int64_t id, const void *data, size_t n)
{
    scan_ctx *x = user;
    pq_cursor c = {data, n, false};
    pq_status st = PQ_OK;
    (void)id;
    while (st == PQ_OK && c.left) st = scan_record(&c, x->w, x->D, x->l);
    return st;
}

pq_status pq_embed_chunk_assemble(pq_journal *j, const char *out, const pq_esm2_config *cfg,
                                  const pq_embed_want *w, int64_t *n_seq, int64_t *n_res)
{
    int64_t D = cfg->embed_dim;
    seq_list l = {0};
    pq_embed_h5 *h = NULL;
    scan_ctx sx = {.w = w, .D = D, .l = &l};
    pq_status st = pq_journal_each_block(j, scan_chunk, &sx);
    if (st == PQ_OK)
        st = pq_embed_h5_create(out, l.recs, l.n, w->layers, w->n_layers, cfg, w->per_tok, &h);
    for (int i = 0; i < w->n_layers && st == PQ_OK && w->bos; i++)
        st = pq_embed_h5_extra(h, i, "bos", w->layers[i], l.n, D);
    if (st == PQ_OK && w->contacts) {
        int64_t *off = malloc((size_t)(l.n + 1) * sizeof *off);
        if (!off) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        for (int64_t i = 0; st == PQ_OK && i <= l.n; i++)
            off[i] = i ? off[i - 1] + (l.recs[i - 1].n_ids - 2) * (l.recs[i - 1].n_ids - 2) : 0;
        if (st == PQ_OK) st = pq_embed_h5_contacts(h, w->n_layers, off, l.n);
        free(off);
    }
    write_ctx wx = {.h = h, .w = w, .D = D};
    if (st == PQ_OK) st = pq_journal_each_block(j, write_chunk, &wx);
    if (st == PQ_OK) st = pq_embed_h5_finish(h);
    *n_seq = l.n;
    *n_res = l.residues;
    pq_embed_h5_destroy(h);
    list_free(&l);
    return st;
}
