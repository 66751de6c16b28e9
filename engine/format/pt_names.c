/* SPDX-License-Identifier: Apache-2.0 */
/* pt_names.c - fair-esm tensor names to the Hugging Face ESM names that the
 * rest of Proteus uses. The correspondence is transformers'
 * models/esm/convert_esm.py read backwards; the prefixes stripped first are
 * those of fair-esm's own esm/pretrained.py (upgrade_state_dict). */
#include "format/pt_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const strip[] = {"encoder.sentence_encoder.", "encoder."};

/* per-layer module renames: fair-esm "layers.N.<from>.<rest>" -> HF
 * "esm.encoder.layer.N.<to>.<rest>" */
static const struct {
    const char *from, *to;
} layer_map[] = {
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

/* whole-prefix renames for the global tensors */
static const struct {
    const char *from, *to;
} global_map[] = {
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

pq_status pq_pt_map_names(pq_st_tensor *t, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (starts(t[i].name, "esm.")) return PQ_OK; /* Hugging Face names already */
    for (int64_t i = 0; i < n; i++) {
        const char *s = t[i].name;
        for (size_t k = 0; k < sizeof strip / sizeof strip[0]; k++)
            if (starts(s, strip[k])) {
                s += strlen(strip[k]);
                break;
            }
        size_t cap = strlen(s) + 64;
        char *hf = malloc(cap);
        if (!hf) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        if (!to_hf(s, hf, cap)) {
            free(hf);
            continue;
        }
        free(t[i].name);
        t[i].name = hf;
    }
    return PQ_OK;
}
