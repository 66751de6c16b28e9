/* SPDX-License-Identifier: Apache-2.0 */
/* pack.c - packs int8/int4 weight codes, scales and zero points once at load
 * into the panel layouts described in gemm_impl.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/gemm/gemm_impl.h"
#include "pq_config.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if PQ_HAVE_OPENMP
#include <omp.h>
#endif

/* The codes being packed: part i holds rows [row0[i], row0[i + 1]),
 * row_bytes each, row-major (one part, or q, k and v stacked). */
typedef struct pack_src {
    const uint8_t *const *part;
    const int64_t *row0;
    int n_parts;
    int64_t row_bytes;
} pack_src;

static inline const uint8_t *row_at(const pack_src *s, int64_t r)
{
    int i = 0;
    while (i + 1 < s->n_parts && r >= s->row0[i + 1]) i++;
    return s->part[i] + (r - s->row0[i]) * s->row_bytes;
}

/* Panels a thread packs at a time (OpenMP's dynamic schedule hands out
 * these). */
#define PANELS_PER_TASK 4

/* The whole pages of [p, p + n) made present and writable in one call
 * (MADV_POPULATE_WRITE, Linux 5.14), where the kernel has it: the kernel
 * still zeroes each new page, but without a fault per page (a fifth less
 * system time on the VM of docs/PERFORMANCE.md). Elsewhere the writes
 * fault them in. */
static void prefault(uint8_t *p, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    const long ps = sysconf(_SC_PAGESIZE);
    const uintptr_t pg = ps > 0 ? (uintptr_t)ps : 4096;
    const uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg, b = ((uintptr_t)p + n) / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)n;
#endif
}

static void *alloc64(size_t bytes)
{
    size_t r = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, r ? r : 64);
}

void pq_gemm_w_free(pq_gemm_w *w)
{
    if (!w) return;
    free(w->data);
    free(w->scale);
    free(w->zp);
    free(w->off);
    free(w->row_sum);
    free(w->scale16);
    free(w);
}

int64_t pq_gemm_w_rows(const pq_gemm_w *w) { return w->n; }
int64_t pq_gemm_w_cols(const pq_gemm_w *w) { return w->k; }
const int32_t *pq_gemm_w_row_sums(const pq_gemm_w *w) { return w->bits == 8 ? w->row_sum : NULL; }

/* Source index of the scale of (row n, group g) in the caller's array. */
static int64_t src_idx(pq_gemm_gran gran, int64_t n, int64_t g, int64_t ng)
{
    if (gran == PQ_GEMM_TENSOR) return 0;
    if (gran == PQ_GEMM_CHANNEL) return n;
    return n * ng + g;
}

#if defined(__SSE2__)
/* Rows i = 0..3 of a 4-row group (src[i]) over quads [0, nq4), nq4 a
 * multiple of 4, into d (the group's first word of quad 0): per 4 quads a
 * 4 x 4 transpose of 4-byte words, so each quad's 4 rows are one 16-byte
 * store; sum[i] gains row i's codes over those quads (SAD of the codes
 * flipped to unsigned, less 128 per code). What the scalar loop of
 * panel_i8i8 writes, 16 bytes at a time. */
static void quads_sse2(uint8_t *d, const int8_t *const src[4], int64_t nq4, int32_t sum[4])
{
    const __m128i flip = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
    __m128i acc[4] = {zero, zero, zero, zero};
    for (int64_t q = 0; q < nq4; q += 4) {
        __m128i r[4];
        for (int i = 0; i < 4; i++) {
            r[i] = _mm_loadu_si128((const __m128i *)(const void *)(src[i] + 4 * q));
            acc[i] = _mm_add_epi64(acc[i], _mm_sad_epu8(_mm_xor_si128(r[i], flip), zero));
        }
        __m128i t0 = _mm_unpacklo_epi32(r[0], r[1]), t1 = _mm_unpacklo_epi32(r[2], r[3]);
        __m128i t2 = _mm_unpackhi_epi32(r[0], r[1]), t3 = _mm_unpackhi_epi32(r[2], r[3]);
        _mm_storeu_si128((__m128i *)(void *)(d + q * 64), _mm_unpacklo_epi64(t0, t1));
        _mm_storeu_si128((__m128i *)(void *)(d + q * 64 + 64), _mm_unpackhi_epi64(t0, t1));
        _mm_storeu_si128((__m128i *)(void *)(d + q * 64 + 128), _mm_unpacklo_epi64(t2, t3));
        _mm_storeu_si128((__m128i *)(void *)(d + q * 64 + 192), _mm_unpackhi_epi64(t2, t3));
    }
    for (int i = 0; i < 4; i++) {
        uint64_t lanes[2];
        _mm_storeu_si128((__m128i *)(void *)lanes, acc[i]);
        sum[i] += (int32_t)((int64_t)(lanes[0] + lanes[1]) - 128 * 4 * nq4);
    }
}
#endif

