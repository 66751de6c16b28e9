/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_ref.c - the scalar reference of the GPTQ column loop (pq_kernels.h,
 * pq_gptq_block): the paper's per-row loop, column by column, each later
 * column of the block updated as soon as a column's error is known. Built
 * without contraction (-ffp-contract=off, the project's default): every
 * product and difference is rounded on its own, as the variants do. */
#include "kernels/kernels_impl.h"

void pq_gptq_block_ref(const pq_gptq_block *b, int64_t r0, int64_t r1)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const int64_t ld = b->ld, nb = b->nb;
    for (int64_t k = 0; k < nb; k++) {
        const float *u = b->u + k * b->ldu;
        const float ukk = u[k];
        const int64_t go = b->goff[k];
        const float *sc = b->scale + go, *iv = b->inv + go, *l = b->lo + go, *h = b->hi + go;
        const int32_t *z = b->zp + go;
        const float *x = b->x + k * ld;
        float *e = b->e + k * ld;
        int8_t *q = b->q + k * ld;
        for (int64_t r = r0; r < r1; r++) {
            float v = x[r] * iv[r];
            v = v < l[r] ? l[r] : (v > h[r] ? h[r] : v);
            const float rv = (v + magic) - magic;
            q[r] = (int8_t)((int32_t)rv + z[r]);
            e[r] = (x[r] - rv * sc[r]) / ukk;
        }
        for (int64_t j = k + 1; j < nb; j++) {
            const float uj = u[j];
            float *y = b->x + j * ld;
            for (int64_t r = r0; r < r1; r++) y[r] -= e[r] * uj;
        }
    }
}
