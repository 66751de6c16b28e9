/* SPDX-License-Identifier: Apache-2.0 */
/* test_calib.c - calibration statistics and methods on hand-computed cases:
 * the IEEE-bit grid, kernel variants against the reference, exact merging
 * under any split, edge cases (zeros, constants, negative-only, NaN/Inf),
 * qparams, the entropy/percentile searches on tiny histograms, and the HDF5
 * store (round trip, corrupt input). */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "format/calib_h5.h"
#include "calib/calib_journal.h"
#include "calib/calib_methods.h"
#include "calib/calib_run.h"
#include "calib/calib_stats.h"
#include "kernels/pq_kernels.h"

/* The kernel context statistics are collected with (the best this CPU runs;
 * every context counts the same, test_kernel_variants). */
static pq_ops g_ops;

static int setup(void **state)
{
    (void)state;
    return pq_ops_select("cpu", &g_ops) == PQ_KOK ? 0 : -1;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float randn(void)
{
    double u1 = ((next_u64() >> 11) + 1.0) / 9007199254740993.0, u2 = (next_u64() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

/* 1.0 = 0x3f800000: block 127, bin 0; 1.5 = 0x3fc00000: bin 128; 1 + 2^-8
 * is the next bin, 1 + 2^-9 shares bin 0 with 1.0; -2.0 is block 256+128. */
static void test_grid(void **state)
{
    (void)state;
    pq_calib *c;
    assert_int_equal(pq_calib_create(1, 4, 8, &c), PQ_OK);
    pq_calib_site *s = &c->sites[0];
    float x[8] = {1.0f, 1.5f, 1.0f + 0x1p-8f, 1.0f + 0x1p-9f, -2.0f, NAN, INFINITY, -INFINITY};
    assert_int_equal(pq_calib_site_add(&g_ops, s, x, 2, 4), PQ_OK);
    assert_int_equal(pq_calib_flush(c), PQ_OK);
    assert_non_null(s->blocks[127]);
    assert_int_equal(s->blocks[127][0], 2);
    assert_int_equal(s->blocks[127][128], 1);
    assert_int_equal(s->blocks[127][1], 1);
    assert_int_equal(s->blocks[256 + 128][0], 1);
    assert_null(s->blocks[128]);
    assert_int_equal(s->count, 5);
    assert_int_equal(s->n_nan, 1);
    assert_int_equal(s->n_posinf, 1);
    assert_int_equal(s->n_neginf, 1);
    assert_int_equal(s->n_tokens, 2);
    assert_true(s->min == -2.0f && s->max == 1.5f);
    /* channels: rows {1, 1.5, 1+2^-8, 1+2^-9} and {-2, NaN, Inf, -Inf} */
    assert_true(s->chan_absmax[0] == 2.0f && s->chan_absmax[1] == 1.5f);
    assert_true(s->chan_absmax[2] == 1.0f + 0x1p-8f && s->chan_absmax[3] == 1.0f + 0x1p-9f);
    assert_true(pq_calib_trunc(1.0f + 0x1p-9f) == 1.0f);
    assert_true(pq_calib_trunc(-(1.0f + 0x1p-8f + 0x1p-10f)) == -(1.0f + 0x1p-8f));
    assert_int_equal(pq_calib_check(c, false), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "layer.0.attn_in"));
    pq_err_clear();
    pq_calib_free(c);
}

/* Bin of a normal float from its value, not its bits: |x| = m 2^e with m in
 * [0.5, 1), biased exponent e - 1 + 127, top bits floor((2m - 1) 2^MBITS). */
static uint32_t bin_by_value(float x)
{
    int e;
    if (x == 0.0f) return signbit(x) ? 1u << (8 + PQ_HIST_MBITS) : 0u; /* exponent 0, mantissa 0 */
    double m = frexp(fabs((double)x), &e);
    uint32_t top = (uint32_t)floor((2 * m - 1) * (1 << PQ_HIST_MBITS));
    return ((x < 0 ? 1u : 0u) << (8 + PQ_HIST_MBITS)) | ((uint32_t)(e - 1 + 127) << PQ_HIST_MBITS) | top;
}

/* Every kernel context (reference, AVX2, AVX-512) gives the bins of the
 * value-based formula and the plain min/max/column absmax, with non-finite
 * values at many positions of the 8-groups and a row width that is not a
 * multiple of 8. */
static void test_kernel_variants(void **state)
{
    (void)state;
    static const char *const names[] = {"ref", "avx2", "avx512"};
    enum { R = 77, D = 131, N = R * D };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) {
        x[i] = randn() * (float)(1 << (next_u64() % 8)) * 1e-2f;
        if (x[i] == 0.0f) x[i] = 1.0f;
    }
    for (int i = 0; i < N; i += 97) x[i] = (i / 97) % 3 == 0 ? NAN : (i / 97) % 3 == 1 ? INFINITY : -INFINITY;
    /* columns of -0 and of both zeros: their absmax must be +0, bit for bit */
    for (int r = 0; r < R; r++) {
        x[r * D + 5] = -0.0f;
        x[r * D + 6] = r % 2 ? 0.0f : -0.0f;
    }
    uint32_t *want = calloc(PQ_HIST_NBINS, 4);
    uint64_t nw[3] = {0};
    float wlo = INFINITY, whi = -INFINITY, wca[D] = {0};
    for (int i = 0; i < N; i++) {
        if (isnan(x[i])) { nw[0]++; continue; }
        if (isinf(x[i])) { nw[x[i] > 0 ? 1 : 2]++; continue; }
        want[bin_by_value(x[i])]++;
        wlo = fminf(wlo, x[i]);
        whi = fmaxf(whi, x[i]);
        wca[i % D] = fmaxf(wca[i % D], fabsf(x[i]));
    }
    for (int v = 0; v < 3; v++) {
        pq_ops ctx;
        if (pq_ops_select(names[v], &ctx) != PQ_KOK) {
            assert_int_not_equal(v, 0);
            print_message("no %s context on this build/CPU\n", names[v]);
            continue;
        }
        uint32_t *c = calloc(PQ_HIST_NBINS, 4);
        uint64_t nf[3] = {0};
        float lo = INFINITY, hi = -INFINITY, ca[D] = {0};
        /* two calls accumulate */
        ctx.hist_ieee(x, 10, D, c, nf, &lo, &hi, ca);
        ctx.hist_ieee(x + 10 * D, R - 10, D, c, nf, &lo, &hi, ca);
        assert_memory_equal(nw, nf, sizeof nf);
        assert_memory_equal(want, c, PQ_HIST_NBINS * 4);
        assert_true(lo == wlo && hi == whi);
        assert_memory_equal(wca, ca, sizeof ca);
        free(c);
    }
    free(want);
    free(x);
}

/* Token-balanced plan, worked by hand: lengths 10, 50, 30, 30, 5 on two
 * ranks: 50 -> r0; 30 -> r1; 30 -> r1 (30 < 50); 10 -> r0 (50 < 60);
 * 5 -> r0 (tie 60/60, lowest rank). Loads 65 / 60. One rank: all r0. */
static void test_plan(void **state)
{
    (void)state;
    pq_fasta_record r[5];
    memset(r, 0, sizeof r);
    int64_t len[5] = {10, 50, 30, 30, 5};
    char *names[5] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++) {
        r[i].id = names[i];
        r[i].n_ids = len[i];
    }
    int owner[5], want[5] = {0, 0, 1, 1, 0};
    assert_int_equal(pq_calib_plan(r, 5, 2, owner), PQ_OK);
    assert_memory_equal(owner, want, sizeof want);
    int one[5], zeros[5] = {0};
    assert_int_equal(pq_calib_plan(r, 5, 1, one), PQ_OK);
    assert_memory_equal(one, zeros, sizeof zeros);
}

