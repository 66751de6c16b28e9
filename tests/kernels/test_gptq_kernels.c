/* SPDX-License-Identifier: Apache-2.0 */
/* test_gptq_kernels.c - the GPTQ column loop (pq_ops.gptq_block): the
 * reference against hand-computed blocks, and every kernel context this
 * build and CPU run (ref, avx2, avx512) against the reference bit for bit
 * (codes and errors) on random blocks: block widths around the 4-column
 * register groups, row ranges around the 8- and 16-row vectors, per-column
 * group qparams, asymmetric grids, clamping and .5 ties. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels_impl.h"
#include "kernels/pq_kernels.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((next() >> 11) * (1.0 / 9007199254740992.0));
}

/* One row, two columns, int4 symmetric, scale 0.1: x = (0.36, 0.7),
 * U = [[0.5, 0.25], [0, 1]]. Column 0: 3.6 -> code 4, e0 = (0.36 - 0.4) / 0.5
 * = -0.08; column 1: 0.7 + 0.08 * 0.25 = 0.72 -> 7.2 -> code 7,
 * e1 = 0.72 - 0.7 = 0.02. Then ties: 2.5 -> 2 and -3.5 -> -4 (half to even),
 * 9.9 clamps to 7. */
static void test_ref_hand(void **state)
{
    (void)state;
    float x[2] = {0.36f, 0.7f}, e[2], u[4] = {0.5f, 0.25f, 0.0f, 1.0f};
    float scale = 0.1f, inv = 10.0f, lo = -7.0f, hi = 7.0f;
    int32_t zp = 0;
    int8_t q[2];
    const int64_t goff[2] = {0, 0};
    pq_gptq_block b = {.ld = 1, .nb = 2, .u = u, .ldu = 2, .goff = goff, .scale = &scale, .inv = &inv,
                       .lo = &lo, .hi = &hi, .zp = &zp, .x = x, .e = e, .q = q};
    pq_gptq_block_ref(&b, 0, 1);
    assert_int_equal(q[0], 4);
    assert_int_equal(q[1], 7);
    assert_true(fabsf(e[0] + 0.08f) < 1e-6f);
    assert_true(fabsf(e[1] - 0.02f) < 1e-6f);

    /* three rows, one column, U = 1: ties and the clamp; asymmetric zp 3
     * shifts the codes (grid [-8, 7] - 3) */
    float x3[3] = {0.25f, -0.35f, 0.99f}, e3[3], s3[3] = {0.1f, 0.1f, 0.1f}, i3[3] = {10.0f, 10.0f, 10.0f};
    float l3[3] = {-11.0f, -11.0f, -11.0f}, h3[3] = {4.0f, 4.0f, 4.0f}, one = 1.0f;
    int32_t z3[3] = {3, 3, 3};
    int8_t q3[3];
    pq_gptq_block b3 = {.ld = 3, .nb = 1, .u = &one, .ldu = 1, .goff = goff, .scale = s3, .inv = i3,
                        .lo = l3, .hi = h3, .zp = z3, .x = x3, .e = e3, .q = q3};
    pq_gptq_block_ref(&b3, 0, 3);
    assert_int_equal(q3[0], 2 + 3);
    assert_int_equal(q3[1], -4 + 3);
    assert_int_equal(q3[2], 4 + 3);
    assert_true(fabsf(e3[2] - (0.99f - 0.4f)) < 1e-6f);
}

/* A random block of ld rows and nb columns: U upper with a positive
 * diagonal, qparams per (group, row) with groups changing along the block,
 * x drawn so that some products land on .5 ties and some are clamped. */
typedef struct blockbuf {
    float *u, *x, *x0, *scale, *inv, *lo, *hi, *e;
    int32_t *zp;
    int8_t *q;
    int64_t *goff;
} blockbuf;

