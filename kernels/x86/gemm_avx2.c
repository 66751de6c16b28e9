/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_avx2.c - AVX2/FMA GEMM kernels (compiled with -mavx2 -mfma only here).
 *
 * int8 x int8: no VNNI, and _mm256_maddubs_epi16 saturates its s16 pair sums
 * (255 * 127 * 2 > 32767), so both operands are sign-extended to int16 and
 * multiplied with _mm256_madd_epi16, whose int32 pair sums are exact for any
 * int8 codes (|sum| <= 2 * 128 * 128). A is repacked to int16 pairs once per
 * call; W stays int8 in memory and is widened in registers. The micro-kernel
 * is 6 rows x 16 columns (12 int32 accumulators) over the whole k, so the
 * fused epilogue runs straight from registers.
 *
 * Weight-only: small m (GEMV, memory-bound) sums x * code per group in fp32
 * and applies scale and zero point once per group; larger m dequantises a
 * chunk of panels exactly as FORMAT.md into an fp32 buffer and runs a 6 x 16
 * FMA kernel on it. */
#include <immintrin.h>
#include <string.h>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/gemm/gemm_x86.h"
#include "kernels/kernels_impl.h"

#define MR 6
#define I8_CHUNK 8 /* panels per chunk: 8 x 16 x k int8 of W stay in L2 */
#define F_CHUNK 4  /* panels dequantised at a time: 4 x 16 x k fp32 */
#define GEMV_MAX_M 3


/* ---- int8 x int8 ---------------------------------------------------------- */

/* Packed A: blocks of MR rows; per quad of k, MR rows x 4 bytes (one
 * _mm256_set1_epi32 broadcast feeds 4 k). Missing rows and k past the end are
 * zero. The sign trick needs codes in [-127, 127], so a -128 is stored as -127
 * in the main copy and the remaining -1 in a correction copy of the block,
 * which the kernel runs as a second pass only for blocks flagged to have one.
 * Layout: [main nb blocks][correction nb blocks][nb flag bytes]. */
static int64_t a_block_bytes(int64_t k) { return (k + 3) / 4 * MR * 4; }

static size_t a_pack_size_avx2(int64_t m, int64_t k)
{
    int64_t nb = (m + MR - 1) / MR;
    return (size_t)(2 * nb * a_block_bytes(k) + nb);
}

static void a_pack_avx2(const int8_t *a, int64_t m, int64_t k, int64_t lda, void *dst, int64_t b0,
                        int64_t b1)
{
    int64_t kq = (k + 3) / 4, nb = (m + MR - 1) / MR, bb = a_block_bytes(k);
    int8_t *main_ = dst, *corr = main_ + nb * bb;
    uint8_t *flag = (uint8_t *)(corr + nb * bb);
    for (int64_t b = b0; b < b1; b++) {
        int8_t *o = main_ + b * bb;
        int has_min = 0;
        memset(o, 0, (size_t)bb);
        for (int r = 0; r < MR && b * MR + r < m; r++) {
            const int8_t *s = a + (b * MR + r) * lda;
            for (int64_t j = 0; j < k; j++) {
                int8_t v = s[j];
                has_min |= v == -128;
                o[(j / 4) * MR * 4 + r * 4 + (j & 3)] = v == -128 ? (int8_t)-127 : v;
            }
        }
        flag[b] = (uint8_t)has_min;
        if (!has_min) continue;
        int8_t *c = corr + b * bb;
        memset(c, 0, (size_t)bb);
        for (int r = 0; r < MR && b * MR + r < m; r++) {
            const int8_t *s = a + (b * MR + r) * lda;
            for (int64_t j = 0; j < k; j++)
                if (s[j] == -128) c[(j / 4) * MR * 4 + r * 4 + (j & 3)] = -1;
        }
    }
    (void)kq;
}

/* acc[2r], acc[2r+1] += A rows r < R times the panel's columns 0-7, 8-15.
 * Sign trick: a * w = |w| * (a * sign(w)); _mm256_maddubs_epi16 takes |w| as
 * unsigned bytes (0..128) and a * sign(w) as signed bytes, so with a in
 * [-127, 127] each int16 pair sum is at most 2 * 128 * 127 = 32512 and never
 * saturates; _mm256_madd_epi16 with ones then adds the pairs into int32. */
