/* SPDX-License-Identifier: Apache-2.0 */
/* test_hessian.c - the exact GPTQ Hessian accumulator: a hand-computed 2x2
 * case, the same bytes for any split of the sequences (order, merge, word
 * reduction, threads over tiles), the range and NaN errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/hessian.h"

static void test_hand_2x2(void **state)
{
    (void)state;
    /* rows (1, 2) and (3, -1), row stride 3: S = [[10, -1], [-1, 5]],
     * H = 2/2 * S */
    const float x[] = {1, 2, 99, 3, -1, 99};
    pq_hessian *h;
    assert_int_equal(pq_hessian_create(2, "site.a", &h), PQ_OK);
    assert_int_equal(pq_hessian_add(h, NULL, x, 2, 3), PQ_OK);
    assert_int_equal(pq_hessian_tokens(h), 2);
    uint64_t *w;
    int64_t nw;
    pq_hessian_words(h, &w, &nw);
    assert_int_equal(nw, 2 * 3 + 2);
    /* entry (0,0) = 10 * 2^63 = 5 * 2^64; (0,1) = -2^63: low 2^63, high all
     * ones; (1,1) = 5 * 2^63 = 2 * 2^64 + 2^63 */
    assert_true(w[0] == 0 && w[1] == 5);
    assert_true(w[2] == UINT64_C(1) << 63 && w[3] == UINT64_MAX);
    assert_true(w[4] == UINT64_C(1) << 63 && w[5] == 2);
    assert_true(w[6] == 2 && w[7] == 0);
    double H[4];
    assert_int_equal(pq_hessian_finish(h, H), PQ_OK);
    assert_true(H[0] == 10.0 && H[1] == -1.0 && H[2] == -1.0 && H[3] == 5.0);
    /* a third token (0, 4): S = [[10, -1], [-1, 21]], n = 3 */
    const float y[] = {0, 4};
    assert_int_equal(pq_hessian_add(h, NULL, y, 1, 2), PQ_OK);
    assert_int_equal(pq_hessian_finish(h, H), PQ_OK);
    assert_true(H[0] == 2.0 / 3 * 10 && H[1] == 2.0 / 3 * -1 && H[3] == 2.0 / 3 * 21);
    pq_hessian_free(h);
}

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((int32_t)(rng >> 8) - (1 << 23)) / (float)(1 << 21);
}

enum { D = 19, LD = 23, NS = 5, NT = 37 };

static void words_of(pq_hessian *h, uint64_t **w, int64_t *nw) { pq_hessian_words(h, w, nw); }

static void test_split_independent(void **state)
{
    (void)state;
    static float x[NS * NT * LD];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = frand();
    pq_hessian *a, *b, *c1, *c2, *e;
    assert_int_equal(pq_hessian_create(D, "s", &a), PQ_OK);
    assert_int_equal(pq_hessian_create(D, "s", &b), PQ_OK);
    assert_int_equal(pq_hessian_create(D, "s", &c1), PQ_OK);
    assert_int_equal(pq_hessian_create(D, "s", &c2), PQ_OK);
    assert_int_equal(pq_hessian_create(D, "s", &e), PQ_OK);
    for (int s = 0; s < NS; s++) assert_int_equal(pq_hessian_add(a, NULL, x + s * NT * LD, NT, LD), PQ_OK);
    const int order[NS] = {3, 0, 4, 2, 1};
    for (int s = 0; s < NS; s++)
        assert_int_equal(pq_hessian_add(b, NULL, x + order[s] * NT * LD, NT, LD), PQ_OK);
    for (int s = 0; s < NS; s++)
        assert_int_equal(pq_hessian_add(s % 2 ? c2 : c1, NULL, x + s * NT * LD, NT, LD), PQ_OK);
    assert_int_equal(pq_hessian_merge(c2, c1), PQ_OK);
    /* the words as an MPI reduction would add them */
    for (int s = 4; s >= 0; s -= 2) assert_int_equal(pq_hessian_add(e, NULL, x + s * NT * LD, NT, LD), PQ_OK);
    uint64_t *wa, *wb, *wc, *we;
    int64_t na, nb, nc, ne;
    words_of(a, &wa, &na);
    words_of(b, &wb, &nb);
    words_of(c2, &wc, &nc);
    words_of(e, &we, &ne);
    assert_int_equal(na, nb);
    assert_memory_equal(wa, wb, (size_t)na * 8);
    assert_memory_equal(wa, wc, (size_t)na * 8);
    /* e (0, 2, 4) + the words of a fresh accumulator of (1, 3) */
    pq_hessian *f;
    assert_int_equal(pq_hessian_create(D, "s", &f), PQ_OK);
    assert_int_equal(pq_hessian_add(f, NULL, x + 3 * NT * LD, NT, LD), PQ_OK);
    assert_int_equal(pq_hessian_add(f, NULL, x + 1 * NT * LD, NT, LD), PQ_OK);
    uint64_t *wf;
    int64_t nf;
    words_of(f, &wf, &nf);
    pq_hessian_add_words(we, wf, nf);
    assert_memory_equal(wa, we, (size_t)na * 8);
    assert_int_equal(pq_hessian_tokens(e), NS * NT);
    /* and H is X^T X * 2/n to fp64 rounding */
    double *H = malloc(D * D * sizeof *H);
    assert_int_equal(pq_hessian_finish(a, H), PQ_OK);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int t = 0; t < NS * NT; t++) s += (double)x[t * LD + i] * x[t * LD + j];
            s *= 2.0 / (NS * NT);
            assert_true(fabs(H[i * D + j] - s) <= 1e-12 * (fabs(s) + 1));
            assert_true(H[i * D + j] == H[j * D + i]);
        }
    free(H);
    pq_hessian_free(a);
    pq_hessian_free(b);
    pq_hessian_free(c1);
    pq_hessian_free(c2);
    pq_hessian_free(e);
    pq_hessian_free(f);
}

