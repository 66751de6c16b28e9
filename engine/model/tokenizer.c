/* SPDX-License-Identifier: Apache-2.0 */
/* tokenizer.c - ESM-2 alphabet and residue-string encoding. */
#include "model/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const char *const vocab[PQ_TOK_VOCAB] = {
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y",
    "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
};

/* Specials accepted literally inside a sequence; <pad> is not (fair-esm
 * would take it for padding). */
static const int literal_specials[] = {PQ_TOK_MASK, PQ_TOK_UNK, PQ_TOK_CLS, PQ_TOK_EOS,
                                       PQ_TOK_NULL1};

const char *pq_tok_str(int id)
{
    return (id >= 0 && id < PQ_TOK_VOCAB) ? vocab[id] : "?";
}

int pq_tok_char_id(char c)
{
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    for (int id = 4; id <= 30; id++)
        if (vocab[id][0] == c) return id;
    return -1;
}

int pq_tok_special_at(const char *s, size_t n, int *id)
{
    if (n == 0 || s[0] != '<') return 0;
    for (size_t k = 0; k < sizeof literal_specials / sizeof literal_specials[0]; k++) {
        const char *t = vocab[literal_specials[k]];
        size_t l = strlen(t);
        if (l <= n && memcmp(s, t, l) == 0) {
            *id = literal_specials[k];
            return (int)l;
        }
    }
    return 0;
}

pq_status pq_tok_encode(const char *seq, size_t len, const char *record, unsigned flags,
                        int32_t **ids, int64_t *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (!record) record = "(sequence)";
    if (len > 0 && seq[len - 1] == '*') len--;
    int32_t *out = malloc((len + 2) * sizeof *out);
    if (!out) return pq_err(PQ_ERR_RESOURCE, "record '%s': out of memory for %zu tokens", record, len + 2);
    int64_t n = 0;
    out[n++] = PQ_TOK_CLS;
    for (size_t i = 0; i < len;) {
        int id, l = pq_tok_special_at(seq + i, len - i, &id);
        if (l > 0) {
            out[n++] = id;
            i += (size_t)l;
            continue;
        }
        id = pq_tok_char_id(seq[i]);
        if (id < 0) {
            if (!(flags & PQ_TOK_UNKNOWN_TO_UNK)) {
                unsigned char c = (unsigned char)seq[i];
                free(out);
                if (c >= 0x21 && c < 0x7f)
                    return pq_err(PQ_ERR_FORMAT, "record '%s': position %zu: unknown residue '%c'",
                                  record, i + 1, c);
                return pq_err(PQ_ERR_FORMAT, "record '%s': position %zu: unknown residue byte 0x%02x",
                              record, i + 1, c);
            }
            id = PQ_TOK_UNK;
        }
        out[n++] = id;
        i++;
    }
    if (n == 1) {
        free(out);
        return pq_err(PQ_ERR_FORMAT, "record '%s': no residues", record);
    }
    out[n++] = PQ_TOK_EOS;
    *ids = out;
    *n_ids = n;
    return PQ_OK;
}