/* int8 codes, int8 x int8 use: each row's quads of k are 4-byte words at
 * stride 64 (gemm_impl.h); sum of each row's codes. The quads of a full
 * panel go 4 rows x 4 quads at a time where SSE2 is (quads_sse2); the
 * rest, and every quad without it, one word at a time. */
static void panel_i8i8(pq_gemm_w *w, uint8_t *p, const pack_src *q8, int64_t r0, int64_t nr)
{
    const int64_t k = w->k, nq = k / 4;
    int64_t done = 0; /* quads of every row already packed and summed */
    int32_t sums[PQ_GEMM_NR] = {0};
#if defined(__SSE2__)
    if (nr == PQ_GEMM_NR && nq >= 4) {
        done = nq / 4 * 4;
        for (int64_t g = 0; g < PQ_GEMM_NR / 4; g++) {
            const int8_t *src[4];
            for (int i = 0; i < 4; i++) src[i] = (const int8_t *)row_at(q8, r0 + 4 * g + i);
            quads_sse2(p + pq_gemm_i8i8_off(4 * g, 0), src, done, sums + 4 * g);
        }
    }
#endif
    for (int64_t ci = 0; ci < nr; ci++) {
        const int8_t *src = (const int8_t *)row_at(q8, r0 + ci);
        uint8_t *d = p + pq_gemm_i8i8_off(ci, 0);
        int32_t sum = sums[ci];
        for (int64_t q = done; q < nq; q++) memcpy(d + q * 64, src + 4 * q, 4);
        for (int64_t c = 4 * nq; c < k; c++) d[nq * 64 + (c & 3)] = (uint8_t)src[c];
        for (int64_t c = 4 * done; c < k; c++) sum += src[c];
        w->row_sum[r0 + ci] = sum;
    }
}

/* int8 codes, weight-only use: byte c * 16 + ci. */
static void panel_i8_wonly(pq_gemm_w *w, uint8_t *p, const pack_src *q8, int64_t r0, int64_t nr)
{
    const int64_t k = w->k;
    for (int64_t ci = 0; ci < nr; ci++) {
        const int8_t *src = (const int8_t *)row_at(q8, r0 + ci);
        int32_t sum = 0;
        for (int64_t c = 0; c < k; c++) {
            p[c * 16 + ci] = (uint8_t)src[c];
            sum += src[c];
        }
        w->row_sum[r0 + ci] = sum;
    }
}

/* Offset-binary nibble of column c of a packed int4 row. */
static inline unsigned nib_of(const uint8_t *row, int64_t c)
{
    uint8_t b = row[c / 2];
    return (c & 1) ? (unsigned)(b >> 4) : (unsigned)(b & 15);
}

/* int4 codes, int8 x int8 use (W4A8): per 8 k, byte (ci/8)*32 + (ci%8)*4 + j
 * holds code k+j (low nibble) and k+4+j (high), two's complement (the
 * offset-binary nibble XOR 8); each row's group sums of q. */
static void panel_i4i8(pq_gemm_w *w, uint8_t *p, const pack_src *q4, int64_t r0, int64_t nr)
{
    const int64_t k = w->k, n8 = k / 8, gs = w->group_size;
    for (int64_t ci = 0; ci < nr; ci++) {
        const uint8_t *s = row_at(q4, r0 + ci);
        uint8_t *d = p + pq_gemm_i8i8_off(ci, 0);
        for (int64_t o = 0; o < n8; o++) {
            const uint8_t *b = s + 4 * o;
            uint8_t *t = d + o * 64;
            t[0] = (uint8_t)(((b[0] & 15) | (b[2] << 4)) ^ 0x88);
            t[1] = (uint8_t)(((b[0] >> 4) | (b[2] & 0xF0)) ^ 0x88);
            t[2] = (uint8_t)(((b[1] & 15) | (b[3] << 4)) ^ 0x88);
            t[3] = (uint8_t)(((b[1] >> 4) | (b[3] & 0xF0)) ^ 0x88);
        }
        for (int64_t c = 8 * n8; c < k; c++) /* the last, partial 8: the rest stays code 0 */
            d[n8 * 64 + (c & 3)] |= (uint8_t)(((nib_of(s, c) ^ 8) & 15) << ((c & 4) ? 4 : 0));
        for (int64_t g = 0; g < w->n_groups; g++) {
            int64_t c0 = g * gs, c1 = c0 + gs < k ? c0 + gs : k;
            int32_t sum = 0;
            int64_t c = c0;
            if ((c & 1) && c < c1) sum += (int32_t)nib_of(s, c++);
            for (; c + 1 < c1; c += 2) sum += (s[c / 2] & 15) + (s[c / 2] >> 4);
            if (c < c1) sum += (int32_t)nib_of(s, c);
            w->row_sum[pq_gemm_sidx(w, r0 + ci, g)] = sum - 8 * (int32_t)(c1 - c0);
        }
    }
}

