/* SPDX-License-Identifier: Apache-2.0 */
/* test_qparams.c - integer ranges and torch MinMax qparams on hand-computed
 * cases (docs/FORMAT.md, Numeric contract): zeros, constants, negative-only, tiny, mixed,
 * empty and overflowing ranges, int8 and int4. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "quant/qspec.h"

#define EPS 1.1920928955078125e-07f /* torch.finfo(torch.float32).eps = 2^-23 */

static void check(float mn, float mx, int32_t qmin, int32_t qmax, bool sym, float want_scale,
                  int32_t want_zp)
{
    float s;
    int32_t z;
    pq_qparams(mn, mx, qmin, qmax, sym, &s, &z);
    if (s != want_scale || z != want_zp)
        fail_msg("qparams(%g, %g, [%d,%d], %s) = (%.9g, %d), want (%.9g, %d)", mn, mx, qmin, qmax,
                 sym ? "sym" : "asym", s, z, want_scale, want_zp);
}

static void test_ranges(void **state)
{
    (void)state;
    int32_t lo, hi;
    pq_qspec s = {.bits = 8, .symmetric = true};
    pq_qspec_range(&s, &lo, &hi);
    assert_int_equal(lo, -127); assert_int_equal(hi, 127);
    s.symmetric = false;
    pq_qspec_range(&s, &lo, &hi);
    assert_int_equal(lo, -128); assert_int_equal(hi, 127);
    s.bits = 4;
    pq_qspec_range(&s, &lo, &hi);
    assert_int_equal(lo, -8); assert_int_equal(hi, 7);
    s.symmetric = true;
    pq_qspec_range(&s, &lo, &hi);
    assert_int_equal(lo, -7); assert_int_equal(hi, 7);
}

static void test_groups_and_names(void **state)
{
    (void)state;
    pq_qspec s = {.bits = 8, .gran = PQ_GRAN_CHANNEL};
    assert_int_equal(pq_qspec_groups(&s, 5120), 1);
    s.gran = PQ_GRAN_TENSOR;
    assert_int_equal(pq_qspec_groups(&s, 5120), 1);
    s.gran = PQ_GRAN_GROUP;
    s.group_size = 32;
    assert_int_equal(pq_qspec_groups(&s, 96), 3);
    assert_int_equal(pq_qspec_groups(&s, 100), 4); /* partial last group */
    assert_int_equal(pq_qspec_groups(&s, 1), 1);
    s.group_size = 128;
    assert_int_equal(pq_qspec_groups(&s, 320), 3);
    assert_string_equal(pq_granularity_name(PQ_GRAN_TENSOR), "tensor");
    assert_string_equal(pq_granularity_name(PQ_GRAN_CHANNEL), "channel");
    assert_string_equal(pq_granularity_name(PQ_GRAN_GROUP), "group");
}

static void test_zero_and_tiny(void **state)
{
    (void)state;
    /* all zeros: the eps floor; asymmetric zp = qmin - round(0) = qmin */
    check(0, 0, -127, 127, true, EPS, 0);
    check(0, 0, -128, 127, false, EPS, -128);
    check(0, 0, -7, 7, true, EPS, 0);
    check(0, 0, -8, 7, false, EPS, -8);
    check(-0.0f, -0.0f, -128, 127, false, EPS, -128);
    /* tiny and denormal rows also floor at eps */
    check(1e-30f, 1e-30f, -127, 127, true, EPS, 0);
    check(-1e-30f, 1e-30f, -128, 127, false, EPS, -128); /* -1e-30/eps rounds to -0 */
    check(-1e-40f, 0, -128, 127, false, EPS, -128);
    /* just below the floor: 127 * eps / 2 -> eps */
    check(0, 127.0f * EPS * 0.5f, -127, 127, true, EPS, 0);
    /* just above: 127 * 2eps -> 2eps exactly */
    check(0, 127.0f * 2 * EPS, -127, 127, true, 2 * EPS, 0);
}

static void test_constant_and_one_sided(void **state)
{
    (void)state;
    /* constant c > 0: the range is [0, c] (zero is included) */
    check(127.0f, 127.0f, -127, 127, true, 1.0f, 0);
    check(63.5f, 63.5f, -127, 127, true, 0.5f, 0);
    check(1.0f, 1.0f, -127, 127, true, (float)(1.0 / 127.0), 0);
    check(51.0f, 51.0f, -128, 127, false, 0.2f, -128);  /* 51/255 = 1/5, correctly rounded */
    check(255.0f, 255.0f, -128, 127, false, 1.0f, -128);
    check(7.0f, 7.0f, -7, 7, true, 1.0f, 0);
    check(15.0f, 15.0f, -8, 7, false, 1.0f, -8);
    /* negative only: zp at the top of the range */
    check(-51.0f, -3.0f, -128, 127, false, 0.2f, 127); /* fl(-51/0.2f) = -255 */
    check(-127.0f, -1.0f, -127, 127, true, 1.0f, 0);
    check(-15.0f, -15.0f, -8, 7, false, 1.0f, 7);
}

static void test_mixed(void **state)
{
    (void)state;
    /* [-1, 3] asym int8: scale fl(4/255); -1/scale = -63.75 -> -64; zp = -128 + 64 */
    check(-1.0f, 3.0f, -128, 127, false, (float)(4.0 / 255.0), -64);
    /* symmetric uses max(|min|, max) / 127 */
    check(-3.0f, 1.0f, -127, 127, true, (float)(3.0 / 127.0), 0);
    check(-51.0f, 204.0f, -128, 127, false, 1.0f, -77);
    /* int4 asym [-1, 2]: scale 3/15 = 0.2f; fl(-1/0.2f) = -5; zp -3 */
    check(-1.0f, 2.0f, -8, 7, false, 0.2f, -3);
    /* int4 sym [-14, 3.5]: 14/7 = 2 */
    check(-14.0f, 3.5f, -7, 7, true, 2.0f, 0);
}

static void test_extremes(void **state)
{
    (void)state;
    /* nothing observed: torch's uninitialised result */
    check(INFINITY, -INFINITY, -128, 127, false, 1.0f, 0);
    check(INFINITY, -INFINITY, -127, 127, true, 1.0f, 0);
    /* the span overflows to inf: scale inf, min_neg/inf = -0, zp = qmin */
    check(-FLT_MAX, FLT_MAX, -128, 127, false, INFINITY, -128);
    check(-FLT_MAX, FLT_MAX, -127, 127, true, (float)((double)FLT_MAX / 127.0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_groups_and_names),
        cmocka_unit_test(test_zero_and_tiny),
        cmocka_unit_test(test_constant_and_one_sided),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