/* acc[2r], acc[2r+1] += row r of quad aq times the columns 0-7 (w0), 8-15
 * (w1), for R rows, by the sign trick. */
AINLINE void quad_step(const int8_t *aq, __m256i w0, __m256i w1, int R, __m256i *acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
    for (int r = 0; r < R; r++) {
        int32_t quad;
        memcpy(&quad, aq + 4 * r, sizeof quad);
        __m256i av = _mm256_set1_epi32(quad);
        __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_sign_epi8(av, w0));
        __m256i p1 = _mm256_maddubs_epi16(u1, _mm256_sign_epi8(av, w1));
        acc[2 * r] = _mm256_add_epi32(acc[2 * r], _mm256_madd_epi16(p0, ones));
        acc[2 * r + 1] = _mm256_add_epi32(acc[2 * r + 1], _mm256_madd_epi16(p1, ones));
    }
}

AINLINE void kern_i8(const int8_t *ap, const uint8_t *wp, int64_t kq, int R, __m256i *acc)
{
    for (int64_t q = 0; q < kq; q++)
        quad_step(ap + q * MR * 4, _mm256_load_si256((const __m256i *)(wp + q * 64)),
                  _mm256_load_si256((const __m256i *)(wp + q * 64 + 32)), R, acc);
}

/* corr: the block's correction copy, or NULL when it has no -128. */
#define DEF_KERN_I8(R)                                                                     \
    static void kern_i8_##R(const int8_t *ap, const int8_t *corr, const uint8_t *wp,        \
                            int64_t kq, __m256i *acc)                                       \
    {                                                                                      \
        __m256i a[2 * R];                                                                  \
        for (int i = 0; i < 2 * R; i++) a[i] = _mm256_setzero_si256();                     \
        kern_i8(ap, wp, kq, R, a);                                                         \
        if (corr) kern_i8(corr, wp, kq, R, a);                                             \
        for (int i = 0; i < 2 * R; i++) acc[i] = a[i];                                     \
    }
DEF_KERN_I8(1)
DEF_KERN_I8(2)
DEF_KERN_I8(3)
DEF_KERN_I8(4)
DEF_KERN_I8(5)
DEF_KERN_I8(6)

/* One mr x 16 tile: rows [row0, row0 + mr) (packed block ap, correction cp
 * or NULL) times panel p. */
typedef void (*tile_fn)(const pq_gemm_i8i8_job *job, const int8_t *ap, const int8_t *cp, int mr, int64_t row0,
                        int64_t p);

/* Every tile of panels [p0, p1): chunks of I8_CHUNK panels (their weights
 * stay in L2), in each the row blocks, in each the chunk's panels. */
static void each_tile(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1, tile_fn tile)
{
    int64_t nb = (job->m + MR - 1) / MR, bb = a_block_bytes(job->w->k);
    const int8_t *apk = job->a_packed, *cpk = apk + nb * bb;
    const uint8_t *flag = (const uint8_t *)(cpk + nb * bb);
    for (int64_t pc = p0; pc < p1; pc += I8_CHUNK) {
        int64_t pe = pc + I8_CHUNK < p1 ? pc + I8_CHUNK : p1;
        for (int64_t b = 0; b < nb; b++) {
            int64_t row0 = b * MR;
            int mr = job->m - row0 < MR ? (int)(job->m - row0) : MR;
            const int8_t *ap = apk + b * bb, *cp = flag[b] ? cpk + b * bb : NULL;
            for (int64_t p = pc; p < pe; p++) tile(job, ap, cp, mr, row0, p);
        }
    }
}