/* A site whose uint32 counters could wrap is flushed before counting more:
 * 2.0 x 3 is counted, the pending count is pushed to the wrap limit, 2.0 x 4
 * more forces a flush first; 7 in all, none lost. */
static void test_flush_before_wrap(void **state)
{
    (void)state;
    pq_calib *c;
    float x[4] = {2.0f, 2.0f, 2.0f, -1.0f};
    assert_int_equal(pq_calib_create(1, 4, 8, &c), PQ_OK);
    pq_calib_site *s = &c->sites[0];
    assert_int_equal(pq_calib_site_add(&g_ops, s, x, 1, 4), PQ_OK);
    assert_null(s->blocks[128]);
    s->n_pending = UINT32_MAX - 2;
    float y[4] = {2.0f, 2.0f, 2.0f, 2.0f};
    assert_int_equal(pq_calib_site_add(&g_ops, s, y, 1, 4), PQ_OK);
    assert_non_null(s->blocks[128]);
    assert_int_equal(s->blocks[128][0], 3);
    assert_int_equal(s->n_pending, 4);
    assert_int_equal(pq_calib_flush(c), PQ_OK);
    assert_int_equal(s->blocks[128][0], 7);
    assert_int_equal(s->blocks[256 + 127][0], 1);
    assert_int_equal(s->n_pending, 0);
    pq_calib_free(c);
}

