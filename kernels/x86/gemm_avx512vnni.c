/* SPDX-License-Identifier: Apache-2.0 */
/* gemm_avx512vnni.c - int8 x int8 GEMM with AVX-512 VNNI on 256-bit vectors
 * (vpdpbusd, AVX512VL); compiled with the VNNI flags only here. Weight-only
 * GEMM and activation quantisation reuse the AVX2 code.
 *
 * vpdpbusd multiplies unsigned by signed bytes and adds each group of four
 * products to an int32 lane without intermediate saturation, so it is exact
 * for any codes once A is made unsigned: a + 128 (a XOR 0x80) in [0, 255].
 * Then sum (a + 128) * w = sum a * w + 128 * sum w, and the weight row sums
 * from packing remove the offset. |sum (a + 128) * w| <= 255 * 128 * 32768 <
 * 2^31 for k <= 32768 (the pack's limit), and the wrapping subtraction lands
 * on the exact sum. Same 16-column k-quad weight panels as AVX2; with 32
 * vector registers the tile is 12 rows x 16 columns. */
#include <immintrin.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/gemm/gemm_x86.h"
#include "kernels/kernels_impl.h"

#define MRV 12
#define I8_CHUNK 8 /* panels per chunk, as AVX2: 8 x 16 x k bytes of W in L2 */
/* row blocks from which W4A8 unpacks a chunk's int4 panels (i4i8_vnni) */
#define I4_UNPACK_BLOCKS 4

/* Packed A: blocks of MRV rows; per quad of k, MRV rows x 4 bytes of a + 128;
 * a k tail is padded with byte 128 (code 0) so it meets zero weights. The
 * rows of a last, short block past m are left unwritten: every kernel reads
 * only the rows its tile has (kern_v_R, k4 with R = those rows). */
static int64_t a_block_bytes(int64_t k) { return (k + 3) / 4 * MRV * 4; }

static size_t a_pack_size_vnni(int64_t m, int64_t k)
{
    return (size_t)((m + MRV - 1) / MRV * a_block_bytes(k));
}


/* Rows are copied a quad (4 bytes) at a time with the XOR applied to the
 * whole word; a k tail shorter than a quad is completed with byte 128. */
static void a_pack_vnni(const int8_t *a, int64_t m, int64_t k, int64_t lda, void *dst, int64_t b0,
                        int64_t b1)
{
    int64_t bb = a_block_bytes(k), kq = k / 4, kt = k & 3;
    uint8_t *d = dst;
    for (int64_t b = b0; b < b1; b++) {
        uint8_t *blk = d + b * bb;
        int rows = m - b * MRV < MRV ? (int)(m - b * MRV) : MRV;
        for (int r = 0; r < rows; r++) {
            const int8_t *s = a + (b * MRV + r) * lda;
            uint8_t *o = blk + r * 4;
            for (int64_t q = 0; q < kq; q++) {
                uint32_t v;
                memcpy(&v, s + 4 * q, 4);
                v ^= 0x80808080u;
                memcpy(o + q * MRV * 4, &v, 4);
            }
            if (kt) {
                uint8_t t[4] = {0x80, 0x80, 0x80, 0x80};
                for (int64_t j = 0; j < kt; j++) t[j] = (uint8_t)(s[4 * kq + j] ^ 0x80);
                memcpy(o + kq * MRV * 4, t, 4);
            }
        }
    }
}

/* Per-token quantization written straight into packed blocks: the codes and
 * scales of pq_gemm_quantize_dynamic_avx2 (max is exact in any order; the same
 * reciprocal, product, round-half-even and clamp), 16 columns a step, without
 * the m x k int8 intermediate. Lanes past k are 0, so their bytes are 128,
 * the padding of a k tail. */
static void quantize_pack_vnni(const float *x, int64_t m, int64_t k, int64_t ldx, void *dst,
                               float *scale, int64_t b0, int64_t b1)
{
    int64_t bb = a_block_bytes(k), kq = (k + 3) / 4;
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m128i flip = _mm_set1_epi8((char)0x80);
    uint8_t *d = dst;
    for (int64_t b = b0; b < b1; b++) {
        uint8_t *blk = d + b * bb;
        int rows = m - b * MRV < MRV ? (int)(m - b * MRV) : MRV;
        for (int r = 0; r < rows; r++) {
            const float *s = x + (b * MRV + r) * ldx;
            uint8_t *o = blk + r * 4;
            __m512 vm = _mm512_setzero_ps();
            int64_t j = 0;
            for (; j + 16 <= k; j += 16) vm = _mm512_max_ps(vm, _mm512_abs_ps(_mm512_loadu_ps(s + j)));
            __mmask16 tail = (__mmask16)((1u << (k - j)) - 1u);
            if (tail) vm = _mm512_max_ps(vm, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, s + j)));
            float amax = _mm512_reduce_max_ps(vm);
            float sc = (amax > 1e-5f ? amax : 1e-5f) / 127.0f;
            scale[b * MRV + r] = sc;
            __m512 vi = _mm512_set1_ps(1.0f / sc);
            for (j = 0; j < k; j += 16) {
                __mmask16 mk = k - j >= 16 ? (__mmask16)0xffff : tail;
                __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, s + j), vi),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                __m128i c = _mm_xor_si128(_mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)), flip);
                int64_t q = j / 4, nq = kq - q < 4 ? kq - q : 4;
                uint8_t *oq = o + q * MRV * 4;
                _mm_storeu_si32(oq, c);
                if (nq > 1) _mm_storeu_si32(oq + MRV * 4, _mm_srli_si128(c, 4));
                if (nq > 2) _mm_storeu_si32(oq + 2 * MRV * 4, _mm_srli_si128(c, 8));
                if (nq > 3) _mm_storeu_si32(oq + 3 * MRV * 4, _mm_srli_si128(c, 12));
            }
        }
    }
}