static void tile_i8(const pq_gemm_i8i8_job *job, const int8_t *ap, const int8_t *cp, int mr, int64_t row0,
                    int64_t p)
{
    const pq_gemm_w *w = job->w;
    int64_t kq = w->kp / 4;
    const uint8_t *wp = w->data + p * w->panel_bytes;
    __m256i acc[2 * MR];
    switch (mr) {
    case 1: kern_i8_1(ap, cp, wp, kq, acc); break;
    case 2: kern_i8_2(ap, cp, wp, kq, acc); break;
    case 3: kern_i8_3(ap, cp, wp, kq, acc); break;
    case 4: kern_i8_4(ap, cp, wp, kq, acc); break;
    case 5: kern_i8_5(ap, cp, wp, kq, acc); break;
    default: kern_i8_6(ap, cp, wp, kq, acc); break;
    }
    pq_gemm_tile_out_i8(job, acc, mr, row0, p);
}

static void i8i8_avx2(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1) { each_tile(job, p0, p1, tile_i8); }

/* ---- W4A8: int4 weights on the same packed A ------------------------------ */
/* A pair of k quads is 64 bytes of nibbles (gemm_impl.h): masked with 0xF0
 * they are 16 * q as signed bytes, |16 q| <= 128, so the sign trick above
 * still cannot saturate; the int32 sums are 16 times the exact ones (which
 * fit for k <= 65536), and an arithmetic shift by 4 gives them back. */

/* acc += R rows x one panel over quads [q0, q1), q0 even. */
AINLINE void kern_i4(const int8_t *ap, const uint8_t *wp, int64_t q0, int64_t q1, int R, __m256i *acc)
{
    const __m256i m = _mm256_set1_epi8((char)0xF0);
    int64_t t;
    for (t = q0 / 2; 2 * t < q1; t++) {
        __m256i x0 = _mm256_load_si256((const __m256i *)(wp + t * 64));
        __m256i x1 = _mm256_load_si256((const __m256i *)(wp + t * 64 + 32));
        quad_step(ap + 2 * t * MR * 4, _mm256_and_si256(_mm256_slli_epi16(x0, 4), m),
                _mm256_and_si256(_mm256_slli_epi16(x1, 4), m), R, acc);
        if (2 * t + 1 < q1) /* an odd last quad: the high nibbles are padding */
            quad_step(ap + (2 * t + 1) * MR * 4, _mm256_and_si256(x0, m), _mm256_and_si256(x1, m), R, acc);
    }
}

#define DEF_KERN_I4(R)                                                                     \
    static void kern_i4_##R(const int8_t *ap, const int8_t *corr, const uint8_t *wp,        \
                            int64_t q0, int64_t q1, __m256i *acc)                           \
    {                                                                                      \
        __m256i a[2 * R];                                                                  \
        for (int i = 0; i < 2 * R; i++) a[i] = _mm256_setzero_si256();                     \
        kern_i4(ap, wp, q0, q1, R, a);                                                     \
        if (corr) kern_i4(corr, wp, q0, q1, R, a);                                         \
        for (int i = 0; i < 2 * R; i++) acc[i] = _mm256_srai_epi32(a[i], 4);               \
    }
DEF_KERN_I4(1)
DEF_KERN_I4(2)
DEF_KERN_I4(3)
DEF_KERN_I4(4)
DEF_KERN_I4(5)
DEF_KERN_I4(6)

typedef void (*kern_i4_fn)(const int8_t *, const int8_t *, const uint8_t *, int64_t, int64_t, __m256i *);
static const kern_i4_fn kerns_i4[MR + 1] = {NULL, kern_i4_1, kern_i4_2, kern_i4_3, kern_i4_4, kern_i4_5,
                                            kern_i4_6};

/* The reference's epilogue (pq_gemm.h, W4A8): per group the corrected sum
 * folded as f = fma((float)acc_g, s_g, f); then y = f * a_scale (+ bias), the
 * post-op per panel; raw int32 sums when the job has no y (one group). */