static void assert_sites_equal(const pq_calib_site *a, const pq_calib_site *b)
{
    assert_memory_equal(&a->min, &b->min, sizeof a->min);
    assert_memory_equal(&a->max, &b->max, sizeof a->max);
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_memory_equal(a->chan_absmax, b->chan_absmax, (size_t)a->dim * sizeof(float));
    for (int k = 0; k < PQ_HIST_NBLOCKS; k++) {
        uint64_t zero[PQ_HIST_BLOCK] = {0};
        const uint64_t *pa = a->blocks[k] ? a->blocks[k] : zero, *pb = b->blocks[k] ? b->blocks[k] : zero;
        assert_memory_equal(pa, pb, sizeof zero);
    }
}

/* Whole vs split into chunks merged in another order: same bits. */
static void test_merge_exact(void **state)
{
    (void)state;
    enum { T = 300, D = 16 };
    float *x = malloc(T * D * sizeof *x);
    for (int i = 0; i < T * D; i++) x[i] = randn() * 3;
    x[5] = -0.0f;
    pq_calib *whole, *parts[3], *merged;
    assert_int_equal(pq_calib_create(1, D, 4 * D, &whole), PQ_OK);
    assert_int_equal(pq_calib_site_add(&g_ops, &whole->sites[0], x, T, D), PQ_OK);
    assert_int_equal(pq_calib_flush(whole), PQ_OK);
    int cut[4] = {0, 7, 190, T};
    for (int p = 0; p < 3; p++) {
        assert_int_equal(pq_calib_create(1, D, 4 * D, &parts[p]), PQ_OK);
        /* tokens of part p: every third row starting at p (a hash-like split) */
        for (int t = cut[p]; t < cut[p + 1]; t++)
            assert_int_equal(pq_calib_site_add(&g_ops, &parts[p]->sites[0], x + t * D, 1, D), PQ_OK);
    }
    assert_int_equal(pq_calib_create(1, D, 4 * D, &merged), PQ_OK);
    assert_int_equal(pq_calib_merge(merged, parts[2]), PQ_OK);
    assert_int_equal(pq_calib_merge(merged, parts[0]), PQ_OK);
    assert_int_equal(pq_calib_merge(merged, parts[1]), PQ_OK);
    assert_sites_equal(&whole->sites[0], &merged->sites[0]);
    pq_calib *other;
    assert_int_equal(pq_calib_create(2, D, 4 * D, &other), PQ_OK);
    assert_int_equal(pq_calib_merge(merged, other), PQ_ERR_CALIBRATION);
    pq_err_clear();
    pq_calib_free(other);
    for (int p = 0; p < 3; p++) pq_calib_free(parts[p]);
    pq_calib_free(whole);
    pq_calib_free(merged);
    free(x);
}

/* The journal's block images (calib_journal.h): three parts of a site's
 * tokens, each through its byte image, merged in another order, equal the
 * statistics of all the tokens collected at once; the image starts with the
 * sequence count and the first site's min and max (docs/FORMAT.md); a cut
 * image or a present flag other than 0/1 is refused. */