AINLINE void kern_v(const uint8_t *ap, const uint8_t *wp, const int32_t *wsum, int64_t kq,
                    int R, __m256i *acc)
{
    for (int i = 0; i < 2 * R; i++) acc[i] = _mm256_setzero_si256();
    for (int64_t q = 0; q < kq; q++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(wp + q * 64));
        __m256i w1 = _mm256_load_si256((const __m256i *)(wp + q * 64 + 32));
        const uint8_t *aq = ap + q * MRV * 4;
        for (int r = 0; r < R; r++) {
            int32_t quad;
            memcpy(&quad, aq + 4 * r, sizeof quad);
            __m256i av = _mm256_set1_epi32(quad);
            acc[2 * r] = _mm256_dpbusd_epi32(acc[2 * r], av, w0);
            acc[2 * r + 1] = _mm256_dpbusd_epi32(acc[2 * r + 1], av, w1);
        }
    }
    __m256i o0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)wsum), 7);
    __m256i o1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(wsum + 8)), 7);
    for (int r = 0; r < R; r++) {
        acc[2 * r] = _mm256_sub_epi32(acc[2 * r], o0);
        acc[2 * r + 1] = _mm256_sub_epi32(acc[2 * r + 1], o1);
    }
}

#define DEF_KERN_V(R)                                                                      \
    static void kern_v_##R(const uint8_t *ap, const uint8_t *wp, const int32_t *wsum,        \
                           int64_t kq, __m256i *acc)                                        \
    {                                                                                      \
        __m256i a[2 * R];                                                                  \
        kern_v(ap, wp, wsum, kq, R, a);                                                    \
        for (int i = 0; i < 2 * R; i++) acc[i] = a[i];                                     \
    }
DEF_KERN_V(1)
DEF_KERN_V(2)
DEF_KERN_V(3)
DEF_KERN_V(4)
DEF_KERN_V(5)
DEF_KERN_V(6)
DEF_KERN_V(7)
DEF_KERN_V(8)
DEF_KERN_V(9)
DEF_KERN_V(10)
DEF_KERN_V(11)

/* The full 12-row tile with named accumulators: GCC keeps an array of 24
 * vectors on the stack inside the loop, which halves the speed. */
#define ROW(r, c0, c1)                                                         \
    do {                                                                       \
        int32_t quad;                                                          \
        memcpy(&quad, aq + 4 * (r), sizeof quad);                              \
        __m256i av = _mm256_set1_epi32(quad);                                  \
        c0 = _mm256_dpbusd_epi32(c0, av, w0);                                  \
        c1 = _mm256_dpbusd_epi32(c1, av, w1);                                  \
    } while (0)

static void kern_v_12(const uint8_t *ap, const uint8_t *wp, const int32_t *wsum, int64_t kq,
                      __m256i *acc)
{
    __m256i z = _mm256_setzero_si256();
    __m256i a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z,
            a10 = z, a11 = z, a12 = z, a13 = z, a14 = z, a15 = z, a16 = z, a17 = z, a18 = z,
            a19 = z, a20 = z, a21 = z, a22 = z, a23 = z;
    for (int64_t q = 0; q < kq; q++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(wp + q * 64));
        __m256i w1 = _mm256_load_si256((const __m256i *)(wp + q * 64 + 32));
        const uint8_t *aq = ap + q * MRV * 4;
        ROW(0, a0, a1);
        ROW(1, a2, a3);
        ROW(2, a4, a5);
        ROW(3, a6, a7);
        ROW(4, a8, a9);
        ROW(5, a10, a11);
        ROW(6, a12, a13);
        ROW(7, a14, a15);
        ROW(8, a16, a17);
        ROW(9, a18, a19);
        ROW(10, a20, a21);
        ROW(11, a22, a23);
    }
    __m256i t[2 * MRV] = {a0,  a1,  a2,  a3,  a4,  a5,  a6,  a7,  a8,  a9,  a10, a11,
                          a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23};
    __m256i o0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)wsum), 7);
    __m256i o1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(wsum + 8)), 7);
    for (int r = 0; r < MRV; r++) {
        acc[2 * r] = _mm256_sub_epi32(t[2 * r], o0);
        acc[2 * r + 1] = _mm256_sub_epi32(t[2 * r + 1], o1);
    }
}

typedef void (*kern_fn)(const uint8_t *, const uint8_t *, const int32_t *, int64_t, __m256i *);
static const kern_fn kerns[MRV + 1] = {NULL,     kern_v_1, kern_v_2,  kern_v_3,  kern_v_4,
                                       kern_v_5, kern_v_6, kern_v_7,  kern_v_8,  kern_v_9,
                                       kern_v_10, kern_v_11, kern_v_12};

/* Two panels at once on 512-bit vectors: one vpdpbusd covers 16 columns x 4
 * k, so a 12 x 32 tile needs half the instructions of the 256-bit tile. The
 * sums are the same exact int32 values. */
/* acc += a (unsigned bytes) . w (signed bytes). As inline assembly because
 * GCC copies and spills the accumulators of the intrinsic form in this loop. */
#define ZDP(acc, a, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w))

#define ZROW(r, c0, c1)                                                        \
    do {                                                                       \
        int32_t quad;                                                          \
        memcpy(&quad, aq + 4 * (r), sizeof quad);                              \
        __m512i av = _mm512_set1_epi32(quad);                                  \
        ZDP(c0, av, w0);                                                       \
        ZDP(c1, av, w1);                                                       \
    } while (0)
/* The twelve rows of the tile into a0..a23 (row r: a[2r], a[2r+1]). */
#define ZROWS()                                                                \
    ZROW(0, a0, a1);                                        \
    ZROW(1, a2, a3);                                        \
    ZROW(2, a4, a5);                                        \
    ZROW(3, a6, a7);                                        \
    ZROW(4, a8, a9);                                        \
    ZROW(5, a10, a11);                                      \
    ZROW(6, a12, a13);                                      \
    ZROW(7, a14, a15);                                      \
    ZROW(8, a16, a17);                                      \
    ZROW(9, a18, a19);                                      \
    ZROW(10, a20, a21);                                     \
    ZROW(11, a22, a23)

/* The 24 accumulators pinned to zmm0..zmm23 (they are only ever operands of
 * ZDP's asm): left to itself GCC keeps one in another register and copies it
 * in and out around its vpdpbusd every step, two more vector instructions
 * for 24 (the 32 registers of AVX-512 leave room for w0, w1 and the
 * broadcast). */
#define ZPIN(n, v) register __m512i a##n __asm__("zmm" #n) = (v)
#define ZACC(n) ZPIN(n, _mm512_setzero_si512())