static void tile_i4(const pq_gemm_i8i8_job *job, const int8_t *ap, const int8_t *cp, int mr, int64_t row0,
                    int64_t p)
{
    const pq_gemm_w *w = job->w;
    int64_t ng = w->n_groups, kq = w->kp / 4, gq = w->group_size / 4;
    const uint8_t *wp = w->data + p * w->panel_bytes;
    int64_t col0 = p * PQ_GEMM_NR, nc = w->n - col0 < 16 ? w->n - col0 : 16;
    __m256i acc[2 * MR];
    __m256 f[2 * MR];
    for (int i = 0; i < 2 * mr; i++) f[i] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        int64_t q0 = g * gq, q1 = ng == 1 || q0 + gq > kq ? kq : q0 + gq;
        kerns_i4[mr](ap, cp, wp, q0, q1, acc);
        if (!job->y) break;
        int64_t s = (p * ng + g) * PQ_GEMM_NR;
        for (int r = 0; r < mr; r++)
            for (int h = 0; h < 2; h++) {
                __m256i v = acc[2 * r + h];
                if (w->zp && job->a_sums)
                    v = _mm256_sub_epi32(v, _mm256_mullo_epi32(
                        _mm256_loadu_si256((const __m256i *)(w->zp + s + 8 * h)),
                        _mm256_set1_epi32(job->a_sums[(row0 + r) * ng + g])));
                if (job->col_add)
                    v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(job->col_add + s + 8 * h)));
                f[2 * r + h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(w->scale + s + 8 * h),
                                               f[2 * r + h]);
            }
    }
    for (int r = 0; r < mr; r++) {
        int64_t i = row0 + r;
        if (!job->y) {
            int32_t t[16];
            _mm256_storeu_si256((__m256i *)t, acc[2 * r]);
            _mm256_storeu_si256((__m256i *)(t + 8), acc[2 * r + 1]);
            memcpy(job->c + i * job->ldc + col0, t, (size_t)nc * sizeof *t);
            continue;
        }
        __m256 sa = _mm256_set1_ps(job->a_scale[job->a_per_token ? i : 0]);
        __m256 v0 = _mm256_mul_ps(f[2 * r], sa), v1 = _mm256_mul_ps(f[2 * r + 1], sa);
        if (job->epi && job->epi->bias) add_bias(job->epi->bias + col0, nc, &v0, &v1);
        float *yr = job->y + i * job->ldy + col0;
        store_f(yr, v0, v1, nc);
        if (job->epi && job->epi->post != PQ_GEMM_POST_NONE) pq_gemm_post_apply(job->ops, job->epi, yr, i, col0, nc);
    }
}

static void i4i8_avx2(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1)
{
    if (job->w->n_groups > 1 && job->w->group_size % 8) { /* groups that split a pair of quads */
        pq_gemm_i4i8_ref(job, p0, p1);
        return;
    }
    each_tile(job, p0, p1, tile_i4);
}

/* ---- weight-only -------------------------------------------------------- */

/* 16 columns at input index k as fp32 codes (int4: the nibble, 0..15). */
AINLINE void load_w(const uint8_t *wp, int64_t k, int bits, __m256 *w0, __m256 *w1)
{
    if (bits == 4) {
        __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wp + k * 8)));
        *w0 = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
        *w1 = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
    } else {
        *w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(wp + k * 16))));
        *w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(wp + k * 16 + 8))));
    }
}

static void wonly_tile_out(const pq_gemm_wonly_job *job, __m256 v0, __m256 v1, int64_t i, int64_t p)
{
    const pq_gemm_w *w = job->w;
    int64_t col0 = p * PQ_GEMM_NR, nc = w->n - col0 < 16 ? w->n - col0 : 16;
    if (job->epi && job->epi->bias) add_bias(job->epi->bias + col0, nc, &v0, &v1);
    float *yr = job->y + i * job->ldy + col0;
    store_f(yr, v0, v1, nc);
    if (job->epi && job->epi->post != PQ_GEMM_POST_NONE) pq_gemm_post_apply(job->ops, job->epi, yr, i, col0, nc);
}

/* One row of x against panels [p0, p1): per group, S = sum x * code with four
 * independent accumulator pairs (FMA latency), then y += scale * (S - off *
 * sum(x over the group)), which is sum x * (code - zp) * scale. */