static void test_image_merge(void **state)
{
    (void)state;
    enum { T = 200, D = 8 };
    float *x = malloc(T * D * sizeof *x);
    for (int i = 0; i < T * D; i++) x[i] = randn() * 5;
    pq_calib *whole, *merged;
    assert_int_equal(pq_calib_create(1, D, 4 * D, &whole), PQ_OK);
    assert_int_equal(pq_calib_site_add(&g_ops, &whole->sites[0], x, T, D), PQ_OK);
    assert_int_equal(pq_calib_flush(whole), PQ_OK);
    whole->n_sequences = 3;
    assert_int_equal(pq_calib_create(1, D, 4 * D, &merged), PQ_OK);
    int cut[4] = {0, 50, 51, T}, order[3] = {1, 2, 0};
    for (int k = 0; k < 3; k++) {
        int p = order[k];
        pq_calib *part;
        uint8_t *img;
        size_t n;
        assert_int_equal(pq_calib_create(1, D, 4 * D, &part), PQ_OK);
        assert_int_equal(pq_calib_site_add(&g_ops, &part->sites[0], x + cut[p] * D, cut[p + 1] - cut[p], D), PQ_OK);
        part->n_sequences = 1;
        assert_int_equal(pq_calib_image(part, &img, &n), PQ_OK);
        uint64_t seqs;
        float mm[2], lo = INFINITY;
        memcpy(&seqs, img, 8);
        memcpy(mm, img + 8, 8);
        for (int i = cut[p] * D; i < cut[p + 1] * D; i++) lo = fminf(lo, x[i]);
        assert_int_equal(seqs, 1);
        assert_true(mm[0] == lo);
        assert_int_equal(pq_calib_merge_image(merged, img, n - 1, "cut"), PQ_ERR_FORMAT);
        pq_err_clear();
        assert_int_equal(pq_calib_merge_image(merged, img, n, "part"), PQ_OK);
        free(img);
        pq_calib_free(part);
    }
    assert_int_equal(merged->n_sequences, 3);
    assert_sites_equal(&whole->sites[0], &merged->sites[0]);
    /* a present flag of 2 in the first site's table */
    uint8_t *img;
    size_t n;
    assert_int_equal(pq_calib_image(whole, &img, &n), PQ_OK);
    img[8 + 8 + 40 + D * 4] = 2;
    assert_int_equal(pq_calib_merge_image(merged, img, n, "bad"), PQ_ERR_FORMAT);
    pq_err_clear();
    free(img);
    pq_calib_free(whole);
    pq_calib_free(merged);
    free(x);
}

static pq_calib *one_site(const float *x, int64_t n)
{
    pq_calib *c;
    assert_int_equal(pq_calib_create(1, (int)n, 4, &c), PQ_OK);
    assert_int_equal(pq_calib_site_add(&g_ops, &c->sites[0], x, 1, n), PQ_OK);
    assert_int_equal(pq_calib_flush(c), PQ_OK);
    return c;
}

static void test_all_zero(void **state)
{
    (void)state;
    float x[64] = {0};
    pq_calib *c = one_site(x, 64);
    for (int m = 0; m < PQ_CALIB_N_METHODS; m++)
        for (int sym = 0; sym < 2; sym++) {
            pq_calib_range r;
            assert_int_equal(pq_calib_compute(&c->sites[0], m, sym, 99.99, &r), PQ_OK);
            assert_true(r.amax == 0 && r.lo == 0 && r.hi == 0);
            float s;
            int32_t z;
            pq_calib_qparams(&r, sym, &s, &z);
            assert_true(s == 1.0f && z == 0); /* ORT compute_scale_zp: scale 1, zp 0 */
        }
    pq_calib_free(c);
}

/* Constant 2.5 (exact on the grid): every bin of the |x| histogram but the
 * last is empty, so entropy keeps the whole range (only i = 2048 has a finite
 * KL, 0); percentile lands in the last bin, whose left edge is
 * 2.5 * 2047/2048; minmax is exact. */
