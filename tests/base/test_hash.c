/* SPDX-License-Identifier: Apache-2.0 */
/* test_hash.c - pq_fnv1a64_update and pq_fnv1a64_str against the published
 * FNV-1a 64 test vectors; a hash taken in pieces equals the hash of the
 * whole; the string form leaves the NUL out, and another basis carries on
 * from it (values computed apart, with Python integers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "base/pq_hash.h"

static void test_vectors(void **state)
{
    (void)state;
    assert_true(pq_fnv1a64_update(PQ_FNV1A64_BASIS, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(pq_fnv1a64_update(PQ_FNV1A64_BASIS, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(pq_fnv1a64_update(PQ_FNV1A64_BASIS, "foobar", 6) == 0x85944171f73967e8ULL);
    assert_true(pq_fnv1a64_str(PQ_FNV1A64_BASIS, "") == 0xcbf29ce484222325ULL);
    assert_true(pq_fnv1a64_str(PQ_FNV1A64_BASIS, "foobar") == 0x85944171f73967e8ULL);
}

static void test_pieces(void **state)
{
    (void)state;
    uint64_t h = pq_fnv1a64_update(PQ_FNV1A64_BASIS, "foo", 3);
    assert_true(pq_fnv1a64_update(h, "bar", 3) == 0x85944171f73967e8ULL);
    assert_true(pq_fnv1a64_str(pq_fnv1a64_str(PQ_FNV1A64_BASIS, "fo"), "obar") == 0x85944171f73967e8ULL);
    /* the NUL counts only when the caller passes it */
    assert_true(pq_fnv1a64_update(PQ_FNV1A64_BASIS, "foobar", 7) != pq_fnv1a64_str(PQ_FNV1A64_BASIS, "foobar"));
    /* the bytes of an integer, as the plan hash feeds them (little-endian host) */
    int64_t v = -2;
    assert_true(pq_fnv1a64_update(PQ_FNV1A64_BASIS, &v, sizeof v) == 0xfc1a35225397861cULL);
    /* another basis (the calibration order's) */
    assert_true(pq_fnv1a64_str(1469598103934665603ULL, "sp|P69905|HBA_HUMAN") == 0xce8ea015814c7f04ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
