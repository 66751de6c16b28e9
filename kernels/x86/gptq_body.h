/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_body.h - the body of the x86 GPTQ column loops (pq_gptq_block),
 * included by gptq_avx2.c and gptq_avx512.c after they define, for their
 * vectors of VW floats: VF / VI (float / int32 vector), VLOAD, VSTORE,
 * VLOADI, VSET1, VADD, VSUB, VMUL, VDIV, VMIN, VMAX, VCVTT (truncating
 * conversion), VADDI, VSTORE_CODES (the VW int32 codes stored as bytes) and
 * PQ_GPTQ_COLS (columns held in registers).
 *
 * Equal to kernels/ref/gptq_ref.c bit for bit: the same fp32 product, clamp,
 * rounding (the same 1.5 * 2^23 addition), true division and separate
 * product and difference per update (the project builds with
 * -ffp-contract=off, so no pair of intrinsics is fused into an FMA). Rows
 * are independent, so vectors run across rows. The updates are applied
 * left-looking: a group of PQ_GPTQ_COLS columns of VW * NV rows is held in
 * registers and receives the errors of every earlier column of the block,
 * in ascending column order, just before it is quantized: each element sees
 * the reference's operations in the reference's order, with one pass over
 * the errors instead of a store of every column after every column. */
#ifndef PQ_GPTQ_BODY_H
#define PQ_GPTQ_BODY_H

/* Quantize column k of rows [r, r + VW) from its current value y: stores the
 * codes and the scaled error, and returns the error. */
static inline VF quant_col(const pq_gptq_block *b, int64_t k, int64_t r, VF y)
{
    const VF magic = VSET1(12582912.0f);
    const int64_t p = b->goff[k] + r, o = k * b->ld + r;
    VF v = VMUL(y, VLOAD(b->inv + p));
    v = VMIN(VMAX(v, VLOAD(b->lo + p)), VLOAD(b->hi + p));
    const VF rv = VSUB(VADD(v, magic), magic);
    const VI c = VADDI(VCVTT(rv), VLOADI(b->zp + p));
    VSTORE_CODES(b->q + o, c); /* codes are in [-128, 127] */
    const VF e = VDIV(VSUB(y, VMUL(rv, VLOAD(b->scale + p))), VSET1(b->u[k * b->ldu + k]));
    VSTORE(b->e + o, e);
    return e;
}

/* Rows [r, r + VW * NV) of the whole block. NV is 1 or 2 (a constant at each
 * call, so the arrays below live in registers). */
static inline __attribute__((always_inline)) void block_rows(const pq_gptq_block *b, int64_t r, const int NV)
{
    const int64_t ld = b->ld, nb = b->nb, ldu = b->ldu;
    const float *U = b->u;
    int64_t j0 = 0;
    for (; j0 + PQ_GPTQ_COLS <= nb; j0 += PQ_GPTQ_COLS) {
        VF y[PQ_GPTQ_COLS][2];
        for (int c = 0; c < PQ_GPTQ_COLS; c++)
            for (int v = 0; v < NV; v++) y[c][v] = VLOAD(b->x + (j0 + c) * ld + r + VW * v);
        for (int64_t k = 0; k < j0; k++) {
            const float *uk = U + k * ldu + j0;
            VF ek[2];
            for (int v = 0; v < NV; v++) ek[v] = VLOAD(b->e + k * ld + r + VW * v);
            for (int c = 0; c < PQ_GPTQ_COLS; c++) {
                const VF uc = VSET1(uk[c]);
                for (int v = 0; v < NV; v++) y[c][v] = VSUB(y[c][v], VMUL(ek[v], uc));
            }
        }
        for (int c = 0; c < PQ_GPTQ_COLS; c++) {
            const int64_t k = j0 + c;
            VF ek[2];
            for (int v = 0; v < NV; v++) ek[v] = quant_col(b, k, r + VW * v, y[c][v]);
            for (int c2 = c + 1; c2 < PQ_GPTQ_COLS; c2++) {
                const VF uc = VSET1(U[k * ldu + j0 + c2]);
                for (int v = 0; v < NV; v++) y[c2][v] = VSUB(y[c2][v], VMUL(ek[v], uc));
            }
        }
    }
    for (; j0 < nb; j0++) {
        VF y[2];
        for (int v = 0; v < NV; v++) y[v] = VLOAD(b->x + j0 * ld + r + VW * v);
        for (int64_t k = 0; k < j0; k++) {
            const VF uc = VSET1(U[k * ldu + j0]);
            for (int v = 0; v < NV; v++)
                y[v] = VSUB(y[v], VMUL(VLOAD(b->e + k * ld + r + VW * v), uc));
        }
        for (int v = 0; v < NV; v++) quant_col(b, j0, r + VW * v, y[v]);
    }
}

#endif