/* int4 codes, weight-only use: byte c * 8 + j holds column j (low nibble)
 * and j + 8 (high), offset binary; absent columns nibble 8. */
static void panel_i4_wonly(const pq_gemm_w *w, uint8_t *p, const pack_src *q4, int64_t r0, int64_t nr)
{
    const int64_t k = w->k;
    for (int64_t j = 0; j < 8; j++) {
        const uint8_t *lo = j < nr ? row_at(q4, r0 + j) : NULL;
        const uint8_t *hi = j + 8 < nr ? row_at(q4, r0 + j + 8) : NULL;
        for (int64_t c = 0; c < k; c++)
            p[c * 8 + j] = (uint8_t)((lo ? nib_of(lo, c) : 8u) | (hi ? nib_of(hi, c) : 8u) << 4);
    }
}

/* Panel pi's bytes (padding decodes to code 0) and its rows' sums. */
static void pack_panel(pq_gemm_w *w, int64_t pi, const pack_src *src)
{
    const bool i8i8 = w->use == PQ_GEMM_USE_I8I8;
    const int64_t r0 = pi * PQ_GEMM_NR, nr = w->n - r0 < PQ_GEMM_NR ? w->n - r0 : PQ_GEMM_NR;
    uint8_t *p = w->data + pi * w->panel_bytes;
    if (w->bits == 4 && !i8i8) {
        panel_i4_wonly(w, p, src, r0, nr);
        return;
    }
    /* the int8-activation layouts: every byte is written but for absent
     * rows and a last partial quad (int4: octet), which stay 0 */
    if (nr < PQ_GEMM_NR || w->k % (w->bits == 4 ? 8 : 4)) memset(p, 0, (size_t)w->panel_bytes);
    if (w->bits == 4) panel_i4i8(w, p, src, r0, nr);
    else if (i8i8) panel_i8i8(w, p, src, r0, nr);
    else panel_i8_wonly(w, p, src, r0, nr);
}