/* Values on a coarse dyadic grid: every fp64 sum is exact, so one call over
 * all rows gives the same bytes as one call per sequence. */
static void test_one_call_exact_data(void **state)
{
    (void)state;
    static float x[NS * NT * D];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((int)(frand() * 8)) / 8.0f;
    pq_hessian *a, *b;
    assert_int_equal(pq_hessian_create(D, "s", &a), PQ_OK);
    assert_int_equal(pq_hessian_create(D, "s", &b), PQ_OK);
    assert_int_equal(pq_hessian_add(a, NULL, x, NS * NT, D), PQ_OK);
    for (int s = NS - 1; s >= 0; s--) assert_int_equal(pq_hessian_add(b, NULL, x + s * NT * D, NT, D), PQ_OK);
    uint64_t *wa, *wb;
    int64_t na, nb;
    pq_hessian_words(a, &wa, &na);
    pq_hessian_words(b, &wb, &nb);
    assert_memory_equal(wa, wb, (size_t)na * 8);
    pq_hessian_free(a);
    pq_hessian_free(b);
}

static void test_errors(void **state)
{
    (void)state;
    pq_hessian *h;
    pq_err_clear();
    assert_int_equal(pq_hessian_create(0, "bad", &h), PQ_ERR_CONFIG);
    assert_null(h);
    assert_int_equal(pq_hessian_create(2, "layers.0.fc1_in", &h), PQ_OK);
    float x[4] = {1, NAN, 2, 3};
    pq_err_clear();
    assert_int_equal(pq_hessian_add(h, NULL, x, 2, 2), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "layers.0.fc1_in"));
    assert_non_null(strstr(pq_err_detail(), "NaN"));
    x[1] = INFINITY;
    pq_err_clear();
    assert_int_equal(pq_hessian_add(h, NULL, x, 2, 2), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "Inf"));
    /* 2^32 squared = 2^64 >= 2^63 in one sequence */
    x[0] = 4294967296.0f;
    x[1] = 0;
    pq_err_clear();
    assert_int_equal(pq_hessian_add(h, NULL, x, 1, 2), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "layers.0.fc1_in"));
    assert_int_equal(pq_hessian_tokens(h), 0);
    /* 2^62 per sequence: the fourth reaches 2^64 and fails, h unchanged */
    x[0] = 2147483648.0f;
    for (int i = 0; i < 3; i++) assert_int_equal(pq_hessian_add(h, NULL, x, 1, 2), PQ_OK);
    uint64_t *w;
    int64_t nw;
    pq_hessian_words(h, &w, &nw);
    uint64_t before[8];
    memcpy(before, w, sizeof before);
    pq_err_clear();
    assert_int_equal(pq_hessian_add(h, NULL, x, 1, 2), PQ_ERR_CALIBRATION);
    assert_memory_equal(before, w, sizeof before);
    pq_hessian *g;
    assert_int_equal(pq_hessian_create(2, "g", &g), PQ_OK);
    assert_int_equal(pq_hessian_add(g, NULL, x, 1, 2), PQ_OK);
    pq_err_clear();
    assert_int_equal(pq_hessian_merge(h, g), PQ_ERR_CALIBRATION);
    assert_memory_equal(before, w, sizeof before);
    /* a word reduction that overflows is reported by finish */
    pq_hessian_add_words(w, w, nw); /* 3 * 2^62 twice: 1.5 * 2^64 */
    double H[4];
    pq_err_clear();
    assert_int_equal(pq_hessian_finish(h, H), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "layers.0.fc1_in"));
    pq_hessian_free(h);
    pq_hessian_free(g);
    pq_hessian_free(NULL);
}

