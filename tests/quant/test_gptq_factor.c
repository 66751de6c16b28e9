/* SPDX-License-Identifier: Apache-2.0 */
/* test_gptq_factor.c - the blocked GPTQ factor (quant/gptq_factor.h)
 * against LAPACK's unblocked route (the reference's cholesky,
 * cholesky_inverse, cholesky(upper): dpotrf, dpotri, dpotrf on the whole
 * matrix), and the same bits for any thread count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/blas.h"
#include "quant/gptq.h"
#include "quant/gptq_factor.h"

/* H = X^T X / t + a little on the diagonal, X t x d uniform (fixed LCG):
 * symmetric positive definite and not diagonally dominant. */
static double *make_h(int64_t d, int64_t t, uint64_t seed)
{
    double *x = malloc((size_t)(t * d) * sizeof *x), *H = calloc((size_t)(d * d), sizeof *H);
    for (int64_t k = 0; k < t * d; k++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        x[k] = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
    }
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t r = 0; r < t; r++) s += x[r * d + i] * x[r * d + j];
            H[i * d + j] = s / (double)t;
        }
    free(x);
    return H;
}

/* The reference's U: upper Cholesky factor of H^-1, three LAPACK calls on
 * the whole matrix (damped as pq_gptq_prepare damps it). */
static double *reference_u(const double *H, int64_t d, double frac)
{
    double *A = malloc((size_t)(d * d) * sizeof *A), mean = 0;
    memcpy(A, H, (size_t)(d * d) * sizeof *A);
    for (int64_t i = 0; i < d; i++) mean += H[i * d + i];
    mean /= (double)d;
    for (int64_t i = 0; i < d; i++) A[i * d + i] += frac * mean;
    int info = 0, n = (int)d;
    assert_int_equal(pq_dpotrf('L', n, A, n, &info), PQ_OK);
    assert_int_equal(info, 0);
    assert_int_equal(pq_dpotri('L', n, A, n, &info), PQ_OK);
    assert_int_equal(info, 0);
    for (int64_t c = 0; c < d; c++) /* symmetric from the lower triangle (column-major) */
        for (int64_t r = 0; r < c; r++) A[r + c * d] = A[c + r * d];
    assert_int_equal(pq_dpotrf('U', n, A, n, &info), PQ_OK);
    assert_int_equal(info, 0);
    /* column-major upper -> row-major U[i*d + j], i <= j */
    double *U = calloc((size_t)(d * d), sizeof *U);
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = i; j < d; j++) U[i * d + j] = A[i + j * d];
    free(A);
    return U;
}

/* The factor's U out of its image (header, perm, U, dead). */
static const float *image_u(const unsigned char *img, int64_t d)
{
    return (const float *)(img + pq_gptq_factor_image_bytes(d) - (size_t)d - (size_t)(d * d) * sizeof(float));
}

static unsigned char *factor_image(const double *H, int64_t d, int nb, int nt)
{
    double *Hc = malloc((size_t)(d * d) * sizeof *Hc);
    memcpy(Hc, H, (size_t)(d * d) * sizeof *Hc);
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    pq_gptq_factor *f = NULL;
    assert_int_equal(pq_gptq_prepare_with(Hc, d, &o, "t", &pq_factor_comm_local, nb, nt, &f), PQ_OK);
    unsigned char *img = malloc(pq_gptq_factor_image_bytes(d));
    pq_gptq_factor_to_image(f, img);
    pq_gptq_factor_free(f);
    free(Hc);
    return img;
}

/* Blocks of 16 over widths that are, are not and are less than a multiple
 * of it: U within fp32 rounding of LAPACK's unblocked three-step route. */
static void test_against_lapack(void **state)
{
    (void)state;
    if (pq_blas_load()) skip();
    const int64_t ds[] = {7, 48, 101};
    for (size_t q = 0; q < sizeof ds / sizeof ds[0]; q++) {
        const int64_t d = ds[q];
        double *H = make_h(d, 3 * d, 11 + q);
        double *R = reference_u(H, d, 0.01);
        unsigned char *img = factor_image(H, d, 16, 1);
        const float *U = image_u(img, d);
        double mx = 0, err = 0;
        for (int64_t k = 0; k < d * d; k++) {
            mx = fmax(mx, fabs(R[k]));
            err = fmax(err, fabs(R[k] - (double)U[k]));
        }
        assert_true(mx > 0);
        assert_true(err <= 1e-5 * mx);
        for (int64_t i = 1; i < d; i++) /* strictly lower part zero */
            for (int64_t j = 0; j < i; j++) assert_true(U[i * d + j] == 0.0f);
        free(img);
        free(R);
        free(H);
    }
}

/* 1, 2 and 3 threads, and the one-process default: the same bytes for the
 * same block size. */
static void test_threads_same_bits(void **state)
{
    (void)state;
    if (pq_blas_load()) skip();
    const int64_t d = 101;
    double *H = make_h(d, 2 * d, 5);
    unsigned char *a = factor_image(H, d, 16, 1);
    for (int nt = 2; nt <= 3; nt++) {
        unsigned char *b = factor_image(H, d, 16, nt);
        assert_memory_equal(a, b, pq_gptq_factor_image_bytes(d));
        free(b);
    }
    /* pq_gptq_prepare is the one-process, PQ_GPTQ_FACTOR_NB case */
    unsigned char *c = factor_image(H, d, PQ_GPTQ_FACTOR_NB, 1);
    double *Hc = malloc((size_t)(d * d) * sizeof *Hc);
    memcpy(Hc, H, (size_t)(d * d) * sizeof *Hc);
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    pq_gptq_factor *f = NULL;
    assert_int_equal(pq_gptq_prepare(Hc, d, &o, "t", &f), PQ_OK);
    unsigned char *e = malloc(pq_gptq_factor_image_bytes(d));
    pq_gptq_factor_to_image(f, e);
    assert_memory_equal(c, e, pq_gptq_factor_image_bytes(d));
    pq_gptq_factor_free(f);
    free(e);
    free(c);
    free(Hc);
    free(a);
    free(H);
}

/* An indefinite H (X^T X / t minus 0.03 I; its smallest eigenvalue about
 * -0.015, its mean diagonal about 0.05) fails in the blocked Cholesky at
 * damping 1 % and 10 %, and succeeds at 100 %: two retries. */
static void test_retry_blocked(void **state)
{
    (void)state;
    if (pq_blas_load()) skip();
    const int64_t d = 40;
    double *H = make_h(d, 3 * d, 3);
    for (int64_t i = 0; i < d; i++) H[i * d + i] -= 0.03;
    double *Hc = malloc((size_t)(d * d) * sizeof *Hc);
    memcpy(Hc, H, (size_t)(d * d) * sizeof *Hc);
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    o.damp_retries = 1;
    pq_gptq_factor *f = NULL;
    assert_int_equal(pq_gptq_prepare_with(Hc, d, &o, "l.fc1", &pq_factor_comm_local, 8, 2, &f),
                     PQ_ERR_QUANTIZATION);
    assert_null(f);
    assert_non_null(strstr(pq_err_detail(), "'l.fc1'"));
    memcpy(Hc, H, (size_t)(d * d) * sizeof *Hc);
    o.damp_retries = 2;
    assert_int_equal(pq_gptq_prepare_with(Hc, d, &o, "l.fc1", &pq_factor_comm_local, 8, 2, &f), PQ_OK);
    assert_true(fabs(pq_gptq_factor_damp(f) - 1.0) < 1e-12);
    pq_gptq_factor_free(f);
    free(Hc);
    free(H);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_lapack),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_retry_blocked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