__attribute__((noinline)) static void kern_z_12(const uint8_t *ap, const uint8_t *wp0, const uint8_t *wp1,
                                                const int32_t *ws0, const int32_t *ws1, int64_t kq, __m512i *acc0,
                                                __m512i *acc1)
{
    ZACC(0); ZACC(1); ZACC(2); ZACC(3); ZACC(4); ZACC(5); ZACC(6); ZACC(7);
    ZACC(8); ZACC(9); ZACC(10); ZACC(11); ZACC(12); ZACC(13); ZACC(14); ZACC(15);
    ZACC(16); ZACC(17); ZACC(18); ZACC(19); ZACC(20); ZACC(21); ZACC(22); ZACC(23);
    for (int64_t q = 0; q < kq; q++) {
        __m512i w0 = _mm512_load_si512((const void *)(wp0 + q * 64));
        __m512i w1 = _mm512_load_si512((const void *)(wp1 + q * 64));
        const uint8_t *aq = ap + q * MRV * 4;
        ZROWS();
    }
    /* the +128 offset of A removed with the weight row sums */
    __m512i o0 = _mm512_slli_epi32(_mm512_loadu_si512((const void *)ws0), 7);
    __m512i o1 = _mm512_slli_epi32(_mm512_loadu_si512((const void *)ws1), 7);
    const __m512i r0[MRV] = {a0, a2, a4, a6, a8, a10, a12, a14, a16, a18, a20, a22};
    const __m512i r1[MRV] = {a1, a3, a5, a7, a9, a11, a13, a15, a17, a19, a21, a23};
    for (int r = 0; r < MRV; r++) {
        acc0[r] = _mm512_sub_epi32(r0[r], o0);
        acc1[r] = _mm512_sub_epi32(r1[r], o1);
    }
}

/* Row i's segment v (scaled, bias added) at column col0, the nc lanes k
 * selects: the post-op (GELU in registers, or the residual added) and the
 * store; the reference's fp32 operations. */
AINLINE void out_row16(const pq_gemm_i8i8_job *job, __m512 v, int64_t i, int64_t col0, int64_t nc, __mmask16 k)
{
    const pq_gemm_epilogue *epi = job->epi;
    float *yr = job->y + i * job->ldy + col0;
    if (epi && epi->post == PQ_GEMM_POST_RESIDUAL) {
        _mm512_mask_storeu_ps(yr, k, _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, epi->residual + i * epi->ldr + col0)));
    } else if (gelu_in_regs(job, nc)) {
        _mm512_storeu_ps(yr, pq_gelu512(v));
    } else {
        _mm512_mask_storeu_ps(yr, k, v);
        if (epi && epi->post != PQ_GEMM_POST_NONE) pq_gemm_post_apply(job->ops, epi, yr, i, col0, nc);
    }
}

/* pq_gemm_tile_out_i8 on 16 columns a vector: the same wrapping int32
 * corrections and fp32 operations in the same order, so the same bits; a
 * panel past n's end, or raw int32 output, through the 256-bit one. */
static void tile_out_z(const pq_gemm_i8i8_job *job, const __m512i *acc, int mr, int64_t row0, int64_t p)
{
    const pq_gemm_w *w = job->w;
    int64_t col0 = p * PQ_GEMM_NR;
    if (!job->y || w->n - col0 < 16) {
        __m256i h[2 * MRV];
        for (int r = 0; r < mr; r++) {
            h[2 * r] = _mm512_castsi512_si256(acc[r]);
            h[2 * r + 1] = _mm512_extracti64x4_epi64(acc[r], 1);
        }
        pq_gemm_tile_out_i8(job, h, mr, row0, p);
        return;
    }
    const pq_gemm_epilogue *epi = job->epi;
    bool zp = w->zp && job->a_sums;
    __m512i vz = zp ? _mm512_loadu_si512((const void *)(w->zp + col0)) : _mm512_setzero_si512();
    __m512i ca = job->col_add ? _mm512_loadu_si512((const void *)(job->col_add + col0)) : _mm512_setzero_si512();
    __m512 ws = _mm512_loadu_ps(w->scale + col0);
    __m512 b = epi && epi->bias ? _mm512_loadu_ps(epi->bias + col0) : _mm512_setzero_ps();
    for (int r = 0; r < mr; r++) {
        int64_t i = row0 + r;
        __m512i v = acc[r];
        if (zp) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(vz, _mm512_set1_epi32(job->a_sums[i])));
        if (job->col_add) v = _mm512_add_epi32(v, ca);
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(job->a_scale[job->a_per_token ? i : 0]));
        f = _mm512_mul_ps(f, ws);
        if (epi && epi->bias) f = _mm512_add_ps(f, b);
        out_row16(job, f, i, col0, 16, (__mmask16)0xffff);
    }
}

/* One row (GEMV) over four panels on 512-bit vectors, two quads per step
 * into separate accumulators: eight independent vpdpbusd chains, so the loop
 * is bound by loading the weights, not by the instruction's latency. */
__attribute__((noinline)) static void kern_gemv4(const uint8_t *ap, const uint8_t *wp, int64_t ps,
                                                 const int32_t *wsum, int64_t kq, __m256i *acc)
{
    __m512i z = _mm512_setzero_si512();
    __m512i c0 = z, c1 = z, c2 = z, c3 = z, d0 = z, d1 = z, d2 = z, d3 = z;
    int64_t q = 0;
    for (; q + 2 <= kq; q += 2) {
        int32_t u0, u1;
        memcpy(&u0, ap + q * MRV * 4, sizeof u0);
        memcpy(&u1, ap + (q + 1) * MRV * 4, sizeof u1);
        __m512i a0 = _mm512_set1_epi32(u0), a1 = _mm512_set1_epi32(u1);
        const uint8_t *w = wp + q * 64;
        ZDP(c0, a0, _mm512_load_si512((const void *)w));
        ZDP(c1, a0, _mm512_load_si512((const void *)(w + ps)));
        ZDP(c2, a0, _mm512_load_si512((const void *)(w + 2 * ps)));
        ZDP(c3, a0, _mm512_load_si512((const void *)(w + 3 * ps)));
        ZDP(d0, a1, _mm512_load_si512((const void *)(w + 64)));
        ZDP(d1, a1, _mm512_load_si512((const void *)(w + ps + 64)));
        ZDP(d2, a1, _mm512_load_si512((const void *)(w + 2 * ps + 64)));
        ZDP(d3, a1, _mm512_load_si512((const void *)(w + 3 * ps + 64)));
    }
    if (q < kq) {
        int32_t u0;
        memcpy(&u0, ap + q * MRV * 4, sizeof u0);
        __m512i a0 = _mm512_set1_epi32(u0);
        const uint8_t *w = wp + q * 64;
        ZDP(c0, a0, _mm512_load_si512((const void *)w));
        ZDP(c1, a0, _mm512_load_si512((const void *)(w + ps)));
        ZDP(c2, a0, _mm512_load_si512((const void *)(w + 2 * ps)));
        ZDP(c3, a0, _mm512_load_si512((const void *)(w + 3 * ps)));
    }
    __m512i t[4] = {_mm512_add_epi32(c0, d0), _mm512_add_epi32(c1, d1), _mm512_add_epi32(c2, d2),
                    _mm512_add_epi32(c3, d3)};
    for (int c = 0; c < 4; c++) {
        __m512i o = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(wsum + c * PQ_GEMM_NR)), 7);
        __m512i v = _mm512_sub_epi32(t[c], o);
        acc[2 * c] = _mm512_castsi512_si256(v);
        acc[2 * c + 1] = _mm512_extracti64x4_epi64(v, 1);
    }
}

