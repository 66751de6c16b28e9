/* SPDX-License-Identifier: Apache-2.0 */
/* batch.c - token-budget packing and deterministic masking. */
#include "model/batch.h"

#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"

pq_status pq_pack_records(const pq_fasta_record *recs, int64_t n_recs, int64_t start,
                          int64_t max_tokens, pq_packed *p, int64_t *n_packed)
{
    int64_t end = start, tot = 0;
    while (end < n_recs && (end == start || tot + recs[end].n_ids <= max_tokens)) tot += recs[end++].n_ids;
    int64_t n = end - start;
    int64_t *off = realloc(p->offsets, (size_t)(n + 1) * sizeof *off);
    if (!off) return pq_err(PQ_ERR_RESOURCE, "out of memory packing %lld sequences", (long long)n);
    p->offsets = off;
    int32_t *ids = realloc(p->ids, (size_t)tot * sizeof *ids);
    if (!ids) return pq_err(PQ_ERR_RESOURCE, "out of memory packing %lld tokens", (long long)tot);
    p->ids = ids;
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        memcpy(ids + off[i], recs[start + i].ids, (size_t)recs[start + i].n_ids * sizeof *ids);
        off[i + 1] = off[i] + recs[start + i].n_ids;
    }
    p->first = start;
    p->batch.n_seqs = n;
    p->batch.offsets = off;
    p->batch.ids = ids;
    *n_packed = n;
    return PQ_OK;
}

void pq_packed_free(pq_packed *p)
{
    free(p->offsets);
    free(p->ids);
    memset(p, 0, sizeof *p);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

double pq_mask_uniform(uint64_t seed, uint64_t seq_index, uint64_t pos)
{
    uint64_t x = splitmix64(splitmix64(splitmix64(seed) ^ seq_index) ^ pos);
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

int64_t pq_mask_sequence(int32_t *ids, int64_t n_ids, uint64_t seed, uint64_t seq_index, double frac,
                         int32_t *orig)
{
    int64_t n_res = n_ids - 2, n_masked = 0, best = -1;
    double best_u = 2.0;
    for (int64_t t = 0; t < n_ids; t++) orig[t] = -1;
    for (int64_t i = 0; i < n_res; i++) {
        double u = pq_mask_uniform(seed, seq_index, (uint64_t)i);
        if (u < best_u) { best_u = u; best = i; }
        if (u < frac) {
            orig[i + 1] = ids[i + 1];
            ids[i + 1] = PQ_TOK_MASK;
            n_masked++;
        }
    }
    if (n_masked == 0 && best >= 0) {
        orig[best + 1] = ids[best + 1];
        ids[best + 1] = PQ_TOK_MASK;
        n_masked = 1;
    }
    return n_masked;
}