/* A site wider than one tile (PQ_HESSIAN_TILE + 52: four tiles, two of
 * them narrow): several sequences in one call over 1 and 3 threads, and one
 * call per sequence in reverse order, give the same bytes; entries equal the
 * exact sums of exactly representable products (the data are multiples of
 * 1/8 below 4, so every product and partial sum is exact in fp64); and a
 * sequence whose partial overflows in the last tile leaves h unchanged. */
static void test_tiles(void **state)
{
    (void)state;
    const int64_t d = PQ_HESSIAN_TILE + 52, nt = 7;
    const int64_t off[4] = {0, 3, 3, 7}; /* one empty sequence */
    float *x = malloc((size_t)(nt * d) * sizeof *x);
    for (int64_t i = 0; i < nt * d; i++) x[i] = (float)((int)(frand() * 32) - 16) / 8.0f;
    pq_hessian *a, *b, *c;
    assert_int_equal(pq_hessian_create(d, "wide", &a), PQ_OK);
    assert_int_equal(pq_hessian_create(d, "wide", &b), PQ_OK);
    assert_int_equal(pq_hessian_create(d, "wide", &c), PQ_OK);
    assert_int_equal(pq_hessian_add_seqs(a, NULL, x, off, 3, d, 1), PQ_OK);
    assert_int_equal(pq_hessian_add_seqs(b, NULL, x, off, 3, d, 3), PQ_OK);
    for (int s = 2; s >= 0; s--)
        assert_int_equal(pq_hessian_add(c, NULL, x + off[s] * d, off[s + 1] - off[s], d), PQ_OK);
    uint64_t *wa, *wb, *wc;
    int64_t na, nb, nc;
    pq_hessian_words(a, &wa, &na);
    pq_hessian_words(b, &wb, &nb);
    pq_hessian_words(c, &wc, &nc);
    assert_memory_equal(wa, wb, (size_t)na * 8);
    assert_memory_equal(wa, wc, (size_t)na * 8);
    assert_int_equal(pq_hessian_tokens(a), nt);
    double *H = malloc((size_t)(d * d) * sizeof *H);
    assert_int_equal(pq_hessian_finish(a, H), PQ_OK);
    const int64_t probe[][2] = {{0, 0}, {5, PQ_HESSIAN_TILE + 3}, {PQ_HESSIAN_TILE + 51, PQ_HESSIAN_TILE + 51},
                                {PQ_HESSIAN_TILE + 7, 2}, {PQ_HESSIAN_TILE - 1, PQ_HESSIAN_TILE}};
    for (size_t p = 0; p < sizeof probe / sizeof probe[0]; p++) {
        const int64_t i = probe[p][0], j = probe[p][1];
        double e = 0;
        for (int64_t t = 0; t < nt; t++) e += (double)x[t * d + i] * (double)x[t * d + j];
        assert_true(H[i * d + j] == (2.0 / (double)nt) * e);
    }
    /* an overflow in the last (narrow, diagonal) tile: nothing changes */
    uint64_t *before = malloc((size_t)na * 8);
    memcpy(before, wa, (size_t)na * 8);
    float *y = calloc((size_t)(2 * d), sizeof *y);
    y[d - 1] = 4294967296.0f; /* its square, 2^64, is out of range */
    y[0] = 1.0f;
    const int64_t off2[3] = {0, 1, 2};
    memcpy(y + d, x, (size_t)d * sizeof *y);
    pq_err_clear();
    assert_int_equal(pq_hessian_add_seqs(a, NULL, y, off2, 2, d, 2), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "wide"));
    assert_memory_equal(before, wa, (size_t)na * 8);
    free(y);
    free(before);
    free(H);
    free(x);
    pq_hessian_free(a);
    pq_hessian_free(b);
    pq_hessian_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_2x2),
        cmocka_unit_test(test_split_independent),
        cmocka_unit_test(test_one_call_exact_data),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
