/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_ckpt.c - open a checkpoint, check its table against its files and
 * read it. */
#include "fuzz_ckpt.h"

#include <stdio.h>
#include <stdlib.h>

#include "format/esm2.h"
#include "format/safetensors.h"
#include "fuzz_file.h"

/* Convert at most this many elements per input: the reads, not the volume,
 * are what is checked. */
#define MAX_ELEMS (1 << 16)

/* The tensor's bytes are inside its file and are its elements' bytes. */
static void check_range(const pq_st_model *m, const pq_st_tensor *t)
{
    size_t file_bytes = 0;
    const unsigned char *map = pq_st_file_map(m, t->file_idx, &file_bytes);
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    if (!map || t->offset > file_bytes || t->n_bytes > file_bytes - t->offset || n != t->n_elems ||
        t->n_bytes != (size_t)t->n_elems * pq_dtype_size(t->dtype) ||
        (const unsigned char *)pq_st_data(m, t) != map + t->offset) {
        fprintf(stderr, "fuzz: tensor '%s': %zu bytes at offset %llu (file %zu bytes), %lld elements of %zu bytes\n",
                t->name, t->n_bytes, (unsigned long long)t->offset, file_bytes, (long long)t->n_elems,
                pq_dtype_size(t->dtype));
        abort();
    }
}

void pq_fuzz_read_checkpoint(const char *path)
{
    pq_st_model *m = NULL;
    pq_err_clear();
    pq_status st = pq_st_open(path, &m);
    pq_fuzz_check_status(st);
    if (st != PQ_OK) return;
    int64_t budget = MAX_ELEMS;
    for (int64_t i = 0; i < pq_st_count(m); i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        check_range(m, t);
        int64_t rows = t->ndim >= 2 ? t->shape[0] : 1; /* 0-D and 1-D: one row */
        if (!pq_dtype_is_float(t->dtype) || rows == 0 || t->n_elems == 0 || t->n_elems > budget) continue;
        float *dst = malloc((size_t)t->n_elems * sizeof *dst);
        if (!dst) abort();
        pq_fuzz_check_status(pq_st_read_rows_f32(m, t, 0, rows, dst));
        free(dst);
        budget -= t->n_elems;
    }
    pq_esm2_config cfg;
    pq_fuzz_check_status(pq_esm2_detect(m, &cfg));
    pq_st_close(m);
}