/* One tile of rows [row0, row0 + mr) (packed block ap) from panel p on,
 * panels before pe only; returns the number of panels it covered. */
typedef int64_t (*tile_fn)(const pq_gemm_i8i8_job *job, const uint8_t *ap, int mr, int64_t row0, int64_t p,
                           int64_t pe);

/* Every tile of panels [p0, p1): chunks of I8_CHUNK panels (their weights
 * stay in L2), in each the row blocks, in each the chunk's panels. */
static void each_tile(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1, tile_fn tile)
{
    int64_t nb = (job->m + MRV - 1) / MRV, bb = a_block_bytes(job->w->k);
    const uint8_t *apk = job->a_packed;
    for (int64_t pc = p0; pc < p1; pc += I8_CHUNK) {
        int64_t pe = pc + I8_CHUNK < p1 ? pc + I8_CHUNK : p1;
        for (int64_t b = 0; b < nb; b++) {
            int64_t row0 = b * MRV;
            int mr = job->m - row0 < MRV ? (int)(job->m - row0) : MRV;
            for (int64_t p = pc; p < pe;) p += tile(job, apk + b * bb, mr, row0, p, pe);
        }
    }
}

static int64_t tile_i8(const pq_gemm_i8i8_job *job, const uint8_t *ap, int mr, int64_t row0, int64_t p,
                       int64_t pe)
{
    const pq_gemm_w *w = job->w;
    int64_t kq = w->kp / 4;
    __m256i acc[2 * MRV];
    if (mr == 1 && p + 3 < pe) {
        kern_gemv4(ap, w->data + p * w->panel_bytes, w->panel_bytes, w->row_sum + p * PQ_GEMM_NR, kq, acc);
        for (int c = 0; c < 4; c++) pq_gemm_tile_out_i8(job, acc + 2 * c, 1, row0, p + c);
        return 4;
    }
    if (mr == MRV && p + 1 < pe) {
        __m512i z0[MRV], z1[MRV];
        kern_z_12(ap, w->data + p * w->panel_bytes, w->data + (p + 1) * w->panel_bytes,
                  w->row_sum + p * PQ_GEMM_NR, w->row_sum + (p + 1) * PQ_GEMM_NR, kq, z0, z1);
        tile_out_z(job, z0, mr, row0, p);
        tile_out_z(job, z1, mr, row0, p + 1);
        return 2;
    }
    kerns[mr](ap, w->data + p * w->panel_bytes, w->row_sum + p * PQ_GEMM_NR, kq, acc);
    pq_gemm_tile_out_i8(job, acc, mr, row0, p);
    return 1;
}

static void i8i8_vnni(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1) { each_tile(job, p0, p1, tile_i8); }

/* ---- W4A8: int4 weights on the same packed A --------------------------- */
/* A pair of k quads of one panel is 64 bytes of nibbles (gemm_impl.h); the
 * high nibbles masked with 0xF0 are 16 * q as signed bytes, the low ones
 * shifted up by 4 and masked the same. vpdpbusd then sums (a + 128) * 16 * q
 * exactly modulo 2^32; removing 16 * 128 * (the group's code sum) leaves 16
 * times the exact sum, which fits int32 for k <= 65536 (the pack's limit),
 * and an arithmetic shift by 4 gives the sum itself. */

AINLINE __m512i nib_lo(__m512i x, __m512i m) { return _mm512_and_si512(_mm512_slli_epi16(x, 4), m); }
AINLINE __m512i nib_hi(__m512i x, __m512i m) { return _mm512_and_si512(x, m); }

/* acc[r * NP + c] (+)= R rows x NP panels over quads [q0, q1) (q0 even).
 * SPLIT: the second quad of each pair goes to acc[R * NP + ...], so that
 * short tiles have twice the independent chains. */
/* acc[r * NP + c] += row r of quad aq times w[c], for R rows. */
AINLINE void k4_quad(const uint8_t *aq, const __m512i *w, int R, int NP, __m512i *acc)
{
    for (int r = 0; r < R; r++) {
        int32_t quad;
        memcpy(&quad, aq + 4 * r, sizeof quad);
        __m512i av = _mm512_set1_epi32(quad);
        for (int c = 0; c < NP; c++) acc[r * NP + c] = _mm512_dpbusd_epi32(acc[r * NP + c], av, w[c]);
    }
}

AINLINE void k4(const uint8_t *ap, const uint8_t *wp, int64_t pstride, int64_t q0, int64_t q1, int R,
                int NP, int SPLIT, __m512i *acc)
{
    const __m512i m = _mm512_set1_epi8((char)0xF0);
    for (int64_t t = q0 / 2; 2 * t < q1; t++) {
        const uint8_t *aq = ap + 2 * t * MRV * 4;
        __m512i w[4];
        for (int c = 0; c < NP; c++) w[c] = nib_lo(_mm512_load_si512((const void *)(wp + c * pstride + t * 64)), m);
        k4_quad(aq, w, R, NP, acc);
        if (2 * t + 1 == q1) break; /* an odd last quad: its pair's high nibbles are padding */
        for (int c = 0; c < NP; c++) w[c] = nib_hi(_mm512_load_si512((const void *)(wp + c * pstride + t * 64)), m);
        k4_quad(aq + MRV * 4, w, R, NP, acc + (SPLIT ? R * NP : 0));
    }
}

