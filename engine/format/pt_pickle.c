/* SPDX-License-Identifier: Apache-2.0 */
/* pt_pickle.c - the restricted unpickler (see pt_pickle.h). Opcode numbers
 * and their arguments follow CPython's Lib/pickletools.py. Every value is
 * allocated in the context and freed with it; the stack, the marks and the
 * memo hold borrowed pointers, so a pickle that references a value twice (or
 * puts a list inside itself) costs nothing extra and frees cleanly. */
#include "format/pt_pickle.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VALUES ((int64_t)1 << 20)   /* a 15B ESM-2 needs ~10^4 */
#define MAX_MARKS 1024                  /* nesting of MARK-delimited groups */
#define MAX_STACK ((int64_t)1 << 20)
#define MAX_MEMO ((int64_t)1 << 22)
#define MAX_GLOBAL_NAME 512

struct pq_pk {
    const char *what;
    const unsigned char *buf;
    size_t n, pos, op_pos;
    unsigned char op;
    pq_pk_value **all;
    int64_t n_all, cap_all;
    pq_pk_value **stack;
    int64_t sp, cap_stack;
    int64_t marks[MAX_MARKS];
    int n_marks;
    pq_pk_value **memo;
    int64_t cap_memo, memo_len;
    pq_pk_value **storages; /* every storage a persistent id named */
    int64_t n_storages, cap_storages;
};

