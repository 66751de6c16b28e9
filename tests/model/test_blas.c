/* SPDX-License-Identifier: Apache-2.0 */
/* test_blas.c - the BLAS is not in the process until pq_blas_load; loading
 * it leaves no OpenBLAS worker thread running; SGEMM through it is exact on
 * small integers and a threaded call still works (and restarts the pool).
 * The kernels: OPENBLAS_CORETYPE from the environment when set (the test is
 * registered a second time with it set to Prescott), else SkylakeX on a CPU
 * with the AVX-512 subsets of OpenBLAS's SkylakeX kernels.
 * Built a second time with blas.c naming a library that is not there
 * (PQ_TEST_BLAS_SONAME, tests/model/meson.build): every entry point then
 * returns PQ_ERR_RESOURCE naming the library and the package, and nothing is
 * printed or aborted. */
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

#ifndef PQ_TEST_BLAS_SONAME
static void test_load_park_gemm(void **state)
{
    (void)state;
    /* Debian's libopenblas.so.0 is a link to the variant's real file name */
    assert_false(mapped("libopenblas"));
    char user[64] = "";
    if (getenv("OPENBLAS_CORETYPE")) snprintf(user, sizeof user, "%s", getenv("OPENBLAS_CORETYPE"));
    assert_int_equal(pq_blas_load(), PQ_OK);
    if (*user) {
        assert_string_equal(pq_blas_core(), user);
    } else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl")) {
        assert_string_equal(pq_blas_core(), "SkylakeX");
        assert_string_equal(getenv("OPENBLAS_CORETYPE"), "SkylakeX");
    } else {
        assert_null(getenv("OPENBLAS_CORETYPE"));
    }
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
    assert_int_equal(pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N),
                     PQ_OK);
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

#else
static void test_missing_library(void **state)
{
    (void)state;
    float a[4] = {1, 2, 3, 4}, c[4] = {7, 7, 7, 7};
    /* SGEMM first: it loads the library itself and reports the failure */
    for (int i = 0; i < 2; i++) {
        pq_err_clear();
        assert_int_equal(pq_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2),
                         PQ_ERR_RESOURCE);
        assert_non_null(strstr(pq_err_detail(), "cannot load " PQ_TEST_BLAS_SONAME " (install libopenblas0)"));
    }
    for (int i = 0; i < 4; i++) assert_true(c[i] == 7.0f); /* untouched */
    pq_err_clear();
    assert_int_equal(pq_blas_load(), PQ_ERR_RESOURCE);
    assert_non_null(strstr(pq_err_detail(), "cannot load " PQ_TEST_BLAS_SONAME " (install libopenblas0)"));
    pq_blas_set_threads(2); /* a no-op without the library */
    assert_false(mapped("libopenblas"));
    assert_int_equal(thread_count(), 1);
}
#endif

int main(void)
{
#ifdef PQ_TEST_BLAS_SONAME
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_missing_library)};
#else
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_load_park_gemm)};
#endif
    return cmocka_run_group_tests(tests, NULL, NULL);
}
