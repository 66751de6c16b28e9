/* SPDX-License-Identifier: Apache-2.0 */
/* embed.c - the embedding loop. */
#include "eval/embed.h"

#include <stdlib.h>
#include <string.h>

#include "eval/eval_metrics.h"
#include "model/batch.h"

pq_status pq_eval_embed_layers(const int *req, int n, int L, int *resolved)
{
    for (int i = 0; i < n; i++) {
        int li = req[i] < 0 ? L + 1 + req[i] : req[i];
        if (li < 0 || li > L)
            return pq_err(PQ_ERR_CONFIG, "--layers: layer %d is outside 0..%d (or -%d..-1) of this model", req[i],
                          L, L + 1);
        for (int j = 0; j < i; j++)
            if (resolved[j] == li) return pq_err(PQ_ERR_CONFIG, "--layers: layer %d requested twice", li);
        resolved[i] = li;
    }
    return PQ_OK;
}

/* Every sequence of one batch's outputs to the sink. */
static pq_status deliver(const pq_packed *pk, int64_t np, const pq_esm2_outputs *out, int n_layers, int64_t D,
                         float *mean, pq_eval_embed_sink sink, void *user)
{
    pq_status st = PQ_OK;
    for (int i = 0; i < n_layers && st == PQ_OK; i++)
        for (int64_t s = 0; s < np && st == PQ_OK; s++) {
            int64_t t0 = pk->offsets[s], T = pk->offsets[s + 1] - t0;
            const float *rows = out->repr[i] + t0 * D;
            pq_eval_mean_pool(rows, T, D, mean);
            st = sink(user, pk->first + s, i, mean, rows + D, T - 2, D);
        }
    return st;
}

pq_status pq_eval_embed_batches(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs, const int *layers,
                                int n_layers, bool contacts, int64_t batch_tokens, pq_eval_batch_fn fn, void *user)
{
    pq_status st = PQ_OK;
    pq_packed pk;
    memset(&pk, 0, sizeof pk);
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, batch_tokens, &pk, &np)) != PQ_OK) break;
        pq_esm2_outputs_clear(&out);
        out.n_repr = n_layers;
        out.want_contacts = contacts;
        memcpy(out.repr_layers, layers, sizeof(int) * (size_t)n_layers);
        if ((st = pq_esm2_forward(m, &pk.batch, NULL, &out)) != PQ_OK) break;
        if ((st = fn(user, &pk, np, &out)) != PQ_OK) break;
        start += np;
    }
    pq_esm2_outputs_clear(&out);
    pq_packed_free(&pk);
    return st;
}

typedef struct sink_ctx {
    const pq_eval_embed_opts *o;
    int64_t D;
    float *mean;
    pq_eval_embed_sink sink;
    void *user;
} sink_ctx;

static pq_status deliver_cb(void *user, const pq_packed *pk, int64_t np, const pq_esm2_outputs *out)
{
    sink_ctx *c = user;
    return deliver(pk, np, out, c->o->n_layers, c->D, c->mean, c->sink, c->user);
}

pq_status pq_eval_embed(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs,
                        const pq_eval_embed_opts *o, pq_eval_embed_sink sink, void *user)
{
    int64_t D = pq_esm2_model_config(m)->embed_dim;
    sink_ctx c = {.o = o, .D = D, .mean = malloc((size_t)D * sizeof(float)), .sink = sink, .user = user};
    if (!c.mean) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_status st = pq_eval_embed_batches(m, recs, n_recs, o->layers, o->n_layers, false, o->batch_tokens,
                                         deliver_cb, &c);
    free(c.mean);
    return st;
}
