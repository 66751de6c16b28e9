/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_safetensors.c - a safetensors file of any bytes: header length, JSON
 * header, dtypes, shapes, offsets and their tiling; then every float tensor's
 * rows are converted (reads inside the mapping only) and the ESM-2
 * architecture is recognised from the names and shapes. */
#include <stdlib.h>

#include "format/esm2.h"
#include "format/safetensors.h"
#include "fuzz_file.h"

/* Convert at most this many elements per input: the reads, not the volume,
 * are what is checked. */
#define MAX_ELEMS (1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_err_clear();
    const char *p = pq_fuzz_write(0, "model.safetensors", data, size);
    pq_st_model *m = NULL;
    pq_status st = pq_st_open(p, &m);
    pq_fuzz_check_status(st);
    if (st != PQ_OK) return 0;
    int64_t budget = MAX_ELEMS;
    for (int64_t i = 0; i < pq_st_count(m); i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        int64_t rows = t->ndim >= 2 ? t->shape[0] : 1; /* 0-D and 1-D: one row */
        if (rows == 0 || t->n_elems == 0 || t->n_elems > budget) continue;
        float *dst = malloc((size_t)t->n_elems * sizeof *dst);
        if (!dst) abort();
        pq_fuzz_check_status(pq_st_read_rows_f32(m, t, 0, rows, dst));
        free(dst);
        budget -= t->n_elems;
    }
    pq_esm2_config cfg;
    pq_fuzz_check_status(pq_esm2_detect(m, &cfg));
    pq_st_close(m);
    return 0;
}