static void test_constant(void **state)
{
    (void)state;
    float x[100];
    for (int i = 0; i < 100; i++) x[i] = 2.5f;
    pq_calib *c = one_site(x, 100);
    pq_calib_range r;
    assert_int_equal(pq_calib_compute(&c->sites[0], PQ_CALIB_ENTROPY, true, 0, &r), PQ_OK);
    assert_true(r.amax == 2.5f);
    assert_true(r.kl == 0.0);
    assert_int_equal(pq_calib_compute(&c->sites[0], PQ_CALIB_PERCENTILE, true, 99.99, &r), PQ_OK);
    assert_true(r.amax == (float)(2047 * (2.5 / 2048)));
    assert_int_equal(pq_calib_compute(&c->sites[0], PQ_CALIB_MINMAX, false, 0, &r), PQ_OK);
    assert_true(r.lo == 2.5f && r.hi == 2.5f);
    float s;
    int32_t z;
    pq_calib_qparams(&r, false, &s, &z); /* range [0, 2.5]: scale 2.5/255, zp -128 */
    assert_true(s == (float)(2.5 / 255.0));
    assert_int_equal(z, -128);
    pq_calib_free(c);
}

/* Negative-only data: the |x| histogram methods see magnitudes; the
 * asymmetric range is clamped to the observed maximum, then 0 is included. */
static void test_negative_only(void **state)
{
    (void)state;
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = -(float)(i + 1) / 64.0f; /* -1/64 .. -4 */
    pq_calib *c = one_site(x, 256);
    pq_calib_range r;
    assert_int_equal(pq_calib_compute(&c->sites[0], PQ_CALIB_MINMAX, true, 0, &r), PQ_OK);
    assert_true(r.amax == 4.0f);
    assert_int_equal(pq_calib_compute(&c->sites[0], PQ_CALIB_PERCENTILE, false, 50, &r), PQ_OK);
    assert_true(r.hi <= -1.0f / 64.0f && r.lo >= -4.0f);
    float s;
    int32_t z;
    pq_calib_qparams(&r, false, &s, &z);
    assert_int_equal(z, 127); /* rmax = 0 maps to the top code */
    float y[3] = {-1, 2, NAN};
    pq_calib_free(c);
    c = one_site(y, 3);
    assert_int_equal(pq_calib_check(c, false), PQ_ERR_CALIBRATION);
    assert_non_null(strstr(pq_err_detail(), "1 NaN"));
    pq_err_clear();
    assert_int_equal(pq_calib_check(c, true), PQ_ERR_CALIBRATION); /* other sites never fired */
    assert_non_null(strstr(pq_err_detail(), "never fired"));
    pq_err_clear();
    pq_calib_free(c);
}

/* Asymmetric qparams by hand: [-1, 3] -> scale 4/255, zp = -128 - rne(-63.75) = -64. */
static void test_qparams(void **state)
{
    (void)state;
    pq_calib_range r = {.lo = -1.0f, .hi = 3.0f, .amax = 3.0f};
    float s;
    int32_t z;
    pq_calib_qparams(&r, false, &s, &z);
    assert_true(s == (float)(4.0 / 255.0));
    assert_int_equal(z, -128 - (int)nearbyint(-1.0 / (double)(float)(4.0 / 255.0)));
    pq_calib_qparams(&r, true, &s, &z);
    assert_true(s == 3.0f / 127.0f && z == 0);
}

/* Percentile index: first k with cumulative fraction >= p. */
static void test_percentile_index(void **state)
{
    (void)state;
    uint64_t h[4] = {1, 1, 1, 1};
    assert_int_equal(pq_calib_percentile_index(h, 4, 0.5), 1);
    assert_int_equal(pq_calib_percentile_index(h, 4, 0.51), 2);
    assert_int_equal(pq_calib_percentile_index(h, 4, 1.0), 3);
}

/* Entropy by hand on n = 8 bins, nq = 2 levels, start 2: bins
 * {0, 4, 4, 4, 4, 0, 0, 1} -> after bins[0] = bins[1]: {4, 4, 4, 4, 4, 0, 0, 1}.
 * i = 5: p = {4,4,4,4,5}, levels {0,0,0,1,1} (digitize on 0, 2.5, 5), q = {4,4,4,4,4}:
 * KL > 0. i = 8: p = bins; levels {0,0,0,0,1,1,1,1}; level 1 averages bins 4 and 7
 * (non-empty): 2.5; q = {4,4,4,4,2.5,0,0,2.5}; KL = sum p ln(p/q) > 0.
 * The exact minimiser is computed here from the same definitions in double. */
