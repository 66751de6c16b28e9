/* SPDX-License-Identifier: Apache-2.0 */
/* test_dtype.c - fp16 and bf16 to fp32: every one of the 65,536 bit patterns
 * against the IEEE definition computed apart (sign, exponent and mantissa
 * through ldexp; a NaN quiet with its payload), by the scalar reference, the
 * element conversion and the vector path, at every start alignment and over
 * tails shorter than a vector step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* binary16 by its definition. */
static uint32_t f16_expected(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    const int e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) return m ? sign | 0x7fc00000u | (uint32_t)m << 13 : sign | 0x7f800000u;
    float v = e ? ldexpf((float)(1024 + m), e - 25) : ldexpf((float)m, -24);
    return sign | bits(v);
}

static void check_all(pq_dtype dt, void (*conv)(pq_dtype, const void *, int64_t, float *))
{
    enum { N = 65536 };
    unsigned char *src = malloc(2 * N + 16);
    float *dst = malloc((N + 8) * sizeof *dst);
    assert_non_null(src);
    assert_non_null(dst);
    for (int off = 0; off < 4; off++) { /* start alignments of the source */
        for (uint32_t i = 0; i < N; i++) {
            uint16_t h = (uint16_t)i;
            memcpy(src + off + 2 * i, &h, 2);
        }
        conv(dt, src + off, N, dst);
        for (uint32_t i = 0; i < N; i++) {
            uint32_t want = dt == PQ_DT_F16 ? f16_expected((uint16_t)i) : i << 16;
            if (bits(dst[i]) != want) fail_msg("%s %04x (offset %d): got %08x, want %08x", pq_dtype_name(dt), i, off,
                                               bits(dst[i]), want);
        }
    }
    /* lengths 0..17 from element 0x3c01 (the source as the last alignment left
     * it, 3 bytes in): vector steps and scalar tails */
    for (int64_t n = 0; n <= 17; n++) {
        for (int64_t i = 0; i < n + 1; i++) dst[i] = -1.0f;
        conv(dt, src + 3 + 2 * 0x3c01, n, dst);
        for (int64_t i = 0; i < n; i++) {
            uint32_t h = 0x3c01 + (uint32_t)i;
            assert_int_equal(bits(dst[i]), dt == PQ_DT_F16 ? f16_expected((uint16_t)h) : h << 16);
        }
        assert_true(dst[n] == -1.0f); /* nothing past n written */
    }
    free(src);
    free(dst);
}

static void test_f16(void **state)
{
    (void)state;
    check_all(PQ_DT_F16, pq_convert_to_f32);
    check_all(PQ_DT_F16, pq_convert_to_f32_scalar);
    for (uint32_t i = 0; i < 65536; i++) assert_int_equal(bits(pq_f16_to_f32((uint16_t)i)), f16_expected((uint16_t)i));
    /* a few by hand: 1.0, -2.0, the largest, the smallest normal and denormal */
    assert_true(pq_f16_to_f32(0x3c00) == 1.0f);
    assert_true(pq_f16_to_f32(0xc000) == -2.0f);
    assert_true(pq_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(pq_f16_to_f32(0x0400) == 0x1p-14f);
    assert_true(pq_f16_to_f32(0x0001) == 0x1p-24f);
}

static void test_bf16(void **state)
{
    (void)state;
    check_all(PQ_DT_BF16, pq_convert_to_f32);
    check_all(PQ_DT_BF16, pq_convert_to_f32_scalar);
    assert_true(pq_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(pq_bf16_to_f32(0xc040) == -3.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
