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

pq_status pq_eval_embed(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs,
                        const pq_eval_embed_opts *o, pq_eval_embed_sink sink, void *user)
{
    pq_status st = PQ_OK;
    int64_t D = pq_esm2_model_config(m)->embed_dim;
    float *mean = malloc((size_t)D * sizeof *mean);
    pq_packed pk;
    memset(&pk, 0, sizeof pk);
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    if (!mean) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, o->batch_tokens, &pk, &np)) != PQ_OK) break;
        pq_esm2_outputs_clear(&out);
        out.n_repr = o->n_layers;
        memcpy(out.repr_layers, o->layers, sizeof(int) * (size_t)o->n_layers);
        if ((st = pq_esm2_forward(m, &pk.batch, NULL, &out)) != PQ_OK) break;
        if ((st = deliver(&pk, np, &out, o->n_layers, D, mean, sink, user)) != PQ_OK) break;
        start += np;
    }
    pq_esm2_outputs_clear(&out);
    pq_packed_free(&pk);
    free(mean);
    return st;
}