static double kl_ref(const double *p, const double *q, int n)
{
    double sp = 0, sq = 0, s = 0;
    for (int j = 0; j < n; j++) { sp += p[j]; sq += q[j]; }
    for (int j = 0; j < n; j++) {
        if (p[j] == 0) continue;
        if (q[j] == 0) return INFINITY;
        s += p[j] / sp * log((p[j] / sp) / (q[j] / sq));
    }
    return s;
}

static void test_entropy_small(void **state)
{
    (void)state;
    uint64_t h[8] = {0, 4, 4, 4, 4, 0, 0, 1};
    double kl[9];
    /* hand-expanded candidates */
    double p2[2] = {4, 4 + 4 + 4 + 4 + 1}, q2[2] = {4, 4};                  /* i=2: levels {0,1} */
    double p3[3] = {4, 4, 4 + 4 + 1}, q3[3] = {4, 4, 4};                    /* levels {0,0,1} */
    double p4[4] = {4, 4, 4, 4 + 1}, q4[4] = {4, 4, 4, 4};                  /* {0,0,1,1} */
    double p5[5] = {4, 4, 4, 4, 5}, q5[5] = {4, 4, 4, 4, 4};                /* {0,0,0,1,1} */
    double p6[6] = {4, 4, 4, 4, 4, 1}, q6[6] = {4, 4, 4, 4, 4, 0};          /* bin5 empty */
    double p7[7] = {4, 4, 4, 4, 4, 0, 1}, q7[7] = {4, 4, 4, 4, 4, 0, 0};
    double p8[8] = {4, 4, 4, 4, 4, 0, 0, 1}, q8[8] = {4, 4, 4, 4, 2.5, 0, 0, 2.5};
    kl[2] = kl_ref(p2, q2, 2); kl[3] = kl_ref(p3, q3, 3); kl[4] = kl_ref(p4, q4, 4);
    kl[5] = kl_ref(p5, q5, 5); kl[6] = kl_ref(p6, q6, 6); kl[7] = kl_ref(p7, q7, 7);
    kl[8] = kl_ref(p8, q8, 8);
    int want = 2;
    for (int i = 2; i <= 8; i++) if (kl[i] <= kl[want]) want = i;
    double got_kl;
    int got = pq_calib_entropy_nvidia(h, 8, 2, 2, &got_kl);
    assert_int_equal(got, want);
    assert_true(fabs(got_kl - kl[want]) < 1e-12);
}

/* Overwrite attribute `name` of object obj in the store at path with the
 * value at v, of memory type mtype (HDF5 converts to the stored type). */
static void set_store_attr(const char *path, const char *obj, const char *name, hid_t mtype, const void *v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    assert_true(f >= 0 && o >= 0 && a >= 0);
    assert_true(H5Awrite(a, mtype, v) >= 0);
    H5Aclose(a); H5Oclose(o); H5Fclose(f);
}

static void set_store_i64(const char *path, const char *obj, const char *name, int64_t v)
{
    set_store_attr(path, obj, name, H5T_NATIVE_INT64, &v);
}

