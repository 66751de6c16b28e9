/* SPDX-License-Identifier: Apache-2.0 */
/* folder_json.c - the JSON and text files of an exported model folder:
 * config.json as transformers' EsmConfig reads it (with the
 * compressed-tensors quantization_config when asked), and the ESM tokenizer
 * files (vocab.txt and its config). */
#include "export/folder.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"
#include "pq_config.h"

#define PQ_VOCAB 33
#define MAX_GROUPS 32

static pq_status dump(json_t *j, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!j) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    return rc ? pq_err(PQ_ERR_IO, "%s: cannot write", path) : PQ_OK;
}

static json_t *weights_args(const pq_qspec *s)
{
    static const char *const strategy[] = {"tensor", "channel", "group"};
    json_t *w = json_pack("{s:i, s:s, s:b, s:s, s:b, s:s}", "num_bits", s->bits, "type", "int",
                          "symmetric", s->symmetric, "strategy", strategy[s->gran], "dynamic", 0,
                          "observer", "minmax");
    json_object_set_new(w, "group_size", s->gran == PQ_GRAN_GROUP ? json_integer(s->group_size) : json_null());
    return w;
}

/* quantization_config: one config group per distinct weight spec, its
 * targets the Linear modules by name. */
static pq_status quant_config(pq_h5r *r, const pq_folder *f, json_t **out)
{
    pq_qspec specs[MAX_GROUPS];
    json_t *targets[MAX_GROUPS];
    int n = 0;
    for (int64_t i = 0; i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        if (!e->quantized) continue;
        int g = 0;
        while (g < n && memcmp(&specs[g], &e->spec, sizeof e->spec)) g++;
        if (g == n) {
            if (n == MAX_GROUPS) {
                for (int k = 0; k < n; k++) json_decref(targets[k]);
                return pq_err(PQ_ERR_CONFIG, "more than %d different quantization specs", MAX_GROUPS);
            }
            specs[n] = e->spec;
            targets[n++] = json_array();
        }
        json_array_append_new(targets[g], json_stringn(e->name, strlen(e->name) - 7)); /* less ".weight" */
    }
    json_t *groups = json_object();
    for (int g = 0; g < n; g++) {
        char key[16];
        snprintf(key, sizeof key, "group_%d", g);
        json_object_set_new(groups, key, json_pack("{s:o, s:o, s:n, s:n}", "targets", targets[g],
                                                   "weights", weights_args(&specs[g]),
                                                   "input_activations", "output_activations"));
    }
    *out = json_pack("{s:s, s:s, s:s, s:o, s:[], s:n, s:n}", "quant_method", "compressed-tensors",
                     "format", f->packed ? "pack-quantized" : "int-quantized",
                     "quantization_status", "compressed", "config_groups", groups, "ignore",
                     "kv_cache_scheme", "global_compression_ratio");
    return *out ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "out of memory");
}

static pq_status write_config(const char *dir, pq_h5r *r, const pq_export_opts *o, const pq_folder *f)
{
    const pq_esm2_config *c = &pq_h5r_meta(r)->cfg;
    char eps[32];
    snprintf(eps, sizeof eps, "%g", (double)c->layer_norm_eps); /* 1e-05, not its float's digits */
    json_t *j = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:f, s:i, s:s, s:f, s:f, "
                          "s:b, s:b, s:i, s:i, s:b, s:b, s:b, s:s, s:s}",
                          "architectures", "EsmForMaskedLM", "model_type", "esm",
                          "vocab_size", c->vocab_size, "hidden_size", c->embed_dim,
                          "num_hidden_layers", c->num_layers, "num_attention_heads", c->attention_heads,
                          "intermediate_size", c->ffn_dim, "hidden_act", "gelu",
                          "hidden_dropout_prob", 0.0, "attention_probs_dropout_prob", 0.0,
                          "max_position_embeddings", 1026, "position_embedding_type", "rotary",
                          "layer_norm_eps", strtod(eps, NULL), "initializer_range", 0.02,
                          "emb_layer_norm_before", 0, "token_dropout", c->token_dropout,
                          "mask_token_id", 32, "pad_token_id", 1, "is_folding_model", 0,
                          "use_cache", 1, "tie_word_embeddings", f->tied,
                          "torch_dtype", o->fp16 ? "float16" : "float32",
                          "proteus_version", PQ_VERSION);
    if (!j) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (o->format == PQ_EXPORT_COMPRESSED_TENSORS) {
        json_t *q;
        pq_status st = quant_config(r, f, &q);
        if (st) { json_decref(j); return st; }
        json_object_set_new(j, "quantization_config", q);
    }
    return dump(j, dir, "config.json");
}

static pq_status write_vocab(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *fp = fopen(path, "w");
    if (!fp) return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
    for (int i = 0; i < PQ_VOCAB; i++) fprintf(fp, "%s\n", pq_tok_str(i));
    if (fclose(fp)) return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
    return PQ_OK;
}

pq_status pq_folder_write_json(const char *dir, pq_h5r *r, const pq_export_opts *o, const pq_folder *f)
{
    pq_status st = write_config(dir, r, o, f);
    if (!st) st = write_vocab(dir);
    if (!st) st = dump(json_pack("{s:s, s:i}", "tokenizer_class", "EsmTokenizer", "model_max_length", 1026),
                       dir, "tokenizer_config.json");
    if (!st) st = dump(json_pack("{s:s, s:s, s:s, s:s, s:s}", "cls_token", "<cls>", "eos_token", "<eos>",
                                 "mask_token", "<mask>", "pad_token", "<pad>", "unk_token", "<unk>"),
                       dir, "special_tokens_map.json");
    return st;
}
