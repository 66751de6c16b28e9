/* SPDX-License-Identifier: Apache-2.0 */
/* score.c - the masked-LM loop. */
#include "eval/score.h"

#include <stdlib.h>
#include <string.h>

pq_status pq_eval_mask_batch(pq_packed *p, int64_t n_seqs, uint64_t seed, double frac, int32_t **orig)
{
    int64_t N = p->offsets[n_seqs];
    int32_t *o = realloc(*orig, (size_t)(N > 0 ? N : 1) * sizeof *o);
    if (!o) return pq_err(PQ_ERR_RESOURCE, "out of memory for the masked positions");
    *orig = o;
    for (int64_t s = 0; s < n_seqs; s++)
        pq_mask_sequence(p->ids + p->offsets[s], p->offsets[s + 1] - p->offsets[s], seed,
                         (uint64_t)(p->first + s), frac, o + p->offsets[s]);
    return PQ_OK;
}

pq_status pq_eval_score(pq_esm2_model *m, const pq_fasta_record *recs, int64_t n_recs,
                        const pq_eval_score_opts *o, pq_eval_mlm *per_seq, int64_t *n_tokens)
{
    pq_status st = PQ_OK;
    int32_t *orig = NULL;
    pq_packed pk;
    memset(&pk, 0, sizeof pk);
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    int V = pq_esm2_model_config(m)->vocab_size;
    *n_tokens = 0;
    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, o->batch_tokens, &pk, &np)) != PQ_OK) goto done;
        pk.first = recs[start].index; /* the masking draws by input position */
        if ((st = pq_eval_mask_batch(&pk, np, o->seed, o->mask_frac, &orig)) != PQ_OK) goto done;
        pq_esm2_outputs_clear(&out);
        out.want_logits = true;
        if ((st = pq_esm2_forward(m, &pk.batch, NULL, &out)) != PQ_OK) goto done;
        for (int64_t s = 0; s < np; s++)
            pq_eval_mlm_add(&per_seq[start + s], out.logits + pk.offsets[s] * V, orig + pk.offsets[s],
                            pk.offsets[s + 1] - pk.offsets[s], V);
        *n_tokens += pk.offsets[np];
        start += np;
    }
done:
    pq_esm2_outputs_clear(&out);
    pq_packed_free(&pk);
    free(orig);
    return st;
}