static void test_store_roundtrip(void **state)
{
    (void)state;
    enum { T = 50, D = 8 };
    float x[T * D], y[T * 4 * D];
    for (int i = 0; i < T * D; i++) x[i] = randn();
    for (int i = 0; i < T * 4 * D; i++) y[i] = randn() * 10;
    pq_calib *c, *back;
    assert_int_equal(pq_calib_create(2, D, 4 * D, &c), PQ_OK);
    for (int i = 0; i < c->n_sites; i++) {
        pq_calib_site *s = &c->sites[i];
        assert_int_equal(pq_calib_site_add(&g_ops, s, s->dim == D ? x : y, T, s->dim), PQ_OK);
    }
    snprintf(c->model_sha256, sizeof c->model_sha256, "%s", "ab12");
    c->n_sequences = 3;
    char path[] = "/tmp/pq_calib_testXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    /* pending uint32 counts must reach the store: saving them unflushed is refused */
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_ERR_INTERNAL);
    pq_err_clear();
    assert_int_equal(pq_calib_flush(c), PQ_OK);
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_OK);
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_OK);
    assert_int_equal(back->n_sequences, 3);
    assert_string_equal(back->model_sha256, "ab12");
    for (int i = 0; i < c->n_sites; i++) assert_sites_equal(&c->sites[i], &back->sites[i]);
    pq_calib_free(back);
    /* corrupt: the count no longer matches the histogram */
    set_store_i64(path, "calibration/layer.1.ffn_mid", "count", 7);
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "layer.1.ffn_mid"));
    pq_err_clear();

    /* an infinite minimum for a site that counted values: not a range of
     * finite values (it would make the min-max range infinite) */
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_OK);
    const float neg_inf = -INFINITY;
    set_store_attr(path, "calibration/layer.0.ffn_in", "min", H5T_NATIVE_FLOAT, &neg_inf);
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "layer.0.ffn_in: bad range [-inf"));
    pq_err_clear();

    /* a hist_bin longer than the grid has bins (its extent declared, its
     * chunks never written): refused before anything is allocated for it */
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_OK);
    {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "calibration/layer.1.attn_out", H5P_DEFAULT);
        assert_true(g >= 0 && H5Ldelete(g, "hist_bin", H5P_DEFAULT) >= 0);
        const hsize_t n = (hsize_t)1 << 20, chunk = 1;
        hid_t sp = H5Screate_simple(1, &n, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        assert_true(H5Pset_chunk(dcpl, 1, &chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0);
        hid_t d = H5Dcreate2(g, "hist_bin", H5T_STD_U32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(d >= 0);
        H5Dclose(d); H5Pclose(dcpl); H5Sclose(sp); H5Gclose(g); H5Fclose(f);
    }
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "layer.1.attn_out/hist_bin: 1048576 elements, more than the 131072 bins"));
    pq_err_clear();

    /* a store of an older format: refused with the word to collect again */
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_OK);
    set_store_i64(path, "/", "format_version", 3);
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "calibration format 3; this build reads format 4: collect it again"));
    pq_err_clear();

    /* a dataset without its checksum, then one whose bytes were changed */
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_OK);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "calibration/layer.0.attn_in", H5P_DEFAULT);
    hid_t d = H5Dopen2(g, "chan_absmax", H5P_DEFAULT);
    const hsize_t origin[1] = {0};
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t csize = 0;
    assert_true(H5Dget_chunk_info_by_coord(d, origin, &mask, &addr, &csize) >= 0);
    assert_int_equal(csize, D * sizeof(float) + 4);
    H5Dclose(d);
    float ones[D];
    for (int i = 0; i < D; i++) ones[i] = 1.0f;
    const hsize_t nd = D;
    assert_true(H5Ldelete(g, "chan_absmax", H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(1, &nd, NULL);
    d = H5Dcreate2(g, "chan_absmax", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ones);
    H5Dclose(d); H5Sclose(sp); H5Gclose(g); H5Fclose(f);
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "layer.0.attn_in/chan_absmax: no Fletcher-32 checksum"));
    pq_err_clear();
    assert_int_equal(pq_calib_h5_save(path, c, "test"), PQ_OK);
    fd = open(path, O_RDWR);
    uint8_t byte = 0;
    assert_int_equal(pread(fd, &byte, 1, (off_t)addr + 5), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)addr + 5), 1);
    close(fd);
    assert_int_equal(pq_calib_h5_load(path, &back), PQ_ERR_FORMAT);
    assert_non_null(strstr(pq_err_detail(), "layer.0.attn_in/chan_absmax: checksum mismatch"));
    pq_err_clear();
    unlink(path);
    pq_calib_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid),           cmocka_unit_test(test_kernel_variants),
        cmocka_unit_test(test_flush_before_wrap), cmocka_unit_test(test_plan),
        cmocka_unit_test(test_merge_exact),    cmocka_unit_test(test_all_zero),
        cmocka_unit_test(test_image_merge),
        cmocka_unit_test(test_constant),       cmocka_unit_test(test_negative_only),
        cmocka_unit_test(test_qparams),        cmocka_unit_test(test_percentile_index),
        cmocka_unit_test(test_entropy_small),  cmocka_unit_test(test_store_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