typedef void (*k4_fn)(const uint8_t *, const uint8_t *, int64_t, int64_t, int64_t, __m512i *);

#define DEF_K4(R, NP)                                                                          \
    static void k4_##R##_##NP(const uint8_t *ap, const uint8_t *wp, int64_t ps, int64_t q0,      \
                              int64_t q1, __m512i *out)                                          \
    {                                                                                          \
        enum { SPLIT = R <= 4 };                                                               \
        __m512i a[(1 + SPLIT) * R * NP];                                                       \
        for (int i = 0; i < (1 + SPLIT) * R * NP; i++) a[i] = _mm512_setzero_si512();           \
        k4(ap, wp, ps, q0, q1, R, NP, SPLIT, a);                                               \
        for (int i = 0; i < R * NP; i++) out[i] = SPLIT ? _mm512_add_epi32(a[i], a[R * NP + i]) : a[i]; \
    }
#define DEF_K4_R(R) DEF_K4(R, 1) DEF_K4(R, 2)
DEF_K4_R(1)
DEF_K4_R(2)
DEF_K4_R(3)
DEF_K4_R(4)
DEF_K4_R(5)
DEF_K4_R(6)
DEF_K4_R(7)
DEF_K4_R(8)
DEF_K4_R(9)
DEF_K4_R(10)
DEF_K4_R(11)
DEF_K4(12, 1)
DEF_K4(1, 4)

/* The 12 x 32 tile's pairs of quads [q0, q1) (q0 even) into a0..a23; an odd
 * last quad uses the low nibbles only (the high ones are padding). Needs m
 * (the 0xF0 mask), ap, wp and ps in scope. */
#define Z4LOOP(q0, q1)                                                                    \
    do {                                                                                  \
        int64_t t_;                                                                       \
        for (t_ = (q0) / 2; 2 * t_ + 1 < (q1); t_++) {                                    \
            const uint8_t *aq = ap + 2 * t_ * MRV * 4;                                    \
            __m512i w0 = nib_lo(_mm512_load_si512((const void *)(wp + t_ * 64)), m);      \
            __m512i w1 = nib_lo(_mm512_load_si512((const void *)(wp + ps + t_ * 64)), m); \
            ZROWS();                                                               \
            aq += MRV * 4;                                                                \
            w0 = nib_hi(_mm512_load_si512((const void *)(wp + t_ * 64)), m);              \
            w1 = nib_hi(_mm512_load_si512((const void *)(wp + ps + t_ * 64)), m);         \
            ZROWS();                                                               \
        }                                                                                 \
        if (2 * t_ < (q1)) {                                                              \
            const uint8_t *aq = ap + 2 * t_ * MRV * 4;                                    \
            __m512i w0 = nib_lo(_mm512_load_si512((const void *)(wp + t_ * 64)), m);      \
            __m512i w1 = nib_lo(_mm512_load_si512((const void *)(wp + ps + t_ * 64)), m); \
            ZROWS();                                                               \
        }                                                                                 \
    } while (0)

__attribute__((noinline)) static void k4_12_2(const uint8_t *ap, const uint8_t *wp, int64_t ps,
                                              int64_t q0, int64_t q1, __m512i *out)
{
    const __m512i m = _mm512_set1_epi8((char)0xF0);
    __m512i z = _mm512_setzero_si512();
    __m512i a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z,
            a10 = z, a11 = z, a12 = z, a13 = z, a14 = z, a15 = z, a16 = z, a17 = z, a18 = z,
            a19 = z, a20 = z, a21 = z, a22 = z, a23 = z;
    Z4LOOP(q0, q1);
    __m512i t24[24] = {a0,  a1,  a2,  a3,  a4,  a5,  a6,  a7,  a8,  a9,  a10, a11,
                       a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23};
    memcpy(out, t24, sizeof t24);
}

static const k4_fn k4_tab[MRV + 1][2] = {
    {NULL, NULL},           {k4_1_1, k4_1_2},   {k4_2_1, k4_2_2},   {k4_3_1, k4_3_2},
    {k4_4_1, k4_4_2},       {k4_5_1, k4_5_2},   {k4_6_1, k4_6_2},   {k4_7_1, k4_7_2},
    {k4_8_1, k4_8_2},       {k4_9_1, k4_9_2},   {k4_10_1, k4_10_2}, {k4_11_1, k4_11_2},
    {k4_12_1, k4_12_2}};

/* Symmetric packs fold their groups in the kernel: the accumulators start
 * each group at minus the group's offset (2048 * its code sum, see above;
 * plus 16 times the activation zero point's column term under a static
 * scheme), so after the group they hold 16 * acc_g exactly, and
 * f = fma((float)(16 acc_g), w_scale / 16, f) is the reference's
 * f = fma((float)acc_g, w_scale, f) bit for bit (scaling by 16 is exact;
 * pack.c keeps scale16 only where it is). Per group and accumulator: one
 * conversion and one FMA.
 * start_acc: that start for the scale index x (pq_gemm_sidx layout), ca
 * the column terms or NULL. */
AINLINE __m512i start_acc(const int32_t *gsum, const int32_t *ca, int64_t x)
{
    __m512i v = _mm512_sub_epi32(_mm512_setzero_si512(),
                                 _mm512_slli_epi32(_mm512_loadu_si512((const void *)(gsum + x)), 11));
    return ca ? _mm512_add_epi32(v, _mm512_slli_epi32(_mm512_loadu_si512((const void *)(ca + x)), 4)) : v;
}

/* The 12 x 16 tile (one panel) over every group, the float sums in
 * registers beside the 12 accumulators: no memory traffic at the group
 * boundaries. Measured faster than two panels at once (12 x 32 with the sums
 * in memory), per channel as well as with groups. */
