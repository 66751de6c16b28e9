/* SPDX-License-Identifier: Apache-2.0 */
/* test_blas_pool.c - pq_blas_pool_park leaves no OpenBLAS worker thread
 * running, and threaded BLAS still works (and restarts its pool) after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cblas.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/sysinfo.h>

#include "blas_pool.h"

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

static void test_park_then_gemm(void **state)
{
    (void)state;
    pq_blas_pool_park();
    assert_int_equal(thread_count(), 1); /* this test creates no threads itself */
    pq_blas_pool_park();                 /* parking a parked pool is harmless */
    assert_int_equal(thread_count(), 1);

    /* C = A B with small integers: exact in fp32, checked against a plain loop */
    enum { M = 192, K = 160, N = 224 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c = malloc(sizeof(float) * M * N);
    assert_true(a && b && c);
    for (int i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 13 - 6);
    for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 11 - 5);
    openblas_set_num_threads(2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_park_then_gemm)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
