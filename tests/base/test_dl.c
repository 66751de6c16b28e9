/* SPDX-License-Identifier: Apache-2.0 */
/* test_dl.c - pq_dl_load: a library that is not there, one that is (libm),
 * an optional and a required symbol that are missing; the outcome and its
 * message are the first call's on every later call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "base/pq_dl.h"

static int n_loaded;
static void on_loaded(void) { n_loaded++; }

static void test_missing_library(void **state)
{
    (void)state;
    void *fn = (void *)&n_loaded;
    const pq_dl_sym syms[] = {{"f", &fn, false}};
    pq_dl_lib lib = {.soname = "libpq-no-such-library.so.7", .package = "no-such-package", .kind = PQ_ERR_ZMQ,
                     .syms = syms, .n_syms = 1, .loaded = on_loaded};
    n_loaded = 0;
    for (int i = 0; i < 2; i++) {
        pq_err_clear();
        assert_int_equal(pq_dl_load(&lib), PQ_ERR_ZMQ);
        assert_non_null(strstr(pq_err_detail(), "cannot load libpq-no-such-library.so.7 (install no-such-package)"));
    }
    assert_int_equal(n_loaded, 0);
}

static void test_libm(void **state)
{
    (void)state;
    double (*cos_fn)(double) = NULL;
    void *absent = (void *)&n_loaded;
    const pq_dl_sym syms[] = {{"cos", (void **)&cos_fn, false}, {"pq_no_such_function", &absent, true}};
    pq_dl_lib lib = {.soname = "libm.so.6", .package = "libc6", .kind = PQ_ERR_RESOURCE, .syms = syms,
                     .n_syms = 2, .loaded = on_loaded};
    n_loaded = 0;
    assert_int_equal(pq_dl_load(&lib), PQ_OK);
    assert_int_equal(pq_dl_load(&lib), PQ_OK);
    assert_int_equal(n_loaded, 1);
    assert_non_null(cos_fn);
    assert_true(cos_fn(0.0) == 1.0 && cos_fn(3.141592653589793) == -1.0);
    assert_null(absent);
}

static void test_required_symbol_missing(void **state)
{
    (void)state;
    void *a = NULL, *b = NULL;
    const pq_dl_sym syms[] = {{"sin", &a, false}, {"pq_no_such_function", &b, false}};
    pq_dl_lib lib = {.soname = "libm.so.6", .package = "libc6", .kind = PQ_ERR_RESOURCE, .syms = syms,
                     .n_syms = 2, .loaded = on_loaded};
    n_loaded = 0;
    pq_err_clear();
    assert_int_equal(pq_dl_load(&lib), PQ_ERR_RESOURCE);
    assert_non_null(strstr(pq_err_detail(), "libm.so.6 has no function pq_no_such_function"));
    assert_null(a); /* nothing half-resolved is left to call */
    assert_int_equal(n_loaded, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_libm),
        cmocka_unit_test(test_required_symbol_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