#define ROW1(r)                                                                 \
    do {                                                                       \
        int32_t quad;                                                          \
        memcpy(&quad, aq + 4 * (r), sizeof quad);                              \
        ZDP(c##r, _mm512_set1_epi32(quad), w0);                                \
    } while (0)
#define ROWS1() ROW1(0); ROW1(1); ROW1(2); ROW1(3); ROW1(4); ROW1(5); ROW1(6); ROW1(7); ROW1(8); ROW1(9); ROW1(10); ROW1(11)
#define FOLD1(r) do { f##r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c##r), s0, f##r); c##r = n0; } while (0)

__attribute__((noinline)) static void k4_12_1g(const uint8_t *ap, const uint8_t *wp, int64_t kq, int64_t gq,
                                               int64_t ng, const int32_t *gsum, const int32_t *ca, const float *s16,
                                               __m512 *f)
{
    const __m512i m = _mm512_set1_epi8((char)0xF0);
    __m512i n0 = start_acc(gsum, ca, 0);
    __m512i c0 = n0, c1 = n0, c2 = n0, c3 = n0, c4 = n0, c5 = n0, c6 = n0, c7 = n0, c8 = n0, c9 = n0,
            c10 = n0, c11 = n0;
    __m512 z = _mm512_setzero_ps();
    __m512 f0 = z, f1 = z, f2 = z, f3 = z, f4 = z, f5 = z, f6 = z, f7 = z, f8 = z, f9 = z, f10 = z, f11 = z;
    for (int64_t g = 0; g < ng; g++) {
        int64_t q0 = g * gq, q1 = ng == 1 || q0 + gq > kq ? kq : q0 + gq, t;
        for (t = q0 / 2; 2 * t + 1 < q1; t++) {
            const uint8_t *aq = ap + 2 * t * MRV * 4;
            __m512i x = _mm512_load_si512((const void *)(wp + t * 64));
            __m512i w0 = nib_lo(x, m);
            ROWS1();
            aq += MRV * 4;
            w0 = nib_hi(x, m);
            ROWS1();
        }
        if (2 * t < q1) {
            const uint8_t *aq = ap + 2 * t * MRV * 4;
            __m512i w0 = nib_lo(_mm512_load_si512((const void *)(wp + t * 64)), m);
            ROWS1();
        }
        __m512 s0 = _mm512_loadu_ps(s16 + g * PQ_GEMM_NR);
        n0 = start_acc(gsum, ca, (g + 1 < ng ? g + 1 : g) * PQ_GEMM_NR);
        FOLD1(0); FOLD1(1); FOLD1(2); FOLD1(3); FOLD1(4); FOLD1(5);
        FOLD1(6); FOLD1(7); FOLD1(8); FOLD1(9); FOLD1(10); FOLD1(11);
    }
    f[0] = f0, f[1] = f1, f[2] = f2, f[3] = f3, f[4] = f4, f[5] = f5;
    f[6] = f6, f[7] = f7, f[8] = f8, f[9] = f9, f[10] = f10, f[11] = f11;
}

/* One row (GEMV) over four panels and every group, folded as k4_12_1g: the
 * low nibbles' chains start at minus the offset, the high nibbles' chains
 * at zero (eight independent vpdpbusd chains). */
__attribute__((noinline)) static void k4_1_4g(const uint8_t *ap, const uint8_t *wp, int64_t ps, int64_t kq,
                                              int64_t gq, int64_t ng, const int32_t *gsum, const int32_t *ca,
                                              const float *s16, __m512 *f)
{
    const __m512i m = _mm512_set1_epi8((char)0xF0);
    __m512 f0 = _mm512_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
    for (int64_t g = 0; g < ng; g++) {
        int64_t q0 = g * gq, q1 = ng == 1 || q0 + gq > kq ? kq : q0 + gq, t;
        __m512i c0 = start_acc(gsum, ca, g * PQ_GEMM_NR), c1 = start_acc(gsum, ca, (ng + g) * PQ_GEMM_NR);
        __m512i c2 = start_acc(gsum, ca, (2 * ng + g) * PQ_GEMM_NR);
        __m512i c3 = start_acc(gsum, ca, (3 * ng + g) * PQ_GEMM_NR);
        __m512i d0 = _mm512_setzero_si512(), d1 = d0, d2 = d0, d3 = d0;
        for (t = q0 / 2; 2 * t + 1 < q1; t++) {
            int32_t u0, u1;
            memcpy(&u0, ap + 2 * t * MRV * 4, sizeof u0);
            memcpy(&u1, ap + (2 * t + 1) * MRV * 4, sizeof u1);
            __m512i lo = _mm512_set1_epi32(u0), hi = _mm512_set1_epi32(u1);
            const uint8_t *w = wp + t * 64;
            __m512i x0 = _mm512_load_si512((const void *)w), x1 = _mm512_load_si512((const void *)(w + ps));
            __m512i x2 = _mm512_load_si512((const void *)(w + 2 * ps));
            __m512i x3 = _mm512_load_si512((const void *)(w + 3 * ps));
            ZDP(c0, lo, nib_lo(x0, m));
            ZDP(c1, lo, nib_lo(x1, m));
            ZDP(c2, lo, nib_lo(x2, m));
            ZDP(c3, lo, nib_lo(x3, m));
            ZDP(d0, hi, nib_hi(x0, m));
            ZDP(d1, hi, nib_hi(x1, m));
            ZDP(d2, hi, nib_hi(x2, m));
            ZDP(d3, hi, nib_hi(x3, m));
        }
        if (2 * t < q1) { /* an odd last quad: its pair's high nibbles are padding */
            int32_t u0;
            memcpy(&u0, ap + 2 * t * MRV * 4, sizeof u0);
            __m512i lo = _mm512_set1_epi32(u0);
            const uint8_t *w = wp + t * 64;
            ZDP(c0, lo, nib_lo(_mm512_load_si512((const void *)w), m));
            ZDP(c1, lo, nib_lo(_mm512_load_si512((const void *)(w + ps)), m));
            ZDP(c2, lo, nib_lo(_mm512_load_si512((const void *)(w + 2 * ps)), m));
            ZDP(c3, lo, nib_lo(_mm512_load_si512((const void *)(w + 3 * ps)), m));
        }
        f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c0, d0)), _mm512_loadu_ps(s16 + g * PQ_GEMM_NR), f0);
        f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c1, d1)),
                             _mm512_loadu_ps(s16 + (ng + g) * PQ_GEMM_NR), f1);
        f2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c2, d2)),
                             _mm512_loadu_ps(s16 + (2 * ng + g) * PQ_GEMM_NR), f2);
        f3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c3, d3)),
                             _mm512_loadu_ps(s16 + (3 * ng + g) * PQ_GEMM_NR), f3);
    }
    f[0] = f0, f[1] = f1, f[2] = f2, f[3] = f3;
}

