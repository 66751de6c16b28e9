/* SPDX-License-Identifier: Apache-2.0 */
/* pt_names.c - fair-esm tensor names to the Hugging Face ESM names that the
 * rest of Proteus uses. The correspondence is transformers'
 * models/esm/convert_esm.py read backwards; the prefixes stripped first are
 * those of fair-esm's own esm/pretrained.py (upgrade_state_dict). */
#include "format/pt_ckpt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const strip[] = {"encoder.sentence_encoder.", "encoder."};

typedef struct name_map {
    const char *from, *to;
} name_map;

/* per-layer module renames: fair-esm "layers.N.<from>.<rest>" -> HF
 * "esm.encoder.layer.N.<to>.<rest>" */
static const name_map layer_map[] = {
    {"self_attn.q_proj", "attention.self.query"},
    {"self_attn.k_proj", "attention.self.key"},
    {"self_attn.v_proj", "attention.self.value"},
    {"self_attn.out_proj", "attention.output.dense"},
    {"self_attn.rot_emb", "attention.self.rotary_embeddings"},
    {"self_attn_layer_norm", "attention.LayerNorm"},
    {"fc1", "intermediate.dense"},
    {"fc2", "output.dense"},
    {"final_layer_norm", "LayerNorm"},
};

/* renames of the global tensors: a prefix (ending in '.') or a whole name */
static const name_map global_map[] = {
    {"embed_tokens.", "esm.embeddings.word_embeddings."},
    {"emb_layer_norm_after.", "esm.encoder.emb_layer_norm_after."},
    {"contact_head.", "esm.contact_head."},
    {"lm_head.weight", "lm_head.decoder.weight"},
    {"lm_head.", "lm_head."},
};

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* The HF name of fair-esm name s (prefix already stripped) into buf; 0 when
 * s is not a fair-esm ESM-2 name. */
static int to_hf(const char *s, char *buf, size_t n)
{
    if (starts(s, "layers.")) {
        const char *p = s + strlen("layers.");
        size_t digits = strspn(p, "0123456789");
        if (!digits || p[digits] != '.') return 0;
        const char *rest = p + digits + 1;
        for (size_t i = 0; i < sizeof layer_map / sizeof layer_map[0]; i++) {
            size_t fl = strlen(layer_map[i].from);
            if (strncmp(rest, layer_map[i].from, fl) == 0 && rest[fl] == '.')
                return snprintf(buf, n, "esm.encoder.layer.%.*s.%s%s", (int)digits, p, layer_map[i].to, rest + fl) <
                       (int)n;
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof global_map / sizeof global_map[0]; i++) {
        const char *f = global_map[i].from;
        size_t fl = strlen(f);
        int whole = f[fl - 1] != '.';
        if (whole ? strcmp(s, f) == 0 : starts(s, f))
            return snprintf(buf, n, "%s%s", global_map[i].to, s + fl) < (int)n;
    }
    return 0;
}

/* Drop lm_head.decoder.weight when it is the embedding's bytes. */
static void drop_tied(pq_st_tensor *t, int64_t *n)
{
    int64_t dec = -1, emb = -1;
    for (int64_t i = 0; i < *n; i++) {
        if (strcmp(t[i].name, "lm_head.decoder.weight") == 0) dec = i;
        if (strcmp(t[i].name, "esm.embeddings.word_embeddings.weight") == 0) emb = i;
    }
    if (dec < 0 || emb < 0 || t[dec].file_idx != t[emb].file_idx || t[dec].offset != t[emb].offset ||
        t[dec].n_bytes != t[emb].n_bytes || t[dec].dtype != t[emb].dtype || t[dec].ndim != t[emb].ndim ||
        memcmp(t[dec].shape, t[emb].shape, sizeof t[dec].shape) != 0)
        return;
    free(t[dec].name);
    t[dec] = t[*n - 1];
    (*n)--;
}

pq_status pq_pt_map_names(pq_st_tensor *t, int64_t *n_io)
{
    int64_t n = *n_io;
    bool hf = false; /* Hugging Face names already */
    for (int64_t i = 0; i < n && !hf; i++) hf = starts(t[i].name, "esm.");
    for (int64_t i = 0; i < n && !hf; i++) {
        const char *s = t[i].name;
        for (size_t k = 0; k < sizeof strip / sizeof strip[0]; k++)
            if (starts(s, strip[k])) {
                s += strlen(strip[k]);
                break;
            }
        size_t cap = strlen(s) + 64;
        char *mapped = malloc(cap);
        if (!mapped) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        if (!to_hf(s, mapped, cap)) {
            free(mapped);
            continue;
        }
        free(t[i].name);
        t[i].name = mapped;
    }
    drop_tied(t, n_io);
    return PQ_OK;
}
