/* SPDX-License-Identifier: Apache-2.0 */
/* pt_pickle.h - a restricted unpickler for the data.pkl that torch.save
 * writes.
 *
 * It interprets the binary pickle opcodes (protocols 2 to 5) and builds plain
 * values: None, booleans, integers, floats, strings, bytes, tuples, lists,
 * dicts. It calls nothing. Exactly three things are given meaning:
 * collections.OrderedDict (an empty dict), torch._utils._rebuild_tensor_v2
 * (a tensor: storage, offset, shape, stride) and torch._utils._rebuild_parameter
 * (the tensor it wraps); a storage is a persistent id ('storage', <torch
 * storage type>, key, location, numel). Any other global is an inert
 * placeholder that records its name; calling it (REDUCE, NEWOBJ) or setting
 * its state (BUILD) gives another placeholder that records the name it came
 * from. Unknown opcodes, text-protocol opcodes and inconsistent pickles are
 * PQ_ERR_FORMAT; sizes and nesting are bounded. */
#ifndef PQ_PT_PICKLE_H
#define PQ_PT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/pq_err.h"

typedef enum pq_pk_kind {
    PQ_PK_NONE = 0, PQ_PK_BOOL, PQ_PK_INT, PQ_PK_FLOAT, PQ_PK_STR, PQ_PK_BYTES,
    PQ_PK_TUPLE, PQ_PK_LIST, PQ_PK_DICT,
    PQ_PK_GLOBAL,  /* a reference to module.name, never called */
    PQ_PK_OBJECT,  /* an inert placeholder: what calling `name` would have made */
    PQ_PK_STORAGE, /* a persistent id naming a storage of the archive */
    PQ_PK_TENSOR,  /* built by torch._utils._rebuild_tensor_v2 */
    PQ_PK_MARK     /* internal: never in a finished value */
} pq_pk_kind;

typedef struct pq_pk_value pq_pk_value;
struct pq_pk_value {
    pq_pk_kind kind;
    int64_t i;                 /* INT, BOOL; STORAGE: numel; TENSOR: storage offset (elements) */
    double f;                  /* FLOAT */
    char *s;                   /* STR, BYTES; GLOBAL/OBJECT: "module.name"; STORAGE: key */
    size_t len;                /* bytes of s */
    pq_pk_value **items;       /* TUPLE, LIST: n items; DICT: n keys and values, interleaved */
    int64_t n, cap;
    pq_dtype dtype;            /* STORAGE, TENSOR */
    const pq_pk_value *storage;/* TENSOR */
    int ndim;                  /* TENSOR */
    int64_t shape[PQ_MAX_DIMS], stride[PQ_MAX_DIMS];
};

typedef struct pq_pk pq_pk;

/* Unpickle the pickle at the start of buf[0..n) (borrowed; `what` names it
 * in errors). On success *out is the root value, owned by *ctx (free both
 * with pq_pk_free), and *used (when not NULL) the bytes up to and including
 * its STOP. A persistent id may also be the legacy format's
 * ('storage', type, key, location, numel, None). */
pq_status pq_pk_load(const char *what, const unsigned char *buf, size_t n, pq_pk **ctx, const pq_pk_value **out,
                     size_t *used);
void pq_pk_free(pq_pk *ctx); /* NULL is fine */

/* Every storage the pickle's persistent ids named, in order (borrowed). */
pq_pk_value *const *pq_pk_storages(const pq_pk *ctx, int64_t *n);

/* The value of string key `key` in DICT d, NULL if absent or d is no dict. */
const pq_pk_value *pq_pk_dict_get(const pq_pk_value *d, const char *key);

/* Short name of a kind ("dict", "placeholder", ...). */
const char *pq_pk_kind_name(pq_pk_kind k);

#endif