/* Many row blocks: the int4 panels of a chunk are unpacked once into int8
 * panels of 16 * q (the bytes nib_lo and nib_hi make, in the int8 layout:
 * 64 bytes a quad), which every row block of the chunk then runs on the
 * 12 x 32 tile of the int8 GEMM, each group folded as k4_12_1g (the sums
 * in memory: 24 of them do not fit in registers beside the accumulators).
 * The unpacking, per 64 bytes a shift and two ANDs, is then paid once per
 * chunk instead of once per row block: on the 12 x 16 tile it took the
 * vector ports from vpdpbusd, and each quad of A was broadcast for one
 * panel instead of two. Same integers, same float operations in the same
 * order as k4_12_1g. */
static void unpack_i4(const uint8_t *wp, int64_t kq, uint8_t *dst)
{
    const __m512i m = _mm512_set1_epi8((char)0xF0);
    for (int64_t t = 0; 2 * t < kq; t++) {
        __m512i x = _mm512_load_si512((const void *)(wp + t * 64));
        _mm512_store_si512((void *)(dst + 2 * t * 64), nib_lo(x, m));
        if (2 * t + 1 < kq) _mm512_store_si512((void *)(dst + (2 * t + 1) * 64), nib_hi(x, m));
    }
}

#define ZFOLD(i, s, n)                                                                      \
    do {                                                                                    \
        f[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a##i), s, g ? f[i] : _mm512_setzero_ps());  \
        a##i = n;                                                                           \
    } while (0)

/* 12 rows x 2 unpacked panels (wp0, wp1) over every group; f[2r + c] gets
 * row r, panel c. gs, cs, ss: the two panels' group code sums, column terms
 * (or NULL) and scales / 16, as k4_12_1g's. */
__attribute__((noinline)) static void kz_12_2g(const uint8_t *ap, const uint8_t *wp0, const uint8_t *wp1,
                                               int64_t kq, int64_t gq, int64_t ng, const int32_t *gs0,
                                               const int32_t *gs1, const int32_t *ca0, const int32_t *ca1,
                                               const float *ss0, const float *ss1, __m512 *f)
{
    __m512i n0 = start_acc(gs0, ca0, 0), n1 = start_acc(gs1, ca1, 0);
    ZPIN(0, n0); ZPIN(1, n1); ZPIN(2, n0); ZPIN(3, n1); ZPIN(4, n0); ZPIN(5, n1); ZPIN(6, n0); ZPIN(7, n1);
    ZPIN(8, n0); ZPIN(9, n1); ZPIN(10, n0); ZPIN(11, n1); ZPIN(12, n0); ZPIN(13, n1); ZPIN(14, n0);
    ZPIN(15, n1); ZPIN(16, n0); ZPIN(17, n1); ZPIN(18, n0); ZPIN(19, n1); ZPIN(20, n0); ZPIN(21, n1);
    ZPIN(22, n0); ZPIN(23, n1);
    /* f starts at the first group's fold (an fma onto +0, as from zeroed
     * sums: a memset of f cost as much as the group folds) */
    for (int64_t g = 0; g < ng; g++) {
        int64_t q0 = g * gq, q1 = ng == 1 || q0 + gq > kq ? kq : q0 + gq;
        for (int64_t q = q0; q < q1; q++) {
            __m512i w0 = _mm512_load_si512((const void *)(wp0 + q * 64));
            __m512i w1 = _mm512_load_si512((const void *)(wp1 + q * 64));
            const uint8_t *aq = ap + q * MRV * 4;
            ZROWS();
        }
        __m512 s0 = _mm512_loadu_ps(ss0 + g * PQ_GEMM_NR), s1 = _mm512_loadu_ps(ss1 + g * PQ_GEMM_NR);
        int64_t x = (g + 1 < ng ? g + 1 : g) * PQ_GEMM_NR;
        n0 = start_acc(gs0, ca0, x);
        n1 = start_acc(gs1, ca1, x);
        ZFOLD(0, s0, n0); ZFOLD(1, s1, n1); ZFOLD(2, s0, n0); ZFOLD(3, s1, n1);
        ZFOLD(4, s0, n0); ZFOLD(5, s1, n1); ZFOLD(6, s0, n0); ZFOLD(7, s1, n1);
        ZFOLD(8, s0, n0); ZFOLD(9, s1, n1); ZFOLD(10, s0, n0); ZFOLD(11, s1, n1);
        ZFOLD(12, s0, n0); ZFOLD(13, s1, n1); ZFOLD(14, s0, n0); ZFOLD(15, s1, n1);
        ZFOLD(16, s0, n0); ZFOLD(17, s1, n1); ZFOLD(18, s0, n0); ZFOLD(19, s1, n1);
        ZFOLD(20, s0, n0); ZFOLD(21, s1, n1); ZFOLD(22, s0, n0); ZFOLD(23, s1, n1);
    }
}

/* Float partial results of an mr x (np * 16) tile, summed over the groups
 * as the reference does: f = f + (float)acc_g * w_scale[j, g]. */
AINLINE void group_fold(const pq_gemm_i8i8_job *job, const __m512i *acc, int mr, int np, int64_t row0,
                        int64_t p, int64_t g, __m512 *f)
{
    const pq_gemm_w *w = job->w;
    int64_t ng = w->n_groups;
    for (int c = 0; c < np; c++) {
        int64_t s = ((p + c) * ng + g) * PQ_GEMM_NR;
        __m512i off = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(w->row_sum + s)), 11);
        __m512 sc = _mm512_loadu_ps(w->scale + s);
        __m512i zp = w->zp && job->a_sums ? _mm512_loadu_si512((const void *)(w->zp + s)) : _mm512_setzero_si512();
        __m512i ca = job->col_add ? _mm512_loadu_si512((const void *)(job->col_add + s)) : _mm512_setzero_si512();
        for (int r = 0; r < mr; r++) {
            __m512i v = _mm512_srai_epi32(_mm512_sub_epi32(acc[r * np + c], off), 4);
            if (w->zp && job->a_sums)
                v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zp, _mm512_set1_epi32(job->a_sums[(row0 + r) * ng + g])));
            if (job->col_add) v = _mm512_add_epi32(v, ca);
            f[r * np + c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), sc, f[r * np + c]);
        }
    }
}

/* The tile's epilogue: y = f * a_scale (+ bias), then the post-op, panel by
 * panel as the reference; raw int32 sums when the job has no y. */
