/* SPDX-License-Identifier: Apache-2.0 */
/* bench_hist.c - throughput of statistics collection at one site (min/max,
 * per-channel absmax, IEEE-bit histogram) on one core, with the best kernels
 * this CPU runs or the context PQ_KERNELS names (pq_hardware_select).
 * usage: bench_hist FILE.f32 DIM [REPEATS]  -> prints "GB/s <value>" */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "calib/calib_stats.h"
#include "base/pq_mem.h"
#include "pipeline/config.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: bench_hist FILE.f32 DIM [REPEATS]\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* allocated as the forward allocates the activations it observes */
    float *x = pq_alloc_big((size_t)bytes);
    if (!x || fread(x, 1, (size_t)bytes, f) != (size_t)bytes) { fprintf(stderr, "read failed\n"); return 1; }
    fclose(f);
    int64_t dim = atoll(argv[2]), rows = bytes / 4 / dim;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    pq_calib *c;
    pq_ops ops;
    if (pq_hardware_select("cpu", &ops)) {
        fprintf(stderr, "bench_hist: %s\n", pq_err_detail());
        return 2;
    }
    if (pq_calib_create(1, (int)dim, 4, &c)) return 1;
    pq_calib_site_add(&ops, &c->sites[0], x, rows, dim); /* warm: blocks allocated */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        pq_calib_site_add(&ops, &c->sites[0], x, rows, dim);
        pq_calib_flush(c); /* counted: the uint64 store holds the result */
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("kernels %s\nGB/s %.3f\n", ops.name, (double)rows * dim * 4 / best / 1e9);
    pq_calib_free(c);
    free(x);
    return 0;
}
