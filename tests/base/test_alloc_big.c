/* SPDX-License-Identifier: Apache-2.0 */
/* test_alloc_big.c - pq_alloc_big: 2 MiB-aligned blocks from 2 MiB up,
 * plain ones below, all usable to their last byte and released by free(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/pq_mem.h"

#define MIB ((size_t)1 << 20)

static void fill_and_check(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4093) p[i] = (unsigned char)(i * 31u);
    p[n - 1] = 0xA5;
    for (size_t i = 0; i < n; i += 4093) assert_int_equal(p[i], (unsigned char)(i * 31u));
    assert_int_equal(p[n - 1], 0xA5);
}

static void test_big_blocks_are_2mib_aligned(void **state)
{
    (void)state;
    size_t sizes[] = {2 * MIB, 3 * MIB + 5, 40 * MIB + 123};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *p = pq_alloc_big(sizes[k]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % (2 * MIB), 0);
        fill_and_check(p, sizes[k]);
        free(p);
    }
}

static void test_small_blocks(void **state)
{
    (void)state;
    unsigned char *z = pq_alloc_big(0);
    assert_non_null(z); /* a valid pointer for free(), like malloc(1) */
    free(z);
    unsigned char *p = pq_alloc_big(2 * MIB - 1);
    assert_non_null(p);
    fill_and_check(p, 2 * MIB - 1);
    free(p);
}

static void test_overflow_is_refused(void **state)
{
    (void)state;
    assert_null(pq_alloc_big(SIZE_MAX - 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_big_blocks_are_2mib_aligned),
        cmocka_unit_test(test_small_blocks),
        cmocka_unit_test(test_overflow_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