AINLINE void gemv_row(const pq_gemm_wonly_job *job, int64_t i, int64_t p0, int64_t p1, int bits)
{
    const pq_gemm_w *w = job->w;
    const float *x = job->x + i * job->ldx;
    const float *gsum = job->x_gsum + i * w->n_groups;
    int64_t gs = w->group_size, ng = w->n_groups, K = w->k;
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *wp = w->data + p * w->panel_bytes;
        const float *sc = w->scale + p * ng * PQ_GEMM_NR, *of = w->off + p * ng * PQ_GEMM_NR;
        __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            int64_t k = g * gs, k1 = k + gs < K ? k + gs : K;
            __m256 s[8];
            for (int u = 0; u < 8; u++) s[u] = _mm256_setzero_ps();
            for (; k + 4 <= k1; k += 4)
                for (int u = 0; u < 4; u++) {
                    __m256 w0, w1, xv = _mm256_broadcast_ss(x + k + u);
                    load_w(wp, k + u, bits, &w0, &w1);
                    s[2 * u] = _mm256_fmadd_ps(xv, w0, s[2 * u]);
                    s[2 * u + 1] = _mm256_fmadd_ps(xv, w1, s[2 * u + 1]);
                }
            for (; k < k1; k++) {
                __m256 w0, w1, xv = _mm256_broadcast_ss(x + k);
                load_w(wp, k, bits, &w0, &w1);
                s[0] = _mm256_fmadd_ps(xv, w0, s[0]);
                s[1] = _mm256_fmadd_ps(xv, w1, s[1]);
            }
            __m256 S0 = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[4], s[6]));
            __m256 S1 = _mm256_add_ps(_mm256_add_ps(s[1], s[3]), _mm256_add_ps(s[5], s[7]));
            __m256 xs = _mm256_set1_ps(gsum[g]);
            S0 = _mm256_fnmadd_ps(_mm256_loadu_ps(of + g * 16), xs, S0);
            S1 = _mm256_fnmadd_ps(_mm256_loadu_ps(of + g * 16 + 8), xs, S1);
            t0 = _mm256_fmadd_ps(_mm256_loadu_ps(sc + g * 16), S0, t0);
            t1 = _mm256_fmadd_ps(_mm256_loadu_ps(sc + g * 16 + 8), S1, t1);
        }
        wonly_tile_out(job, t0, t1, i, p);
    }
}

/* Exact FORMAT.md dequantisation of panel p into buf[k][16]. */
AINLINE void dequant_panel(const pq_gemm_w *w, int64_t p, float *buf, int bits)
{
    const uint8_t *wp = w->data + p * w->panel_bytes;
    int64_t gs = w->group_size, ng = w->n_groups, K = w->k;
    const float *sc = w->scale + p * ng * PQ_GEMM_NR, *of = w->off + p * ng * PQ_GEMM_NR;
    for (int64_t g = 0; g < ng; g++) {
        __m256 s0 = _mm256_loadu_ps(sc + g * 16), s1 = _mm256_loadu_ps(sc + g * 16 + 8);
        __m256 o0 = _mm256_loadu_ps(of + g * 16), o1 = _mm256_loadu_ps(of + g * 16 + 8);
        int64_t k1 = (g + 1) * gs < K ? (g + 1) * gs : K;
        for (int64_t k = g * gs; k < k1; k++) {
            __m256 w0, w1;
            load_w(wp, k, bits, &w0, &w1);
            /* code - zp is a small integer: exact in fp32, then one product */
            _mm256_storeu_ps(buf + k * 16, _mm256_mul_ps(_mm256_sub_ps(w0, o0), s0));
            _mm256_storeu_ps(buf + k * 16 + 8, _mm256_mul_ps(_mm256_sub_ps(w1, o1), s1));
        }
    }
}

