/* SPDX-License-Identifier: Apache-2.0 */
/* pack.c - packs int8/int4 weight codes, scales and zero points once at load
 * into the panel layouts described in gemm_impl.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm/gemm_impl.h"

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

static pq_kstatus pack(int bits, const int8_t *q8, const uint8_t *q4, int64_t n, int64_t k,
                      const float *scale, const int32_t *zero_point, pq_gemm_gran gran,
                      int64_t group_size, pq_gemm_use use, pq_gemm_w **out)
{
    pq_kstatus st = PQ_KOK;
    *out = NULL;
    if (n <= 0 || k <= 0 || !scale || (bits == 8 ? !q8 : !q4)) return PQ_KBADARG;
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
    /* Padding bytes decode to code 0 (weight-only int4: nibble 8). */
    memset(w->data, bits == 4 && !i4i8 ? 0x88 : 0, (size_t)(w->n_panels * w->panel_bytes));
    for (int64_t r = 0; r < n; r++) {
        uint8_t *p = w->data + (r / PQ_GEMM_NR) * w->panel_bytes;
        int64_t ci = r % PQ_GEMM_NR;
        int32_t sum = 0;
        for (int64_t c = 0; c < k; c++) {
            if (i4i8) {
                uint8_t b = q4[r * ((k + 1) / 2) + c / 2];
                int q = ((c & 1) ? b >> 4 : b & 15) - 8;
                uint8_t *dst = p + (c / 8) * 64 + pq_gemm_i8i8_off(ci, c & 3);
                *dst |= (uint8_t)((q & 15) << ((c & 4) ? 4 : 0));
                w->row_sum[pq_gemm_sidx(w, r, c / w->group_size)] += q;
            } else if (bits == 4) {
                uint8_t b = q4[r * ((k + 1) / 2) + c / 2];
                uint8_t nib = (c & 1) ? (uint8_t)(b >> 4) : (uint8_t)(b & 15);
                uint8_t *dst = p + c * 8 + (ci & 7);
                *dst = ci < 8 ? (uint8_t)((*dst & 0xF0) | nib) : (uint8_t)((*dst & 0x0F) | nib << 4);
            } else {
                int8_t v = q8[r * k + c];
                sum += v;
                if (use == PQ_GEMM_USE_I8I8)
                    p[pq_gemm_i8i8_off(ci, c)] = (uint8_t)v;
                else
                    p[c * 16 + ci] = (uint8_t)v;
            }
        }
        if (bits == 8) w->row_sum[r] = sum;
    }
    *out = w;
    return PQ_KOK;
cleanup:
    pq_gemm_w_free(w);
    return st;
}

pq_kstatus pq_gemm_pack_i8(const int8_t *q, int64_t n, int64_t k, const float *scale,
                          const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size,
                          pq_gemm_use use, pq_gemm_w **out)
{
    return pack(8, q, NULL, n, k, scale, zero_point, gran, group_size, use, out);
}

pq_kstatus pq_gemm_pack_i4(const uint8_t *packed, int64_t n, int64_t k, const float *scale,
                          const int32_t *zero_point, pq_gemm_gran gran, int64_t group_size,
                          pq_gemm_use use, pq_gemm_w **out)
{
    return pack(4, NULL, packed, n, k, scale, zero_point, gran, group_size, use, out);
}