static pq_kstatus pack(int bits, const pack_src *src, int64_t k, const float *scale,
                      const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size, pq_gemm_use use,
                      int n_threads, pq_gemm_w **out)
{
    pq_kstatus st = PQ_KOK;
    *out = NULL;
    const int64_t n = src->row0[src->n_parts];
    if (n <= 0 || k <= 0 || !scale) return PQ_KBADARG;
    for (int i = 0; i < src->n_parts; i++)
        if (!src->part[i] && src->row0[i + 1] > src->row0[i]) return PQ_KBADARG;
    if (gran == PQ_GEMM_GROUP && group_size <= 0) return PQ_KBADARG;
    /* int8 x int8: zero-point-corrected sums must fit int32; int4 x int8
     * accumulates 16 * q (gemm_impl.h), which must fit as well */
    if (use == PQ_GEMM_USE_I8I8 && bits == 8 && (gran == PQ_GEMM_GROUP || k > 32768))
        return PQ_KBADARG;
    if (use == PQ_GEMM_USE_I8I8 && bits == 4 && k > 65536) return PQ_KBADARG;
    const bool i4i8 = bits == 4 && use == PQ_GEMM_USE_I8I8;
    pq_gemm_w *w = calloc(1, sizeof *w);
    if (!w) return PQ_KNOMEM;
    w->n = n;
    w->k = k;
    w->bits = bits;
    w->use = use;
    w->group_size = gran == PQ_GEMM_GROUP ? group_size : k;
    w->n_groups = (k + w->group_size - 1) / w->group_size;
    w->n_panels = (n + PQ_GEMM_NR - 1) / PQ_GEMM_NR;
    w->kp = use == PQ_GEMM_USE_I8I8 ? (k + 3) / 4 * 4 : k;
    w->panel_bytes = i4i8 ? (w->kp / 4 + 1) / 2 * 64 : bits == 4 ? 8 * k : PQ_GEMM_NR * w->kp;
    int64_t ng = w->n_groups, npad = w->n_panels * PQ_GEMM_NR;
    size_t nsc = (size_t)(w->n_panels * ng * PQ_GEMM_NR);
    w->data = alloc64((size_t)(w->n_panels * w->panel_bytes));
    w->scale = calloc(nsc, sizeof *w->scale);
    w->off = calloc(nsc, sizeof *w->off);
    if (zero_point) w->zp = calloc(nsc, sizeof *w->zp);
    const bool sums = bits == 8 || i4i8;
    if (sums) w->row_sum = calloc(nsc > (size_t)npad ? nsc : (size_t)npad, sizeof *w->row_sum);
    if (!w->data || !w->scale || !w->off || (zero_point && !w->zp) || (sums && !w->row_sum)) {
        st = PQ_KNOMEM;
        goto cleanup;
    }
    if (bits == 4 && !i4i8) /* padded columns: nibble 8 is code 0 */
        for (size_t i = 0; i < nsc; i++) w->off[i] = 8.0f;
    int32_t zlo = bits == 8 ? -128 : -8, zhi = bits == 8 ? 127 : 7;
    for (int64_t r = 0; r < n; r++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t s = src_idx(gran, r, g, ng), d = pq_gemm_sidx(w, r, g);
            int32_t z = zero_point ? zero_point[s] : 0;
            if (z < zlo || z > zhi) { /* outside the code range */
                st = PQ_KBADARG;
                goto cleanup;
            }
            w->scale[d] = scale[s];
            if (w->zp) w->zp[d] = z;
            w->off[d] = (float)(bits == 4 && !i4i8 ? z + 8 : z);
        }
    if (i4i8) { /* kept only when every scale / 16 is exact */
        w->scale16 = malloc(nsc * sizeof *w->scale16);
        if (!w->scale16) {
            st = PQ_KNOMEM;
            goto cleanup;
        }
        for (size_t i = 0; i < nsc && w->scale16; i++) {
            w->scale16[i] = w->scale[i] * 0.0625f;
            if (w->scale16[i] * 16.0f != w->scale[i]) {
                free(w->scale16);
                w->scale16 = NULL;
            }
        }
    }
    /* Panels are independent: packed by n_threads OpenMP threads (a load is
     * not inside a parallel region), each panel's bytes written, and so
     * first touched, by the thread that packs it. */
    int nt = n_threads;
#if PQ_HAVE_OPENMP
    if (nt <= 0) nt = omp_get_max_threads();
#endif
    if (nt < 1) nt = 1;
    const int64_t n_tasks = (w->n_panels + PANELS_PER_TASK - 1) / PANELS_PER_TASK;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1 && w->n_panels > 1 && n * k >= ((int64_t)1 << 20))
    for (int64_t t = 0; t < n_tasks; t++) {
        int64_t p0 = t * PANELS_PER_TASK, p1 = p0 + PANELS_PER_TASK < w->n_panels ? p0 + PANELS_PER_TASK : w->n_panels;
        prefault(w->data + p0 * w->panel_bytes, (size_t)((p1 - p0) * w->panel_bytes));
        for (int64_t pi = p0; pi < p1; pi++) pack_panel(w, pi, src);
    }
    *out = w;
    return PQ_KOK;
cleanup:
    pq_gemm_w_free(w);
    return st;
}

pq_kstatus pq_gemm_pack_parts(int bits, const void *const *codes, const int64_t *part_rows, int n_parts,
                              int64_t k, const float *scale, const int32_t *zero_point, pq_gemm_gran gran,
                              int64_t group_size, pq_gemm_use use, int n_threads, pq_gemm_w **out)
{
    enum { MAX_PARTS = 8 };
    *out = NULL;
    if ((bits != 8 && bits != 4) || !codes || !part_rows || n_parts < 1 || n_parts > MAX_PARTS || k <= 0)
        return PQ_KBADARG;
    int64_t row0[MAX_PARTS + 1] = {0};
    for (int i = 0; i < n_parts; i++) {
        if (part_rows[i] < 0) return PQ_KBADARG;
        row0[i + 1] = row0[i] + part_rows[i];
    }
    pack_src src = {.part = (const uint8_t *const *)codes, .row0 = row0, .n_parts = n_parts,
                    .row_bytes = bits == 8 ? k : (k + 1) / 2};
    return pack(bits, &src, k, scale, zero_point, gran, group_size, use, n_threads, out);
}

pq_kstatus pq_gemm_pack_i8(const int8_t *q, int64_t n, int64_t k, const float *scale,
                          const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size,
                          pq_gemm_use use, pq_gemm_w **out)
{
    const void *parts[1] = {q};
    return pq_gemm_pack_parts(8, parts, &n, 1, k, scale, zero_point, gran, group_size, use, 0, out);
}

pq_kstatus pq_gemm_pack_i4(const uint8_t *packed, int64_t n, int64_t k, const float *scale,
                          const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size,
                          pq_gemm_use use, pq_gemm_w **out)
{
    const void *parts[1] = {packed};
    return pq_gemm_pack_parts(4, parts, &n, 1, k, scale, zero_point, gran, group_size, use, 0, out);
}
