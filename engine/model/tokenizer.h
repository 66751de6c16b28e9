/* SPDX-License-Identifier: Apache-2.0 */
/* tokenizer.h - the 33-token ESM-2 alphabet (docs/esm2.md section 2) and the
 * encoding of residue strings into token ids with <cls> ... <eos>.
 *
 * Input rule: the uppercase letters of the alphabet (LAGVSERTIDPKQNFYMHWCXBUZO)
 * and '.', '-' map to their ids; lowercase letters are uppercased first; one
 * '*' at the very end is dropped; the literal strings <mask>, <unk>, <cls>,
 * <eos> and <null_1> are single tokens. Anything else (including <pad>, which
 * fair-esm would treat as padding) is an error naming the record and the
 * 1-based character position, unless PQ_TOK_UNKNOWN_TO_UNK maps each such
 * character to <unk>. */
#ifndef PQ_TOKENIZER_H
#define PQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/pq_err.h"

enum {
    PQ_TOK_CLS = 0, PQ_TOK_PAD = 1, PQ_TOK_EOS = 2, PQ_TOK_UNK = 3,
    PQ_TOK_NULL1 = 31, PQ_TOK_MASK = 32, PQ_TOK_VOCAB = 33,
    /* ids 4..23: the 20 standard amino acids L A G V S E R T I D P K Q N F Y M H W C */
    PQ_TOK_AA_FIRST = 4, PQ_TOK_AA_LAST = 23
};

/* Flags of pq_tok_encode. */
#define PQ_TOK_UNKNOWN_TO_UNK 1u /* unknown character -> <unk> instead of an error */

/* The token string of id ("<cls>", "L", ...), "?" when out of range. */
const char *pq_tok_str(int id);

/* Id of one residue character after uppercasing, -1 if not in the alphabet. */
int pq_tok_char_id(char c);

/* Length in characters of the special token string starting at s
 * ("<mask>" -> 6) and its id in *id; 0 when s does not start one. */
int pq_tok_special_at(const char *s, size_t n, int *id);

/* Encode seq[0..len) as <cls> ids <eos>. `record` names the input in errors
 * (borrowed, may be NULL). Returns owned *ids (free()) and *n_ids = residues + 2.
 * Errors: PQ_ERR_FORMAT for an unknown character ("record 'x': position 7:
 * unknown residue 'J'") or when no residue remains; PQ_ERR_RESOURCE. */
pq_status pq_tok_encode(const char *seq, size_t len, const char *record, unsigned flags,
                        int32_t **ids, int64_t *n_ids);

#endif
