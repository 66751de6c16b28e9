/* SPDX-License-Identifier: Apache-2.0 */
/* ckpt_testutil.h - helpers for the checkpoint tests: temp dirs, raw and
 * safetensors file builders, and a hand-written list of ESM-2 HF names. */
#ifndef PQ_CKPT_TESTUTIL_H
#define PQ_CKPT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The per-test temporary directory and the cmocka setup/teardown that make
 * and remove it. */
extern char *g_dir;
int setup(void **state);
int teardown(void **state);

/* Fresh directory under $TMPDIR or /tmp; returns owned path. Aborts on failure. */
char *tu_mkdtemp(void);
/* Remove a directory tree made by tu_mkdtemp. */
void tu_rm_rf(const char *dir);
/* dir + "/" + name, owned. */
char *tu_path(const char *dir, const char *name);
/* Write bytes verbatim. */
void tu_write_raw(const char *path, const void *buf, size_t n);
/* Write a safetensors file: 8-byte LE length of json, json, then data. If
 * data is NULL the data area is n_data zero bytes (sparse). */
void tu_write_st(const char *path, const char *json, const void *data, size_t n_data);
/* sha256 of the concatenation of the files, via the sha256sum tool (an
 * independent implementation). hex gets 64 chars + NUL. */
void tu_sha256sum(const char *const *paths, int n, char hex[65]);
/* Tree digest of the files (in order) with `chunk`-byte chunks, computed by
 * /usr/bin/python3's hashlib (the docs/FORMAT.md recipe): 64 hex + NUL. */
void tu_tree_hash_py(const char *const *paths, int n, long chunk, char hex[65]);

/* A tensor list for a hand-built ESM-2 checkpoint. */
typedef struct tu_tensor {
    char name[128];
    const char *dtype;
    int ndim;
    int64_t shape[2];
} tu_tensor;

/* The HF tensor list of an ESM-2 of L layers, width D, head_dim hd, V=33,
 * written out from esm2.md 4.2 (not from the library's table). with_inv /
 * with_contact / with_decoder select optional tensors. Returns the count;
 * out must hold L*17 + 12 entries. */
int tu_esm2_tensors(int L, int D, int hd, int with_inv, int with_contact, int with_decoder,
                    tu_tensor *out);
/* Drop the entry named `name`; returns the new count. */
int tu_drop(tu_tensor *t, int n, const char *name);
/* Write t[0..n) as a safetensors file of zero data (sparse). */
void tu_write_tensors(const char *path, const tu_tensor *t, int n);

#endif
