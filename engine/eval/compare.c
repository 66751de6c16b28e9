/* SPDX-License-Identifier: Apache-2.0 */
/* compare.c - the report of `proteus evaluate`: per-sequence records added
 * in input order, and the comparison run in one process. */
#include "eval/compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pq_cpu.h"
#include "eval/infer_chunk.h"

static const char *const k_site_names[PQ_EVAL_N_SITES] = {"q", "k", "v", "out", "fc1", "fc2", "lm_dense"};

const char *pq_eval_site_name(int site)
{
    return site >= 0 && site < PQ_EVAL_N_SITES ? k_site_names[site] : "?";
}

double pq_eval_top1_error(const pq_eval_side *s)
{
    return 1.0 - pq_eval_mlm_accuracy(&s->mlm);
}

double pq_eval_disagreement(const pq_eval_report *r)
{
    return (double)r->n_disagree / (double)r->n_positions;
}

pq_status pq_eval_report_init(pq_eval_report *rep, int num_layers)
{
    memset(rep, 0, sizeof *rep);
    rep->num_layers = num_layers;
    rep->n_ranks = 1;
    rep->sqnr = calloc((size_t)(num_layers + 1) * PQ_EVAL_N_SITES, sizeof *rep->sqnr);
    return rep->sqnr ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
}

static void add_mlm(pq_eval_mlm *into, const pq_eval_mlm *m)
{
    into->n_masked += m->n_masked;
    into->n_correct += m->n_correct;
    into->nll += m->nll;
}

pq_status pq_eval_report_add(pq_eval_report *rep, const void *bytes, size_t len)
{
    int64_t S = (int64_t)(rep->num_layers + 1) * PQ_EVAL_N_SITES;
    size_t rec = sizeof(pq_eval_seq) + (size_t)S * sizeof(pq_eval_sqnr);
    if (len % rec) return pq_err(PQ_ERR_FORMAT, "a chunk of %zu bytes is not evaluate records of %zu", len, rec);
    const unsigned char *p = bytes;
    for (size_t i = 0; i < len / rec; i++, p += rec) {
        pq_eval_seq q;
        memcpy(&q, p, sizeof q);
        rep->n_sequences++;
        rep->n_tokens += q.n_tokens;
        rep->n_positions += q.n_positions;
        rep->n_disagree += q.n_disagree;
        rep->kl_sum += q.kl_sum;
        if (q.kl_max > rep->kl_max) rep->kl_max = q.kl_max;
        rep->lcos_sum += q.lcos_sum;
        rep->ecos_sum += q.ecos;
        pq_eval_side *side[2] = {&rep->ref, &rep->q};
        for (int k = 0; k < 2; k++) {
            add_mlm(&side[k]->mlm, &q.mlm[k]);
            pq_eval_calib_merge(&side[k]->cal, &q.cal[k]);
        }
        for (int64_t j = 0; j < S; j++) {
            pq_eval_sqnr s;
            memcpy(&s, p + sizeof q + (size_t)j * sizeof s, sizeof s);
            rep->sqnr[j].sig += s.sig;
            rep->sqnr[j].err += s.err;
        }
    }
    return PQ_OK;
}

void pq_eval_report_finish(pq_eval_report *r, const pq_eval_util_probe *u, int u_threads)
{
    r->kl_mean = r->kl_sum / (double)r->n_positions;
    r->logits_cosine_mean = r->lcos_sum / (double)r->n_positions;
    r->embedding_cosine_mean = r->ecos_sum / (double)r->n_sequences;
    pq_eval_util *t = &r->util;
    double wall = r->q.seconds;
    snprintf(t->kernel, sizeof t->kernel, "%s", u->kernel);
    t->threads = u_threads;
    t->ops = u->ops_per_token * (double)r->n_tokens;
    t->peak_gops = u->peak_gops;
    t->achieved_gops = t->ops / wall / 1e9;
    t->fraction = t->achieved_gops / t->peak_gops;
    t->threads_busy = r->q.cpu_seconds / (wall * (double)u_threads);
    t->memory_gbps = (double)r->q.linear_weight_bytes * (double)r->q.n_forwards / wall / 1e9;
}

pq_status pq_eval_compare(const pq_eval_compare_opts *o, pq_eval_report *r)
{
    pq_eval_run *run = NULL;
    pq_chunker *c = NULL;
    pq_buf b = {0};
    pq_eval_util_probe u;
    memset(r, 0, sizeof *r);
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = o->max_length;
    int64_t chunk = o->chunk_residues > 0 ? o->chunk_residues : PQ_EVAL_CHUNK_RESIDUES;
    pq_status st = pq_eval_run_open(o, &run);
    if (st == PQ_OK) st = pq_eval_report_init(r, pq_eval_run_num_layers(run));
    if (st == PQ_OK) st = pq_chunker_open(o->fasta, &fo, chunk, o->max_seqs, &c);
    for (bool got = true; st == PQ_OK;) {
        pq_chunk ch;
        if ((st = pq_chunker_next(c, true, &ch, &got)) != PQ_OK || !got) break;
        b.len = 0;
        if ((st = pq_eval_run_chunk(run, ch.recs, ch.n, &b)) == PQ_OK) st = pq_eval_report_add(r, b.data, b.len);
    }
    if (st == PQ_OK && !r->n_sequences) st = pq_err(PQ_ERR_FORMAT, "%s: no usable record", o->fasta);
    if (st == PQ_OK) st = pq_eval_run_probe(run, &u);
    if (st == PQ_OK) {
        pq_eval_run_local(run, r);
        int threads = pq_eval_run_threads(run);
        pq_eval_report_finish(r, &u, threads > 0 ? threads : pq_cpu_count());
    }
    pq_buf_free(&b);
    pq_chunker_close(c);
    pq_eval_run_free(run);
    return st;
}

void pq_eval_report_free(pq_eval_report *r)
{
    if (!r) return;
    free(r->sqnr);
    r->sqnr = NULL;
}

double pq_eval_report_sqnr_db(const pq_eval_report *r, int layer, int site)
{
    return pq_eval_sqnr_db(&r->sqnr[layer * PQ_EVAL_N_SITES + site]);
}
