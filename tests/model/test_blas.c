/* SPDX-License-Identifier: Apache-2.0 */
/* test_blas.c - the BLAS is not in the process until pq_blas_load; loading
 * it leaves no OpenBLAS worker thread running; SGEMM through it is exact on
 * small integers and a threaded call still works (and restarts the pool). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "model/blas.h"
#include "pq_config.h"

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* Whether a mapping of a file named like `soname` is in this process. */
static int mapped(const char *soname)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, soname)) found = 1;
    fclose(f);
    return found;
}

static void test_load_park_gemm(void **state)
{
    (void)state;
    /* Debian's libopenblas.so.0 is a link to the variant's real file name */
    assert_false(mapped("libopenblas"));
    assert_int_equal(pq_blas_load(), PQ_OK);
    assert_true(mapped("libopenblas"));
    assert_int_equal(thread_count(), 1); /* parked; this test creates no threads itself */
    assert_int_equal(pq_blas_load(), PQ_OK); /* a second load neither fails nor restarts it */
    assert_int_equal(thread_count(), 1);

    /* C = A B with small integers: exact in fp32, checked against a plain loop */
    enum { M = 192, K = 160, N = 224 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c = malloc(sizeof(float) * M * N);
    assert_true(a && b && c);
    for (int i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 13 - 6);
    for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 11 - 5);
    pq_blas_set_threads(2);
    pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
            assert_true(c[i * N + j] == s);
        }
    /* with two cores the threaded call brought a worker back */
    if (get_nprocs() >= 2) assert_true(thread_count() >= 2);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_load_park_gemm)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