static void make_block(blockbuf *m, int64_t ld, int64_t nb, int sym)
{
    const int64_t G = 3;
    m->u = calloc((size_t)(nb * nb), sizeof *m->u);
    m->x = malloc((size_t)(ld * nb) * sizeof *m->x);
    m->x0 = malloc((size_t)(ld * nb) * sizeof *m->x0);
    m->e = malloc((size_t)(ld * nb) * sizeof *m->e);
    m->q = malloc((size_t)(ld * nb));
    m->goff = malloc((size_t)nb * sizeof *m->goff);
    m->scale = malloc((size_t)(G * ld) * sizeof *m->scale);
    m->inv = malloc((size_t)(G * ld) * sizeof *m->inv);
    m->lo = malloc((size_t)(G * ld) * sizeof *m->lo);
    m->hi = malloc((size_t)(G * ld) * sizeof *m->hi);
    m->zp = malloc((size_t)(G * ld) * sizeof *m->zp);
    for (int64_t k = 0; k < nb; k++) {
        m->u[k * nb + k] = frand(0.3f, 2.0f);
        for (int64_t j = k + 1; j < nb; j++) m->u[k * nb + j] = frand(-0.4f, 0.4f);
        m->goff[k] = (k * G / (nb > 0 ? nb : 1)) * ld;
    }
    for (int64_t p = 0; p < G * ld; p++) {
        m->scale[p] = frand(0.01f, 0.05f);
        m->inv[p] = 1.0f / m->scale[p];
        m->zp[p] = sym ? 0 : (int32_t)(next() % 9) - 4;
        m->lo[p] = (float)(-8 - m->zp[p]);
        m->hi[p] = (float)(7 - m->zp[p]);
    }
    for (int64_t i = 0; i < ld * nb; i++) {
        const int64_t k = i / ld, r = i % ld, p = m->goff[k] + r;
        switch (next() % 4) {
        case 0: m->x0[i] = ((float)((int)(next() % 15) - 7) + 0.5f) * m->scale[p]; break; /* near ties */
        case 1: m->x0[i] = frand(-12.0f, 12.0f) * m->scale[p]; break;                     /* clamps */
        default: m->x0[i] = frand(-6.0f, 6.0f) * m->scale[p]; break;
        }
    }
}

static void free_block(blockbuf *m)
{
    free(m->u); free(m->x); free(m->x0); free(m->e); free(m->q); free(m->goff);
    free(m->scale); free(m->inv); free(m->lo); free(m->hi); free(m->zp);
}

static void run(const pq_ops *o, blockbuf *m, int64_t ld, int64_t nb, int64_t r0, int64_t r1, float *e,
                int8_t *q)
{
    memcpy(m->x, m->x0, (size_t)(ld * nb) * sizeof *m->x);
    memset(e, 0x7f, (size_t)(ld * nb) * sizeof *e);
    memset(q, 0x55, (size_t)(ld * nb));
    pq_gptq_block b = {.ld = ld, .nb = nb, .u = m->u, .ldu = nb, .goff = m->goff, .scale = m->scale,
                       .inv = m->inv, .lo = m->lo, .hi = m->hi, .zp = m->zp, .x = m->x, .e = e, .q = q};
    o->gptq_block(&b, r0, r1);
}

static void test_variants_equal_ref(void **state)
{
    (void)state;
    static const char *const names[] = {"avx2", "avx512", "cpu"};
    pq_ops ref;
    pq_ops_init_ref(&ref);
    static const int64_t widths[] = {1, 3, 4, 5, 8, 17, 64, 128};
    static const int64_t ranges[][2] = {{0, 64}, {0, 37}, {5, 64}, {0, 8}, {3, 24}, {16, 17}, {0, 0}};
    const int64_t ld = 64;
    int ran = 0;
    for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
        pq_ops o;
        if (pq_ops_select(names[v], &o) != PQ_KOK) {
            printf("# context '%s' is not available on this build or CPU: not compared\n", names[v]);
            continue;
        }
        ran++;
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++)
            for (int sym = 0; sym < 2; sym++) {
                const int64_t nb = widths[w];
                blockbuf m;
                make_block(&m, ld, nb, sym);
                float *e1 = malloc((size_t)(ld * nb) * sizeof *e1);
                int8_t *q1 = malloc((size_t)(ld * nb));
                for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
                    const int64_t r0 = ranges[k][0], r1 = ranges[k][1];
                    run(&ref, &m, ld, nb, r0, r1, m.e, m.q);
                    run(&o, &m, ld, nb, r0, r1, e1, q1);
                    for (int64_t c = 0; c < nb; c++)
                        for (int64_t r = r0; r < r1; r++) {
                            const int64_t i = c * ld + r;
                            if (q1[i] != m.q[i] || memcmp(&e1[i], &m.e[i], sizeof e1[i]))
                                fail_msg("context '%s', block %lld x %lld (rows %lld..%lld, %s): row %lld column "
                                         "%lld: code %d error %a, reference %d %a",
                                         o.name, (long long)ld, (long long)nb, (long long)r0, (long long)r1,
                                         sym ? "sym" : "asym", (long long)r, (long long)c, q1[i], (double)e1[i],
                                         m.q[i], (double)m.e[i]);
                        }
                }
                free(e1);
                free(q1);
                free_block(&m);
            }
    }
    assert_true(ran > 0); /* "cpu" always selects a context */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_hand),
        cmocka_unit_test(test_variants_equal_ref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