static pq_status bad(pq_pk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static pq_status bad(pq_pk *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pq_err(PQ_ERR_FORMAT, "%s: pickle: %s (opcode 0x%02x at byte %zu)", c->what, msg, c->op, c->op_pos);
}

const char *pq_pk_kind_name(pq_pk_kind k)
{
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list",
                                        "dict", "global", "placeholder", "storage", "tensor", "mark"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* Append v to the growable array (*arr)[0..*n) of capacity *cap. */
static pq_status append(pq_pk_value ***arr, int64_t *n, int64_t *cap, pq_pk_value *v)
{
    if (*n == *cap) {
        int64_t c2 = *cap ? 2 * *cap : 16;
        pq_pk_value **p = realloc(*arr, (size_t)c2 * sizeof *p);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory for %lld pickle values", (long long)c2);
        *arr = p;
        *cap = c2;
    }
    (*arr)[(*n)++] = v;
    return PQ_OK;
}

static pq_status new_val(pq_pk *c, pq_pk_kind kind, pq_pk_value **out)
{
    if (c->n_all >= MAX_VALUES) return bad(c, "more than %lld values", (long long)MAX_VALUES);
    pq_pk_value *v = calloc(1, sizeof *v);
    if (!v) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    v->kind = kind;
    pq_status rc = append(&c->all, &c->n_all, &c->cap_all, v);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    return PQ_OK;
}

static pq_status set_str(pq_pk_value *v, const void *s, size_t n)
{
    v->s = malloc(n + 1);
    if (!v->s) return pq_err(PQ_ERR_RESOURCE, "out of memory for a string of %zu bytes", n);
    memcpy(v->s, s, n);
    v->s[n] = '\0';
    v->len = n;
    return PQ_OK;
}

static pq_status add_item(pq_pk_value *v, pq_pk_value *item) { return append(&v->items, &v->n, &v->cap, item); }

static pq_status push(pq_pk *c, pq_pk_value *v)
{
    if (c->sp >= MAX_STACK) return bad(c, "stack deeper than %lld", (long long)MAX_STACK);
    return append(&c->stack, &c->sp, &c->cap_stack, v);
}

static int64_t floor_sp(const pq_pk *c) { return c->n_marks ? c->marks[c->n_marks - 1] : 0; }

static pq_status pop(pq_pk *c, pq_pk_value **v)
{
    if (c->sp <= floor_sp(c)) return bad(c, "stack underflow");
    *v = c->stack[--c->sp];
    return PQ_OK;
}

static pq_status top(pq_pk *c, pq_pk_value **v)
{
    if (c->sp <= floor_sp(c)) return bad(c, "stack underflow");
    *v = c->stack[c->sp - 1];
    return PQ_OK;
}

/* Pop the last mark; the values above it are stack[*start, sp). */
static pq_status pop_mark(pq_pk *c, int64_t *start)
{
    if (!c->n_marks) return bad(c, "no MARK to close");
    *start = c->marks[--c->n_marks];
    return PQ_OK;
}

static pq_status need(pq_pk *c, size_t k)
{
    if (c->n - c->pos < k) return bad(c, "truncated: %zu argument bytes needed, %zu left", k, c->n - c->pos);
    return PQ_OK;
}

static uint64_t le(const unsigned char *p, int k)
{
    uint64_t x = 0;
    for (int i = k - 1; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

/* The opcode's k-byte little-endian unsigned argument. */
static pq_status arg(pq_pk *c, int k, uint64_t *x)
{
    pq_status rc = need(c, (size_t)k);
    if (rc) return rc;
    *x = le(c->buf + c->pos, k);
    c->pos += (size_t)k;
    return PQ_OK;
}

static pq_status read_len(pq_pk *c, int k, size_t *len)
{
    uint64_t x = 0;
    pq_status rc = arg(c, k, &x);
    if (rc) return rc;
    if (x > c->n - c->pos) return bad(c, "a %llu-byte string runs past the end", (unsigned long long)x);
    *len = (size_t)x;
    return PQ_OK;
}

static pq_status push_str(pq_pk *c, pq_pk_kind kind, int len_bytes)
{
    size_t len = 0;
    pq_pk_value *v = NULL;
    pq_status rc = read_len(c, len_bytes, &len);
    if (!rc) rc = new_val(c, kind, &v);
    if (!rc) rc = set_str(v, c->buf + c->pos, len);
    if (!rc) rc = push(c, v);
    c->pos += len;
    return rc;
}

static pq_status push_int(pq_pk *c, int64_t x, pq_pk_kind kind)
{
    pq_pk_value *v = NULL;
    pq_status rc = new_val(c, kind, &v);
    if (rc) return rc;
    v->i = x;
    return push(c, v);
}

/* LONG1 / LONG4: little-endian two's complement of len bytes, at most 8. */
static pq_status push_long(pq_pk *c, int len_bytes)
{
    size_t len = 0;
    pq_status rc = read_len(c, len_bytes, &len);
    if (rc) return rc;
    if (len > 8) return bad(c, "an integer of %zu bytes is beyond 64 bits", len);
    uint64_t x = len ? le(c->buf + c->pos, (int)len) : 0;
    if (len && len < 8 && (c->buf[c->pos + len - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * len);
    c->pos += len;
    return push_int(c, (int64_t)x, PQ_PK_INT);
}

static pq_status read_line(pq_pk *c, const char **s, size_t *n)
{
    const unsigned char *p = c->buf + c->pos;
    size_t left = c->n - c->pos, lim = left < MAX_GLOBAL_NAME ? left : MAX_GLOBAL_NAME;
    const unsigned char *nl = memchr(p, '\n', lim);
    if (!nl) return bad(c, "GLOBAL name without a newline within %d bytes", MAX_GLOBAL_NAME);
    *s = (const char *)p;
    *n = (size_t)(nl - p);
    c->pos += *n + 1;
    return PQ_OK;
}

static pq_status push_global(pq_pk *c, const char *mod, size_t nm, const char *name, size_t nn)
{
    pq_pk_value *v = NULL;
    pq_status rc = new_val(c, PQ_PK_GLOBAL, &v);
    if (rc) return rc;
    char tmp[2 * MAX_GLOBAL_NAME + 2];
    if (nm + nn + 2 > sizeof tmp) return bad(c, "global name longer than %d bytes", 2 * MAX_GLOBAL_NAME);
    memcpy(tmp, mod, nm);
    tmp[nm] = '.';
    memcpy(tmp + nm + 1, name, nn);
    if (memchr(tmp, '\0', nm + nn + 1)) return bad(c, "global name with a NUL byte");
    rc = set_str(v, tmp, nm + nn + 1);
    return rc ? rc : push(c, v);
}

static pq_status push_object(pq_pk *c, const pq_pk_value *from)
{
    pq_pk_value *v = NULL;
    pq_status rc = new_val(c, PQ_PK_OBJECT, &v);
    if (rc) return rc;
    const char *nm = from && (from->kind == PQ_PK_GLOBAL || from->kind == PQ_PK_OBJECT) ? from->s : "?";
    rc = set_str(v, nm, strlen(nm));
    return rc ? rc : push(c, v);
}

/* Values stack[start, sp) into a new container of `kind` pushed in their place. */
static pq_status collect(pq_pk *c, pq_pk_kind kind, int64_t start)
{
    pq_pk_value *v = NULL;
    pq_status rc = new_val(c, kind, &v);
    for (int64_t i = start; !rc && i < c->sp; i++) rc = add_item(v, c->stack[i]);
    if (rc) return rc;
    if (kind == PQ_PK_DICT && v->n % 2) return bad(c, "DICT with an odd number of items");
    c->sp = start;
    return push(c, v);
}

/* ------------------------------------------------------------ torch */

static const struct {
    const char *name;
    pq_dtype dtype;
} storage_types[] = {
    {"torch.FloatStorage", PQ_DT_F32},  {"torch.HalfStorage", PQ_DT_F16},
    {"torch.BFloat16Storage", PQ_DT_BF16}, {"torch.DoubleStorage", PQ_DT_F64},
    {"torch.LongStorage", PQ_DT_I64},   {"torch.IntStorage", PQ_DT_I32},
    {"torch.ShortStorage", PQ_DT_I16},  {"torch.CharStorage", PQ_DT_I8},
    {"torch.ByteStorage", PQ_DT_U8},    {"torch.BoolStorage", PQ_DT_BOOL},
};

/* BINPERSID: ('storage', <storage type>, key, location, numel). */
static pq_status persistent_load(pq_pk *c, const pq_pk_value *pid)
{
    if (pid->kind != PQ_PK_TUPLE || (pid->n != 5 && pid->n != 6) || pid->items[0]->kind != PQ_PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return bad(c, "a persistent id other than ('storage', type, key, location, numel[, view])");
    /* the legacy format's sixth item describes a view into another storage */
    if (pid->n == 6 && pid->items[5]->kind != PQ_PK_NONE)
        return bad(c, "a storage view (legacy format) is not supported; re-save with torch.save under PyTorch >= 1.6");
    const pq_pk_value *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != PQ_PK_GLOBAL) return bad(c, "storage type is a %s, not a global", pq_pk_kind_name(type->kind));
    if (key->kind != PQ_PK_STR || key->len != strlen(key->s) || !key->len)
        return bad(c, "storage key is not a non-empty string");
    if (numel->kind != PQ_PK_INT || numel->i < 0) return bad(c, "storage size is not a non-negative integer");
    for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++)
        if (strcmp(type->s, storage_types[i].name) == 0) {
            pq_pk_value *v = NULL;
            pq_status rc = new_val(c, PQ_PK_STORAGE, &v);
            if (!rc) rc = set_str(v, key->s, key->len);
            if (rc) return rc;
            v->dtype = storage_types[i].dtype;
            v->i = numel->i;
            if ((rc = append(&c->storages, &c->n_storages, &c->cap_storages, v))) return rc;
            return push(c, v);
        }
    return bad(c, "storage type %s is not supported", type->s);
}

static bool int_tuple(const pq_pk_value *t, int max)
{
    if (t->kind != PQ_PK_TUPLE || t->n > max) return false;
    for (int64_t i = 0; i < t->n; i++)
        if (t->items[i]->kind != PQ_PK_INT || t->items[i]->i < 0) return false;
    return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]) */
static pq_status rebuild_tensor(pq_pk *c, const pq_pk_value *args)
{
    if (args->n != 6 && args->n != 7) return bad(c, "_rebuild_tensor_v2 with %lld arguments", (long long)args->n);
    const pq_pk_value *st = args->items[0], *off = args->items[1], *size = args->items[2], *stride = args->items[3];
    if (st->kind != PQ_PK_STORAGE)
        return bad(c, "_rebuild_tensor_v2's storage is a %s (%s), not a storage of the archive",
                   pq_pk_kind_name(st->kind), st->s ? st->s : "-");
    if (off->kind != PQ_PK_INT || off->i < 0) return bad(c, "_rebuild_tensor_v2's offset is not a non-negative int");
    if (!int_tuple(size, PQ_MAX_DIMS) || !int_tuple(stride, PQ_MAX_DIMS) || size->n != stride->n)
        return bad(c, "_rebuild_tensor_v2's size and stride are not two tuples of the same at most %d non-negative ints",
                   PQ_MAX_DIMS);
    pq_pk_value *v = NULL;
    pq_status rc = new_val(c, PQ_PK_TENSOR, &v);
    if (rc) return rc;
    v->storage = st;
    v->dtype = st->dtype;
    v->i = off->i;
    v->ndim = (int)size->n;
    for (int d = 0; d < v->ndim; d++) {
        v->shape[d] = size->items[d]->i;
        v->stride[d] = stride->items[d]->i;
    }
    return push(c, v);
}

static pq_status reduce(pq_pk *c, const pq_pk_value *fn, const pq_pk_value *args)
{
    if (fn->kind == PQ_PK_OBJECT) return push_object(c, fn);
    if (fn->kind != PQ_PK_GLOBAL) return bad(c, "REDUCE calls a %s", pq_pk_kind_name(fn->kind));
    if (args->kind != PQ_PK_TUPLE) return bad(c, "REDUCE of %s with a %s for arguments", fn->s, pq_pk_kind_name(args->kind));
    if (strcmp(fn->s, "collections.OrderedDict") == 0 && args->n == 0) {
        pq_pk_value *v = NULL;
        pq_status rc = new_val(c, PQ_PK_DICT, &v);
        return rc ? rc : push(c, v);
    }
    if (strcmp(fn->s, "torch._utils._rebuild_tensor_v2") == 0) return rebuild_tensor(c, args);
    if (strcmp(fn->s, "torch._utils._rebuild_parameter") == 0 ||
        strcmp(fn->s, "torch._utils._rebuild_parameter_with_state") == 0) {
        if (args->n < 1 || args->items[0]->kind != PQ_PK_TENSOR)
            return bad(c, "%s of something that is not a tensor", fn->s);
        return push(c, args->items[0]);
    }
    return push_object(c, fn);
}

/* ------------------------------------------------------------ memo */

static pq_status memo_put(pq_pk *c, uint64_t idx)
{
    pq_pk_value *v = NULL;
    pq_status rc = top(c, &v);
    if (rc) return rc;
    if (idx >= (uint64_t)MAX_MEMO) return bad(c, "memo index %llu beyond %lld", (unsigned long long)idx, (long long)MAX_MEMO);
    if ((int64_t)idx >= c->cap_memo) {
        int64_t cap = c->cap_memo ? c->cap_memo : 256;
        while (cap <= (int64_t)idx) cap *= 2;
        pq_pk_value **p = realloc(c->memo, (size_t)cap * sizeof *p);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        memset(p + c->cap_memo, 0, (size_t)(cap - c->cap_memo) * sizeof *p);
        c->memo = p;
        c->cap_memo = cap;
    }
    if (!c->memo[idx]) c->memo_len++;
    c->memo[idx] = v;
    return PQ_OK;
}

static pq_status memo_get(pq_pk *c, uint64_t idx)
{
    if (idx >= (uint64_t)c->cap_memo || !c->memo[idx]) return bad(c, "memo index %llu was never set", (unsigned long long)idx);
    return push(c, c->memo[idx]);
}

/* ------------------------------------------------------------ the loop */

static pq_status step(pq_pk *c, bool *done)
{
    pq_status rc;
    pq_pk_value *a = NULL, *b = NULL, *d = NULL, *v = NULL;
    int64_t start = 0;
    uint64_t x = 0;
    c->op_pos = c->pos;
    c->op = c->buf[c->pos++];
    switch (c->op) {
    case 0x80: /* PROTO */
        if ((rc = need(c, 1))) return rc;
        if (c->buf[c->pos] < 2 || c->buf[c->pos] > 5) return bad(c, "pickle protocol %u (2 to 5 supported)", c->buf[c->pos]);
        c->pos++;
        return PQ_OK;
    case 0x95: /* FRAME: a length hint only */
        return arg(c, 8, &x);
    case '.': /* STOP */
        *done = true;
        return PQ_OK;
    case '(': /* MARK */
        if (c->n_marks >= MAX_MARKS) return bad(c, "MARKs nested deeper than %d", MAX_MARKS);
        c->marks[c->n_marks++] = c->sp;
        return PQ_OK;
    case '0': /* POP */
        if (c->sp > floor_sp(c)) return pop(c, &a);
        if ((rc = pop_mark(c, &start))) return rc;
        c->sp = start;
        return PQ_OK;
    case '1': /* POP_MARK */
        if ((rc = pop_mark(c, &start))) return rc;
        c->sp = start;
        return PQ_OK;
    case '2': /* DUP */
        if ((rc = top(c, &a))) return rc;
        return push(c, a);
    case 'N': return push_int(c, 0, PQ_PK_NONE);
    case 0x88: return push_int(c, 1, PQ_PK_BOOL);
    case 0x89: return push_int(c, 0, PQ_PK_BOOL);
    case 'J': /* BININT, signed */
        return (rc = arg(c, 4, &x)) ? rc : push_int(c, (int32_t)(uint32_t)x, PQ_PK_INT);
    case 'K': case 'M': /* BININT1, BININT2 */
        return (rc = arg(c, c->op == 'K' ? 1 : 2, &x)) ? rc : push_int(c, (int64_t)x, PQ_PK_INT);
    case 0x8a: return push_long(c, 1); /* LONG1 */
    case 0x8b: return push_long(c, 4); /* LONG4 */
    case 'G': { /* BINFLOAT, big-endian */
        if ((rc = need(c, 8))) return rc;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = bits << 8 | c->buf[c->pos + (size_t)i];
        c->pos += 8;
        if ((rc = new_val(c, PQ_PK_FLOAT, &v))) return rc;
        memcpy(&v->f, &bits, 8);
        return push(c, v);
    }
    case 'X': return push_str(c, PQ_PK_STR, 4);      /* BINUNICODE */
    case 0x8c: return push_str(c, PQ_PK_STR, 1);     /* SHORT_BINUNICODE */
    case 0x8d: return push_str(c, PQ_PK_STR, 8);     /* BINUNICODE8 */
    case 'U': return push_str(c, PQ_PK_BYTES, 1);    /* SHORT_BINSTRING */
    case 'T': return push_str(c, PQ_PK_BYTES, 4);    /* BINSTRING */
    case 'C': return push_str(c, PQ_PK_BYTES, 1);    /* SHORT_BINBYTES */
    case 'B': return push_str(c, PQ_PK_BYTES, 4);    /* BINBYTES */
    case 0x8e: return push_str(c, PQ_PK_BYTES, 8);   /* BINBYTES8 */
    case ')': return collect(c, PQ_PK_TUPLE, c->sp); /* EMPTY_TUPLE */
    case ']': return collect(c, PQ_PK_LIST, c->sp);  /* EMPTY_LIST */
    case '}': return collect(c, PQ_PK_DICT, c->sp);  /* EMPTY_DICT */
    case 0x8f: return collect(c, PQ_PK_LIST, c->sp); /* EMPTY_SET, kept as a list */
    case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
        start = c->sp - (c->op - 0x84);
        if (start < floor_sp(c)) return bad(c, "stack underflow");
        return collect(c, PQ_PK_TUPLE, start);
    case 't': case 'l': case 'd': case 0x91: /* TUPLE, LIST, DICT, FROZENSET */
        if ((rc = pop_mark(c, &start))) return rc;
        return collect(c, c->op == 't' ? PQ_PK_TUPLE : c->op == 'd' ? PQ_PK_DICT : PQ_PK_LIST, start);
    case 'a': /* APPEND */
        if ((rc = pop(c, &a)) || (rc = top(c, &b))) return rc;
        if (b->kind == PQ_PK_OBJECT) return PQ_OK;
        if (b->kind != PQ_PK_LIST) return bad(c, "APPEND to a %s", pq_pk_kind_name(b->kind));
        return add_item(b, a);
    case 'e': case 0x90: /* APPENDS, ADDITEMS */
    case 'u':            /* SETITEMS */
        if ((rc = pop_mark(c, &start))) return rc;
        if (start <= floor_sp(c)) return bad(c, "stack underflow");
        b = c->stack[start - 1];
        if (c->op == 'u' && (c->sp - start) % 2) return bad(c, "SETITEMS with an odd number of items");
        if (b->kind != PQ_PK_OBJECT) {
            if (b->kind != (c->op == 'u' ? PQ_PK_DICT : PQ_PK_LIST))
                return bad(c, "%s to a %s", c->op == 'u' ? "SETITEMS" : "APPENDS", pq_pk_kind_name(b->kind));
            for (int64_t i = start; i < c->sp; i++)
                if ((rc = add_item(b, c->stack[i]))) return rc;
        }
        c->sp = start;
        return PQ_OK;
    case 's': /* SETITEM */
        if ((rc = pop(c, &a)) || (rc = pop(c, &b)) || (rc = top(c, &d))) return rc;
        if (d->kind == PQ_PK_OBJECT) return PQ_OK;
        if (d->kind != PQ_PK_DICT) return bad(c, "SETITEM on a %s", pq_pk_kind_name(d->kind));
        if ((rc = add_item(d, b))) return rc;
        return add_item(d, a);
    case 'c': { /* GLOBAL module\nname\n */
        const char *mod = NULL, *name = NULL;
        size_t nm = 0, nn = 0;
        if ((rc = read_line(c, &mod, &nm)) || (rc = read_line(c, &name, &nn))) return rc;
        return push_global(c, mod, nm, name, nn);
    }
    case 0x93: /* STACK_GLOBAL */
        if ((rc = pop(c, &a)) || (rc = pop(c, &b))) return rc;
        if (a->kind != PQ_PK_STR || b->kind != PQ_PK_STR) return bad(c, "STACK_GLOBAL of non-strings");
        return push_global(c, b->s, b->len, a->s, a->len);
    case 'R': /* REDUCE */
        if ((rc = pop(c, &a)) || (rc = pop(c, &b))) return rc;
        return reduce(c, b, a);
    case 0x81: /* NEWOBJ cls args */
    case 0x92: /* NEWOBJ_EX cls args kwargs */
        if (c->op == 0x92 && (rc = pop(c, &a))) return rc;
        if ((rc = pop(c, &a)) || (rc = pop(c, &b))) return rc;
        if (b->kind != PQ_PK_GLOBAL && b->kind != PQ_PK_OBJECT) return bad(c, "NEWOBJ of a %s", pq_pk_kind_name(b->kind));
        if (b->kind == PQ_PK_GLOBAL && strcmp(b->s, "collections.OrderedDict") == 0)
            return collect(c, PQ_PK_DICT, c->sp);
        return push_object(c, b);
    case 'b': /* BUILD: the state is data; nothing's __setstate__ runs */
        if ((rc = pop(c, &a)) || (rc = top(c, &b))) return rc;
        return PQ_OK;
    case 'Q': /* BINPERSID */
        if ((rc = pop(c, &a))) return rc;
        return persistent_load(c, a);
    case 'q': case 'r': /* BINPUT, LONG_BINPUT */
        return (rc = arg(c, c->op == 'q' ? 1 : 4, &x)) ? rc : memo_put(c, x);
    case 0x94: /* MEMOIZE */
        return memo_put(c, (uint64_t)c->memo_len);
    case 'h': case 'j': /* BINGET, LONG_BINGET */
        return (rc = arg(c, c->op == 'h' ? 1 : 4, &x)) ? rc : memo_get(c, x);
    default:
        if (c->op >= 0x20 && c->op < 0x7f)
            return bad(c, "opcode '%c' is not one torch.save writes; refused", c->op);
        return bad(c, "unknown opcode; refused");
    }
}

pq_status pq_pk_load(const char *what, const unsigned char *buf, size_t n, pq_pk **ctx, const pq_pk_value **out,
                     size_t *used)
{
    *out = NULL;
    pq_pk *c = calloc(1, sizeof *c);
    *ctx = c;
    if (!c) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    c->what = what;
    c->buf = buf;
    c->n = n;
    bool done = false;
    pq_status rc = PQ_OK;
    while (!rc && !done) {
        if (c->pos >= c->n) return pq_err(PQ_ERR_FORMAT, "%s: pickle: ends without STOP after %zu bytes", what, n);
        rc = step(c, &done);
    }
    if (rc) return rc;
    if (c->n_marks || c->sp != 1) return bad(c, "STOP with %lld values and %d marks on the stack", (long long)c->sp, c->n_marks);
    *out = c->stack[0];
    if (used) *used = c->pos;
    return PQ_OK;
}

pq_pk_value *const *pq_pk_storages(const pq_pk *ctx, int64_t *n)
{
    *n = ctx->n_storages;
    return ctx->storages;
}

void pq_pk_free(pq_pk *c)
{
    if (!c) return;
    for (int64_t i = 0; i < c->n_all; i++) {
        free(c->all[i]->s);
        free(c->all[i]->items);
        free(c->all[i]);
    }
    free(c->all);
    free(c->stack);
    free(c->memo);
    free(c->storages);
    free(c);
}

const pq_pk_value *pq_pk_dict_get(const pq_pk_value *d, const char *key)
{
    if (!d || d->kind != PQ_PK_DICT) return NULL;
    for (int64_t i = d->n - 2; i >= 0; i -= 2)
        if (d->items[i]->kind == PQ_PK_STR && strcmp(d->items[i]->s, key) == 0) return d->items[i + 1];
    return NULL;
}
