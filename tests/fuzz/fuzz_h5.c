/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_h5.c - an HDF5 file of any bytes given to the readers of quantized
 * models (pq_h5r_*: what inspect, score, evaluate and embed open: every
 * entry's float or quantized data, metrics, provenance, static activation
 * parameters, with and without the data checksums; the /smoothquant group)
 * and of calibration stores (pq_calib_h5_load). The input is written to a
 * temporary file and opened by path, the way a user's file arrives (HDF5's
 * core driver over the bytes in memory measured no faster: the file stays in
 * the page cache). Seeds: tests/fuzz/corpus/h5, written by write_h5_seeds.c.
 *
 * Speed (docs/PERFORMANCE.md, "Reliability"): each file open makes HDF5
 * allocate its metadata cache (about 1 MB, zeroed), which its free lists
 * are too small by default to keep, so under ASan every open mapped fresh
 * pages; LLVMFuzzerInitialize raises the limits so the blocks are reused.
 * The free lists also leave more mallocs than frees after most inputs,
 * which makes libFuzzer run each such input twice and scan the heap for
 * leaks; scripts/fuzz.sh passes -detect_leaks=0 to this harness only, and
 * LeakSanitizer checks the heap at the exit of every run (or fork job)
 * instead. */
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "calib/calib_stats.h"
#include "format/calib_h5.h"
#include "format/h5model.h"
#include "format/h5smooth.h"
#include "fuzz_file.h"
#include "quant/qtensor.h"
#include "quant/smooth.h"

/* Read at most this many elements per input. */
#define MAX_ELEMS (1 << 18)

/* Every entry's data (within the budget), its codes and parameters, metrics
 * and activation parameters. */
static void read_entries(pq_h5r *r, const char *p, bool all)
{
    int64_t budget = MAX_ELEMS;
    for (int64_t i = 0; i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        int64_t n = 1;
        for (int d = 0; d < e->ndim; d++) n *= e->shape[d] > 0 ? e->shape[d] : 1;
        if (n > budget) continue;
        budget -= n;
        float *dst = malloc((size_t)n * sizeof *dst);
        if (!dst) abort();
        pq_fuzz_check_status(pq_h5r_read_f32(r, e, dst));
        free(dst);
        if (!all) continue;
        if (e->quantized) {
            pq_qtensor qt;
            pq_status st = pq_h5r_read_qtensor(r, e, &qt);
            pq_fuzz_check_status(st);
            if (st == PQ_OK) pq_qtensor_free(&qt);
            float scale;
            int32_t zp;
            bool found;
            pq_fuzz_check_status(pq_h5_read_act_qparams(p, e->name, &scale, &zp, &found));
        }
        if (e->has_metrics) {
            pq_qmetrics m;
            pq_fuzz_check_status(pq_h5r_read_metrics(r, e->name, &m));
        }
    }
}

/* The readers as inspect, score, evaluate and embed use them: checksums
 * verified (the default), the whole file's check, then once more with the
 * data checksums off (a corrupt value must still be refused or read, never
 * crash). */
static void read_model(const char *p)
{
    pq_h5r *r = NULL;
    pq_status st = pq_h5r_open(p, &r);
    pq_fuzz_check_status(st);
    if (st != PQ_OK) return;
    read_entries(r, p, true);
    pq_fuzz_check_status(pq_h5r_verify_data(r));
    char *v = NULL;
    pq_fuzz_check_status(pq_h5r_provenance(r, "command", &v));
    free(v);
    pq_fuzz_check_status(pq_h5r_set_verify(r, false));
    read_entries(r, p, false);
    pq_h5r_close(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const int lim = 64 << 20; /* bytes on each kind of free list, and on each list */
    if (H5set_free_list_limits(lim, lim, lim, lim, lim, lim) < 0) {
        fprintf(stderr, "fuzz_h5: H5set_free_list_limits failed\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_err_clear();
    const char *p = pq_fuzz_write(0, "in.h5", data, size);
    read_model(p);
    pq_smooth *sm = NULL;
    pq_fuzz_check_status(pq_h5_read_smooth(p, &sm));
    pq_smooth_free(sm);
    pq_calib *c = NULL;
    pq_fuzz_check_status(pq_calib_h5_load(p, &c));
    pq_calib_free(c);
    return 0;
}