AINLINE void kern_f32(const float *x, int64_t ldx, const float *buf, int64_t K, int R, __m256 *acc)
{
    for (int i = 0; i < 2 * R; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m256 w0 = _mm256_loadu_ps(buf + k * 16), w1 = _mm256_loadu_ps(buf + k * 16 + 8);
        for (int r = 0; r < R; r++) {
            __m256 a = _mm256_broadcast_ss(x + r * ldx + k);
            acc[2 * r] = _mm256_fmadd_ps(a, w0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(a, w1, acc[2 * r + 1]);
        }
    }
}

#define DEF_KERN_F(R)                                                                      \
    static void kern_f_##R(const float *x, int64_t ldx, const float *buf, int64_t K, __m256 *acc) \
    {                                                                                      \
        __m256 a[2 * R];                                                                   \
        kern_f32(x, ldx, buf, K, R, a);                                                    \
        for (int i = 0; i < 2 * R; i++) acc[i] = a[i];                                     \
    }
DEF_KERN_F(1)
DEF_KERN_F(2)
DEF_KERN_F(3)
DEF_KERN_F(4)
DEF_KERN_F(5)
DEF_KERN_F(6)

size_t pq_gemm_wonly_scratch_avx2(int64_t m, int64_t k)
{
    return m > GEMV_MAX_M ? (size_t)(F_CHUNK * PQ_GEMM_NR * k) : 0;
}

void pq_gemm_wonly_avx2(const pq_gemm_wonly_job *job, int64_t p0, int64_t p1, float *scratch)
{
    const pq_gemm_w *w = job->w;
    int bits = w->bits;
    if (job->m <= GEMV_MAX_M) {
        for (int64_t i = 0; i < job->m; i++) {
            if (bits == 4)
                gemv_row(job, i, p0, p1, 4);
            else
                gemv_row(job, i, p0, p1, 8);
        }
        return;
    }
    int64_t K = w->k;
    for (int64_t pc = p0; pc < p1; pc += F_CHUNK) {
        int64_t pe = pc + F_CHUNK < p1 ? pc + F_CHUNK : p1;
        for (int64_t p = pc; p < pe; p++) {
            if (bits == 4)
                dequant_panel(w, p, scratch + (p - pc) * 16 * K, 4);
            else
                dequant_panel(w, p, scratch + (p - pc) * 16 * K, 8);
        }
        for (int64_t row0 = 0; row0 < job->m; row0 += MR) {
            int mr = job->m - row0 < MR ? (int)(job->m - row0) : MR;
            const float *x = job->x + row0 * job->ldx;
            for (int64_t p = pc; p < pe; p++) {
                const float *buf = scratch + (p - pc) * 16 * K;
                __m256 acc[2 * MR];
                switch (mr) {
                case 1: kern_f_1(x, job->ldx, buf, K, acc); break;
                case 2: kern_f_2(x, job->ldx, buf, K, acc); break;
                case 3: kern_f_3(x, job->ldx, buf, K, acc); break;
                case 4: kern_f_4(x, job->ldx, buf, K, acc); break;
                case 5: kern_f_5(x, job->ldx, buf, K, acc); break;
                default: kern_f_6(x, job->ldx, buf, K, acc); break;
                }
                for (int r = 0; r < mr; r++) wonly_tile_out(job, acc[2 * r], acc[2 * r + 1], row0 + r, p);
            }
        }
    }
}

/* ---- dynamic per-token quantisation --------------------------------------- */

void pq_gemm_quantize_dynamic_avx2(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q,
                                   int64_t ldq, float *scale)
{
    for (int64_t i = 0; i < m; i++) {
        const float *r = x + i * ldx;
        int8_t *o = q + i * ldq;
        float s = row_scale_dynamic(r, k);
        float inv = 1.0f / s;
        scale[i] = s;
        __m256 vi = _mm256_set1_ps(inv);
        int64_t j = 0;
        for (; j + 8 <= k; j += 8) _mm_storel_epi64((__m128i *)(o + j), quant8_dynamic(r + j, vi));
        for (; j < k; j++) o[j] = quant1_dynamic(r[j], inv);
    }
}

const pq_gemm_kernels pq_gemm_kernels_avx2 = {
    .name = "avx2",
    .a_pack_size = a_pack_size_avx2,
    .a_pack = a_pack_avx2,
    .a_pack_rows = MR,
    .i8i8 = i8i8_avx2,
    .i4i8 = i4i8_avx2,
    .wonly_scratch = pq_gemm_wonly_scratch_avx2,
    .wonly = pq_gemm_wonly_avx2,
    .quantize_dynamic = pq_gemm_quantize_dynamic_avx2,
};
