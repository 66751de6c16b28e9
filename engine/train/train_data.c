/* SPDX-License-Identifier: Apache-2.0 */
/* train_data.c - sequence order, crops and masking of a training run. */
#include "train/train_data.h"

#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

double pq_train_uniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t stream)
{
    uint64_t x = splitmix64(splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b) ^ c) ^ stream);
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* streams of the draws */
enum { S_SHUFFLE = 1, S_CROP, S_TARGET, S_SHOW, S_RANDOM };

pq_status pq_train_data_init(pq_train_data *d, const pq_fasta_record *recs, int64_t n_recs, uint64_t seed,
                             int64_t max_residues)
{
    memset(d, 0, sizeof *d);
    if (n_recs <= 0) return pq_err(PQ_ERR_CONFIG, "no training sequences");
    d->recs = recs;
    d->n_recs = n_recs;
    d->seed = seed;
    d->max_residues = max_residues;
    d->perm_epoch = -1;
    d->perm = malloc((size_t)n_recs * sizeof *d->perm);
    return d->perm ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
}

void pq_train_data_fini(pq_train_data *d)
{
    free(d->perm);
    d->perm = NULL;
}

static int64_t record_at(pq_train_data *d, int64_t k)
{
    int64_t e = k / d->n_recs;
    if (e != d->perm_epoch) {
        for (int64_t i = 0; i < d->n_recs; i++) d->perm[i] = i;
        for (int64_t i = d->n_recs - 1; i > 0; i--) {
            int64_t j = (int64_t)(pq_train_uniform(d->seed, (uint64_t)e, (uint64_t)i, 0, S_SHUFFLE) * (double)(i + 1));
            int64_t t = d->perm[i];
            d->perm[i] = d->perm[j];
            d->perm[j] = t;
        }
        d->perm_epoch = e;
    }
    return d->perm[k % d->n_recs];
}

void pq_train_mb_free(pq_train_mb *mb)
{
    free(mb->offsets);
    free(mb->tgt_pos);
    free(mb->ids);
    free(mb->tgt_id);
    memset(mb, 0, sizeof *mb);
}

pq_status pq_train_data_batch(pq_train_data *d, int64_t step, int64_t k0, int64_t n, pq_train_mb *mb)
{
    int64_t n_tok = 0;
    for (int64_t k = k0; k < k0 + n; k++) {
        int64_t r = d->recs[record_at(d, k)].n_ids - 2;
        n_tok += (d->max_residues > 0 && r > d->max_residues ? d->max_residues : r) + 2;
    }
    pq_train_mb_free(mb);
    mb->offsets = malloc((size_t)(n + 1) * sizeof *mb->offsets);
    mb->ids = malloc((size_t)n_tok * sizeof *mb->ids);
    mb->tgt_pos = malloc((size_t)n_tok * sizeof *mb->tgt_pos);
    mb->tgt_id = malloc((size_t)n_tok * sizeof *mb->tgt_id);
    if (!mb->offsets || !mb->ids || !mb->tgt_pos || !mb->tgt_id) {
        pq_train_mb_free(mb);
        return pq_err(PQ_ERR_RESOURCE, "out of memory for a micro-batch of %lld tokens", (long long)n_tok);
    }
    int64_t off = 0, n_t = 0;
    mb->offsets[0] = 0;
    for (int64_t s = 0; s < n; s++) {
        uint64_t k = (uint64_t)(k0 + s), t = (uint64_t)step;
        const pq_fasta_record *rec = &d->recs[record_at(d, k0 + s)];
        int64_t n_res = rec->n_ids - 2, start = 0;
        if (d->max_residues > 0 && n_res > d->max_residues) {
            start = (int64_t)(pq_train_uniform(d->seed, k, 0, 0, S_CROP) * (double)(n_res - d->max_residues + 1));
            n_res = d->max_residues;
        }
        int32_t *ids = mb->ids + off;
        ids[0] = PQ_TOK_CLS;
        memcpy(ids + 1, rec->ids + 1 + start, (size_t)n_res * sizeof *ids);
        ids[n_res + 1] = PQ_TOK_EOS;
        int64_t first = n_t, best = 0;
        double best_u = 2.0;
        for (int64_t i = 0; i < n_res; i++) {
            double u = pq_train_uniform(d->seed, t, k, (uint64_t)i, S_TARGET);
            if (u < best_u) { best_u = u; best = i; }
            if (u < 0.15) mb->tgt_pos[n_t++] = off + 1 + i;
        }
        if (n_t == first) mb->tgt_pos[n_t++] = off + 1 + best;
        for (int64_t j = first; j < n_t; j++) {
            int64_t p = mb->tgt_pos[j];
            uint64_t i = (uint64_t)(p - off - 1);
            mb->tgt_id[j] = mb->ids[p];
            double u = pq_train_uniform(d->seed, t, k, i, S_SHOW);
            if (u < 0.8) mb->ids[p] = PQ_TOK_MASK;
            else if (u < 0.9)
                mb->ids[p] = PQ_TOK_AA_FIRST + (int32_t)(pq_train_uniform(d->seed, t, k, i, S_RANDOM) *
                                                         (PQ_TOK_AA_LAST - PQ_TOK_AA_FIRST + 1));
        }
        off += n_res + 2;
        mb->offsets[s + 1] = off;
    }
    mb->tb = (pq_train_batch){.b = {.n_seqs = n, .offsets = mb->offsets, .ids = mb->ids}, .n_targets = n_t,
                              .tgt_pos = mb->tgt_pos, .tgt_id = mb->tgt_id};
    return PQ_OK;
}
