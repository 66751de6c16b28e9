/* SPDX-License-Identifier: Apache-2.0 */
/* api_infer.c - the public calls that run a model (proteus.h): open a
 * Proteus HDF5 model or a float checkpoint, and compute the logits or the
 * mean-pooled representations of the sequences of a FASTA file. */
#include <stdlib.h>
#include <string.h>

#include "api/proteus.h"
#include "eval/embed.h"
#include "model/batch.h"
#include "model/tokenizer.h"

/* Tokens per forward batch: the inference commands' default. */
#define PQ_API_BATCH_TOKENS 4096

struct pq_model {
    pq_esm2_model *m;
    int64_t max_length; /* residues per sequence; longer ones cropped */
};

pq_status pq_model_open(const char *path, const pq_config *cfg, int mode, pq_model **out)
{
    if (mode < PQ_ESM2_QMODE_AUTO || mode > PQ_ESM2_QMODE_WEIGHT_ONLY)
        return pq_err(PQ_ERR_CONFIG, "model mode %d is unknown (0 auto, 1 dequant, 2 weight-only)", mode);
    pq_config def;
    pq_config_defaults(&def);
    const pq_config *c = cfg ? cfg : &def;
    pq_esm2_model_opts mo = {.n_threads = c->threads, .no_fusion = !c->enable_fusion,
                             .no_threading = !c->threading, .quantized_mode = (pq_esm2_qmode)mode};
    pq_model *pm = calloc(1, sizeof *pm);
    pq_status st = pm ? pq_config_apply_hardware(c, &mo.ops) : pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st) st = pq_esm2_model_open(path, &mo, &pm->m);
    pq_config_free(&def);
    if (st) {
        pq_model_close(pm);
        return st;
    }
    pm->max_length = pq_fasta_defaults().max_residues;
    *out = pm;
    return PQ_OK;
}

void pq_model_close(pq_model *pm)
{
    if (!pm) return;
    pq_esm2_model_free(pm->m);
    free(pm);
}

void pq_model_info(const pq_model *pm, pq_model_arch *out)
{
    const pq_esm2_config *c = pq_esm2_model_config(pm->m);
    *out = (pq_model_arch){.num_layers = c->num_layers, .embed_dim = c->embed_dim,
                           .attention_heads = c->attention_heads, .ffn_dim = c->ffn_dim,
                           .vocab_size = c->vocab_size, .layer_norm_eps = c->layer_norm_eps,
                           .has_contact_head = c->has_contact_head, .has_decoder = c->has_decoder};
}

void pq_array_free(pq_array *a)
{
    if (!a) return;
    free(a->data);
    free(a->offsets);
    memset(a, 0, sizeof *a);
}

/* The records of `fasta`, cropped to the model's max_length. */
static pq_status read_records(const pq_model *pm, const char *fasta, pq_fasta_record **recs, int64_t *n)
{
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = pm->max_length;
    return pq_fasta_read_all(fasta, &fo, 0, recs, n);
}

static void free_records(pq_fasta_record *recs, int64_t n)
{
    for (int64_t i = 0; i < n; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
}

/* How many rows a record takes in an array. */
typedef enum rows_of {
    ROWS_TOKENS,   /* <cls> residues <eos> */
    ROWS_RESIDUES, /* residues only */
    ROWS_ONE       /* one row per record */
} rows_of;

/* out->offsets[n + 1] from each record's row count, and out->data for
 * width columns. */
static pq_status array_alloc(pq_array *out, const pq_fasta_record *recs, int64_t n, int64_t width, rows_of how)
{
    memset(out, 0, sizeof *out);
    if (!(out->offsets = malloc((size_t)(n + 1) * sizeof *out->offsets)))
        return pq_err(PQ_ERR_RESOURCE, "out of memory");
    out->offsets[0] = 0;
    for (int64_t i = 0; i < n; i++)
        out->offsets[i + 1] = out->offsets[i] + (how == ROWS_ONE ? 1 : recs[i].n_ids - (how == ROWS_RESIDUES) * 2);
    out->n_seqs = n;
    out->width = width;
    size_t elems = (size_t)(out->offsets[n] * width);
    if (!(out->data = malloc((elems ? elems : 1) * sizeof *out->data))) {
        pq_array_free(out);
        return pq_err(PQ_ERR_RESOURCE, "out of memory (%zu floats)", elems);
    }
    return PQ_OK;
}

pq_status pq_model_logits(pq_model *pm, const char *fasta, pq_array *out)
{
    pq_fasta_record *recs = NULL;
    int64_t n = 0;
    pq_packed pk;
    pq_esm2_outputs o;
    memset(&pk, 0, sizeof pk);
    memset(&o, 0, sizeof o);
    memset(out, 0, sizeof *out);
    pq_status st = read_records(pm, fasta, &recs, &n);
    if (!st) st = array_alloc(out, recs, n, PQ_TOK_VOCAB, ROWS_TOKENS);
    for (int64_t start = 0, np = 0; !st && start < n; start += np) {
        if ((st = pq_pack_records(recs, n, start, PQ_API_BATCH_TOKENS, &pk, &np))) break;
        pq_esm2_outputs_clear(&o);
        o.want_logits = true;
        if ((st = pq_esm2_forward(pm->m, &pk.batch, NULL, &o))) break;
        int64_t tokens = pk.offsets[np];
        memcpy(out->data + out->offsets[start] * PQ_TOK_VOCAB, o.logits,
               (size_t)(tokens * PQ_TOK_VOCAB) * sizeof *o.logits);
    }
    pq_esm2_outputs_clear(&o);
    pq_packed_free(&pk);
    free_records(recs, n);
    if (st) pq_array_free(out);
    return st;
}

/* Where embed's sink puts each sequence's mean (and residue rows). */
typedef struct embed_into {
    pq_array *mean, *rows; /* rows NULL unless per residue */
} embed_into;

static pq_status embed_sink(void *user, int64_t seq, int layer_index, const float *mean, const float *rows,
                            int64_t n_res, int64_t D)
{
    (void)layer_index;
    embed_into *e = user;
    memcpy(e->mean->data + seq * D, mean, (size_t)D * sizeof *mean);
    if (e->rows) memcpy(e->rows->data + e->rows->offsets[seq] * D, rows, (size_t)(n_res * D) * sizeof *rows);
    return PQ_OK;
}

pq_status pq_model_embed(pq_model *pm, const char *fasta, int layer, pq_array *mean, pq_array *rows)
{
    pq_fasta_record *recs = NULL;
    int64_t n = 0;
    int D = pq_esm2_model_config(pm->m)->embed_dim, resolved;
    memset(mean, 0, sizeof *mean);
    if (rows) memset(rows, 0, sizeof *rows);
    pq_status st = pq_eval_embed_layers(&layer, 1, pq_esm2_model_config(pm->m)->num_layers, &resolved);
    if (!st) st = read_records(pm, fasta, &recs, &n);
    if (!st) st = array_alloc(mean, recs, n, D, ROWS_ONE);
    if (!st && rows) st = array_alloc(rows, recs, n, D, ROWS_RESIDUES);
    embed_into e = {mean, rows};
    pq_eval_embed_opts eo = {.layers = &resolved, .n_layers = 1, .batch_tokens = PQ_API_BATCH_TOKENS};
    if (!st) st = pq_eval_embed(pm->m, recs, n, &eo, embed_sink, &e);
    free_records(recs, n);
    if (st) {
        pq_array_free(mean);
        pq_array_free(rows);
    }
    return st;
}
