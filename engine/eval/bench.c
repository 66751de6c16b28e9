/* SPDX-License-Identifier: Apache-2.0 */
/* bench.c - forward-pass timing. */
#include "eval/bench.h"

#include <stdlib.h>
#include <string.h>

#include "base/pq_clock.h"
#include "model/batch.h"
#include "model/tokenizer.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* B sequences of T tokens as one batch. */
static pq_status uniform_batch(int64_t B, int64_t T, pq_packed *pk)
{
    pk->offsets = malloc((size_t)(B + 1) * sizeof *pk->offsets);
    pk->ids = malloc((size_t)(B * T) * sizeof *pk->ids);
    if (!pk->offsets || !pk->ids) return pq_err(PQ_ERR_RESOURCE, "out of memory for a %lld x %lld batch",
                                                 (long long)B, (long long)T);
    for (int64_t s = 0; s <= B; s++) pk->offsets[s] = s * T;
    for (int64_t s = 0; s < B; s++)
        for (int64_t t = 0; t < T; t++)
            pk->ids[s * T + t] = t == 0 ? PQ_TOK_CLS : t == T - 1 ? PQ_TOK_EOS : 4 + (int32_t)((t + s) % 20);
    pk->batch = (pq_esm2_batch){.n_seqs = B, .offsets = pk->offsets, .ids = pk->ids};
    return PQ_OK;
}

/* One run of the forward over every batch. */
static pq_status run_all(pq_esm2_model *m, const pq_packed *pk, int64_t n, bool logits, pq_esm2_outputs *out)
{
    pq_status st = PQ_OK;
    for (int64_t i = 0; i < n && st == PQ_OK; i++) {
        pq_esm2_outputs_clear(out);
        out->want_logits = logits;
        out->n_repr = 1;
        out->repr_layers[0] = -1;
        st = pq_esm2_forward(m, &pk[i].batch, NULL, out);
    }
    return st;
}

pq_status pq_eval_bench(pq_esm2_model *m, const pq_eval_bench_opts *o, pq_eval_bench_result *r)
{
    pq_status st = PQ_OK;
    int64_t cap = o->recs ? (o->n_recs > 0 ? o->n_recs : 1) : 1, n = 0, n_tokens = 0;
    pq_packed *pk = calloc((size_t)cap, sizeof *pk);
    double *times = malloc((size_t)o->reps * sizeof *times);
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    memset(r, 0, sizeof *r);
    if (!pk || !times) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    if (o->recs) {
        for (int64_t start = 0; start < o->n_recs; n++) {
            int64_t np;
            if ((st = pq_pack_records(o->recs, o->n_recs, start, o->batch_tokens, &pk[n], &np)) != PQ_OK) goto done;
            n_tokens += pk[n].offsets[np];
            start += np;
        }
    } else {
        n = 1;
        if ((st = uniform_batch(o->batch, o->length, &pk[0])) != PQ_OK) goto done;
        n_tokens = o->batch * o->length;
    }
    for (int64_t rep = -o->warmup; rep < o->reps; rep++) {
        if (rep == 0 && o->profile) {
            memset(o->profile, 0, sizeof *o->profile);
            pq_esm2_model_set_profile(m, o->profile);
        }
        double t0 = pq_now_s();
        if ((st = run_all(m, pk, n, o->logits, &out)) != PQ_OK) goto done;
        if (rep >= 0) times[rep] = pq_now_s() - t0;
    }
    qsort(times, (size_t)o->reps, sizeof *times, cmp_d);
    *r = (pq_eval_bench_result){.n_batches = n, .n_tokens = n_tokens, .median_s = times[o->reps / 2],
                                .min_s = times[0]};
done:
    pq_esm2_model_set_profile(m, NULL);
    pq_esm2_outputs_clear(&out);
    for (int64_t i = 0; pk && i < cap; i++) pq_packed_free(&pk[i]);
    free(pk);
    free(times);
    return st;
}