static void tile_out4(const pq_gemm_i8i8_job *job, const __m512 *f, const __m512i *acc, int mr, int np,
                      int64_t row0, int64_t p)
{
    const pq_gemm_w *w = job->w;
    for (int c = 0; c < np; c++) {
        int64_t col0 = (p + c) * PQ_GEMM_NR, nc = w->n - col0 < 16 ? w->n - col0 : 16;
        __mmask16 k = (__mmask16)((1u << nc) - 1);
        __m512 b = job->epi && job->epi->bias ? _mm512_maskz_loadu_ps(k, job->epi->bias + col0) : _mm512_setzero_ps();
        __m512i off = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(w->row_sum + (p + c) * PQ_GEMM_NR)), 11);
        for (int r = 0; r < mr; r++) {
            int64_t i = row0 + r;
            if (!job->y) {
                __m512i v = _mm512_srai_epi32(_mm512_sub_epi32(acc[r * np + c], off), 4);
                _mm512_mask_storeu_epi32(job->c + i * job->ldc + col0, k, v);
                continue;
            }
            __m512 v = _mm512_mul_ps(f[r * np + c], _mm512_set1_ps(job->a_scale[job->a_per_token ? i : 0]));
            if (job->epi && job->epi->bias) v = _mm512_add_ps(v, b);
            out_row16(job, v, i, col0, nc, k);
        }
    }
}

/* symmetric weights: the groups folded in the kernel, an activation zero
 * point's column term (static scheme) in the start of the accumulators,
 * where 16 times the corrected sum, at most 16 * 383 * 8 * group_size, fits
 * int32 */
static bool i4_folds(const pq_gemm_i8i8_job *job)
{
    const pq_gemm_w *w = job->w;
    return job->y && !w->zp && w->scale16 && (!job->col_add || w->group_size <= 32768);
}

/* The chunk of panels from pc on, unpacked by unpack_i4 (NULL: none). */
typedef struct i4_chunk {
    const uint8_t *data;
    int64_t pc;
} i4_chunk;

static int64_t tile_i4(const pq_gemm_i8i8_job *job, const i4_chunk *u, const uint8_t *ap, int mr, int64_t row0,
                       int64_t p, int64_t pe)
{
    const pq_gemm_w *w = job->w;
    int64_t ng = w->n_groups, kq = w->kp / 4, gq = w->group_size / 4;
    int np = mr == 1 && p + 3 < pe ? 4 : p + 1 < pe ? 2 : 1;
    __m512i acc[2 * MRV];
    __m512 f[2 * MRV];
    bool fold = i4_folds(job);
    int64_t s0 = p * ng * PQ_GEMM_NR;
    const int32_t *ca = job->col_add ? job->col_add + s0 : NULL;
    if (u && mr == MRV && np == 2) {
        const uint8_t *wu = u->data + (p - u->pc) * kq * 64;
        int64_t s1 = s0 + ng * PQ_GEMM_NR;
        kz_12_2g(ap, wu, wu + kq * 64, kq, gq, ng, w->row_sum + s0, w->row_sum + s1, ca,
                 job->col_add ? job->col_add + s1 : NULL, w->scale16 + s0, w->scale16 + s1, f);
        tile_out4(job, f, acc, mr, 2, row0, p);
        return 2;
    }
    if (fold && mr == MRV) {
        k4_12_1g(ap, w->data + p * w->panel_bytes, kq, gq, ng, w->row_sum + s0, ca, w->scale16 + s0, f);
        tile_out4(job, f, acc, mr, 1, row0, p);
        return 1;
    }
    if (fold && np == 4) {
        k4_1_4g(ap, w->data + p * w->panel_bytes, w->panel_bytes, kq, gq, ng, w->row_sum + s0, ca, w->scale16 + s0,
                f);
        tile_out4(job, f, acc, mr, np, row0, p);
        return np;
    }
    for (int i = 0; i < mr * np; i++) f[i] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        int64_t q0 = g * gq, q1 = ng == 1 || q0 + gq > kq ? kq : q0 + gq;
        (np == 4 ? k4_1_4 : k4_tab[mr][np - 1])(ap, w->data + p * w->panel_bytes, w->panel_bytes, q0, q1, acc);
        if (job->y) group_fold(job, acc, mr, np, row0, p, g, f);
    }
    tile_out4(job, f, acc, mr, np, row0, p);
    return np;
}

static void i4i8_vnni(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1)
{
    /* groups must start on a pair of quads; others run the reference (the
     * driver then keeps the unpacked codes) */
    if (job->w->n_groups > 1 && job->w->group_size % 8) {
        pq_gemm_i4i8_ref(job, p0, p1);
        return;
    }
    /* as each_tile, a chunk's panels unpacked first when enough row blocks
     * run on them (and the allocation succeeds: else the int4 tiles) */
    int64_t nb = (job->m + MRV - 1) / MRV, bb = a_block_bytes(job->w->k), kq = job->w->kp / 4;
    uint8_t *buf = nb >= I4_UNPACK_BLOCKS && i4_folds(job)
                       ? aligned_alloc(64, (size_t)(I8_CHUNK * kq * 64))
                       : NULL;
    for (int64_t pc = p0; pc < p1; pc += I8_CHUNK) {
        int64_t pe = pc + I8_CHUNK < p1 ? pc + I8_CHUNK : p1;
        i4_chunk u = {buf, pc};
        if (buf)
            for (int64_t p = pc; p < pe; p++)
                unpack_i4(job->w->data + p * job->w->panel_bytes, kq, buf + (p - pc) * kq * 64);
        for (int64_t b = 0; b < nb; b++) {
            int64_t row0 = b * MRV;
            int mr = job->m - row0 < MRV ? (int)(job->m - row0) : MRV;
            for (int64_t p = pc; p < pe;) p += tile_i4(job, buf ? &u : NULL, job->a_packed + b * bb, mr, row0, p, pe);
        }
    }
    free(buf);
}

const pq_gemm_kernels pq_gemm_kernels_avx512vnni = {
    .name = "avx512vnni",
    .a_pack_size = a_pack_size_vnni,
    .a_pack = a_pack_vnni,
    .a_pack_rows = MRV,
    .i8i8 = i8i8_vnni,
    .i4i8 = i4i8_vnni,
    .wonly_scratch = pq_gemm_wonly_scratch_avx2,
    .wonly = pq_gemm_wonly_avx2,
    .quantize_dynamic = pq_gemm_quantize_dynamic_avx2,
    .quantize_pack = quantize_pack_vnni,
};
