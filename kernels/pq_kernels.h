/* SPDX-License-Identifier: Apache-2.0 */
/* pq_kernels.h - the hot loops of Proteus as one operations context per ISA.
 *
 * A context (pq_ops) holds every entry a computation needs: the element-wise
 * ops and the GEMM micro-kernels. The reference context (kernels/ref) is
 * complete and defines the numbers; each ISA's context starts from it and
 * overrides what its variant does faster (as BLIS builds a cntx_t): avx2 =
 * ref with the AVX2 element-wise ops and GEMM; avx512 = avx2 with the AVX-512
 * VNNI int8 GEMM, the fused attention (bf16 too where the CPU's VDPBF16PS
 * outruns its FMA), GELU and LayerNorm. Variants produce the same integers
 * bit for bit.
 *
 * A context is a plain value, filled once by pq_ops_select and never changed
 * afterwards; whoever selected it owns it and passes it down (a job, a model)
 * to every call that runs kernels. There is no process-wide table and no
 * environment read here: the configuration turns hardware_target (and
 * PQ_KERNELS) into the name given to pq_ops_select.
 *
 * kernels/ depends on libc and libm only: calls that can fail report a
 * pq_kstatus, which the engine turns into its own errors. No MPI here, no
 * allocation in the element-wise hot paths. */
#ifndef PQ_KERNELS_H
#define PQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* What a kernel-level call reports. */
typedef enum pq_kstatus {
    PQ_KOK = 0,
    PQ_KBADARG,   /* a shape, layout or value the call cannot take */
    PQ_KNOMEM,    /* out of memory */
    PQ_KUNKNOWN,  /* pq_ops_select: no context has that name */
    PQ_KNOTBUILT, /* pq_ops_select: that context is not compiled into this build */
    PQ_KNOCPU     /* pq_ops_select: this CPU lacks the instructions it needs */
} pq_kstatus;

/* A short phrase for s ("out of memory", ...). */
const char *pq_kstatus_str(pq_kstatus s);

/* The GEMM jobs the micro-kernels run (kernels/gemm/gemm_impl.h). */
typedef struct pq_gemm_i8i8_job pq_gemm_i8i8_job;
typedef struct pq_gemm_wonly_job pq_gemm_wonly_job;

/* The GEMM micro-kernels of one ISA; the framework in kernels/gemm (packing,
 * driver, thread split) calls them. */
typedef struct pq_gemm_kernels {
    const char *name; /* "ref", "avx2", "avx512vnni" */
    /* bytes of packed A for m x k (0: the variant reads a directly) */
    size_t (*a_pack_size)(int64_t m, int64_t k);
    /* packs the row blocks [b0, b1) of a_pack_rows rows each, so that
     * threads can pack disjoint blocks of one buffer */
    void (*a_pack)(const int8_t *a, int64_t m, int64_t k, int64_t lda, void *dst, int64_t b0,
                   int64_t b1);
    int a_pack_rows;
    void (*i8i8)(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1);
    /* the same job on an int4 I8I8 pack (W4A8), same packed A */
    void (*i4i8)(const pq_gemm_i8i8_job *job, int64_t p0, int64_t p1);
    /* floats of per-thread scratch for wonly */
    size_t (*wonly_scratch)(int64_t m, int64_t k);
    void (*wonly)(const pq_gemm_wonly_job *job, int64_t p0, int64_t p1, float *scratch);
    void (*quantize_dynamic)(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q,
                             int64_t ldq, float *scale);
    /* optional: quantize_dynamic written straight into the packed A layout
     * (row blocks [b0, b1)), the same codes and scales; NULL if absent */
    void (*quantize_pack)(const float *x, int64_t m, int64_t k, int64_t ldx, void *dst,
                          float *scale, int64_t b0, int64_t b1);
} pq_gemm_kernels;

/* One block of the GPTQ solve's column loop (engine/quant/gptq.c) for the
 * rows [r0, r1) of a row tile, laid out column by column (element (r, k) of
 * a column-major array at [k * ld + r]). For each column k = 0..nb-1 and
 * each row r, with p = goff[k] + r indexing the row's qparams:
 *   v    = clamp(x(r,k) * inv[p], lo[p], hi[p])      (lo/hi: qmin/qmax - zp)
 *   rv   = (v + 1.5 * 2^23) - 1.5 * 2^23             (round half to even)
 *   q(r,k) = rv + zp[p];  e(r,k) = (x(r,k) - rv * scale[p]) / u[k * ldu + k]
 *   x(r,j) = x(r,j) - e(r,k) * u[k * ldu + j]        for j = k+1..nb-1,
 * every product and difference rounded to fp32 on its own (no FMA): the
 * reference's per-row loop, in its order. Any variant may order the work
 * differently (e.g. apply a column's pending updates when it is reached) but
 * gives every element the same operations in the same order, hence the same
 * codes and errors bit for bit. x is scratch afterwards; e and q are the
 * outputs. The quantities are finite and |x * inv| < 2^22. */
typedef struct pq_gptq_block {
    int64_t ld;          /* stride between columns of x, e and q (the tile's rows) */
    int64_t nb;          /* columns in the block */
    const float *u;      /* the block's diagonal block of U (upper triangle) */
    int64_t ldu;         /* its row stride */
    const int64_t *goff; /* per column: where its rows' qparams start */
    const float *scale, *inv, *lo, *hi;
    const int32_t *zp;
    float *x;            /* in: the block's current weights */
    float *e;            /* out: the scaled errors */
    int8_t *q;           /* out: the codes */
} pq_gptq_block;

typedef struct pq_ops {
    const char *name; /* the context: "ref", "avx2", "avx512" */

    /* min and max over the finite elements of x[0..n); *n_nonfinite counts
     * NaN/+-Inf elements, which are otherwise ignored. With no finite element,
     * *mn = +INFINITY and *mx = -INFINITY. -0.0 and +0.0 compare equal; which
     * one is returned is unspecified. */
    void (*row_minmax)(const float *x, int64_t n, float *mn, float *mx, int64_t *n_nonfinite);

    /* max |x| over finite elements (0 when none finite); counts non-finite. */
    void (*row_absmax)(const float *x, int64_t n, float *amax, int64_t *n_nonfinite);

    /* q[i] = clamp(zp + nearbyint(x[i] * inv_scale), qmin, qmax), RNE rounding of
     * the fp32 product, as torch.quantize_per_* does. x must be finite. */
    void (*quantize_row)(const float *x, int64_t n, float inv_scale, int32_t zp,
                         int32_t qmin, int32_t qmax, int8_t *q);

    /* y[i] = (float)(q[i] - zp) * scale. */
    void (*dequantize_row)(const int8_t *q, int64_t n, float scale, int32_t zp, float *y);

    /* The error sums of codes q[0..n) made from x[0..n), kept in 8 lanes by
     * index (lane l = i mod 8): element after element, w = (double)x[i],
     * d = w - (double)((float)(q[i] - zp) * scale) (the fp32 dequantize_row
     * value), s[l] += w * w, e[l] += d * d, m[l] = |d| > m[l] ? |d| : m[l].
     * The same doubles from every variant (each lane adds in index order).
     * x must be finite. */
    void (*error_lanes)(const float *x, const int8_t *q, int64_t n, float scale, int32_t zp, double s[8],
                        double e[8], double m[8]);

    /* Pack int4 codes q[0..n) (each in [-8, 7]) into ceil(n/2) bytes:
     * byte j = (q[2j] + 8) | (q[2j+1] + 8) << 4 (low nibble = even column,
     * offset binary); a missing odd element packs as nibble 8 (code 0). */
    void (*pack_i4)(const int8_t *q, int64_t n, uint8_t *packed);
    /* Inverse of pack_i4: q[i] = nibble - 8. */
    void (*unpack_i4)(const uint8_t *packed, int64_t n, int8_t *q);

    /* ---- transformer float ops (kernels/ref/ops_ref.c; AVX2 within the
     * tolerances stated in kernels/x86/ops_avx2.c) ---- */
    /* LayerNorm over each of n_rows rows of width d (biased variance):
     * y = (x - mean) / sqrt(var + eps) * w + b. y may equal x. */
    void (*layernorm)(const float *x, int64_t n_rows, int64_t d, const float *w,
                      const float *b, float eps, float *y);
    /* In-place softmax of each row of n (max-subtracted, fp32; -inf -> 0). */
    void (*softmax_rows)(float *x, int64_t n_rows, int64_t n);
    /* In place: x = (x * 0.5) * (1 + erf(x / 1.41421356)). */
    void (*gelu)(float *x, int64_t n);
    /* Split-half rotary on n_tokens rows (row stride ld floats) of n_heads
     * heads of hd dims; cos_t/sin_t are [n_tokens, hd/2] (pq_rotary_table). */
    void (*rotary)(float *x, int64_t n_tokens, int64_t ld, int n_heads, int hd,
                   const float *cos_t, const float *sin_t);
    /* Optional (NULL: the forward runs per-head SGEMMs with the rotary and
     * softmax_rows slots): the attention of one (sequence, head), fused.
     * q, k, v: T rows of hd floats, row stride ld, left unchanged; q is
     * scaled by qscale and both rotated as the rotary slot does; o[T][hd]
     * (row stride ldo) = softmax(q k^T) v; attn (NULL: not wanted) gets
     * the T x T probabilities; scratch holds pq_attention_scratch(T, hd)
     * floats, 64-byte aligned. Reference: pq_attention_ref
     * (kernels/ref/attn_ref.c). */
    void (*attention)(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int hd,
                      float qscale, const float *cos_t, const float *sin_t, float *o, int64_t ldo,
                      float *attn, float *scratch);
    /* Optional (NULL: not on this CPU, or no faster there than the fp32
     * kernel): the same with q, k, v and the probabilities rounded to bf16
     * (fp32 sums; attn gets the fp32 probabilities). For models whose
     * activations are int8 already (W8A8/W4A8): the model decides. Reference: pq_attention_bf16_ref. */
    void (*attention_bf16)(const float *q, const float *k, const float *v, int64_t ld, int64_t T,
                           int hd, float qscale, const float *cos_t, const float *sin_t, float *o,
                           int64_t ldo, float *attn, float *scratch);

    /* ---- calibration statistics (kernels/ref/hist_ref.c) ----
     * One pass over rows x[n_rows, dim], accumulating into the outputs:
     * histogram on the fixed IEEE-bit grid: a finite element with bit
     * pattern u increments counts[u >> PQ_HIST_SHIFT] (flat, PQ_HIST_NBINS
     * entries: one per (sign, exponent, top PQ_HIST_MBITS mantissa bits));
     * NaN, +Inf, -Inf increment nonfinite[0], [1], [2] instead; *mn / *mx
     * and chan_absmax[dim] (max |x| per column) over finite elements. Either
     * zero may come out as min/max. uint32 counters keep the hot part of the
     * table in cache; the caller flushes them before any could wrap. */
    void (*hist_ieee)(const float *x, int64_t n_rows, int64_t dim, uint32_t *counts,
                      uint64_t *nonfinite, float *mn, float *mx, float *chan_absmax);

    /* ---- the GPTQ solve (kernels/ref/gptq_ref.c) ---- */
    void (*gptq_block)(const pq_gptq_block *b, int64_t r0, int64_t r1);

    /* ---- the int8/int4 GEMM (kernels/gemm/pq_gemm.h runs them) ---- */
    pq_gemm_kernels gemm;
} pq_ops;

/* The calibration grid: 8 mantissa bits per bin (relative width 2^-8, far
 * below an int8 step), 512 blocks (sign x exponent) of 256 bins. */
#define PQ_HIST_MBITS 8
#define PQ_HIST_SHIFT (23 - PQ_HIST_MBITS)
#define PQ_HIST_BLOCK (1 << PQ_HIST_MBITS)
#define PQ_HIST_NBLOCKS 512
#define PQ_HIST_NBINS (PQ_HIST_NBLOCKS * PQ_HIST_BLOCK)

/* cos/sin tables for positions 0..n_pos-1: angle fl32(t * inv_freq[i]),
 * cos/sin in double rounded to fp32; cos_t/sin_t are [n_pos, half]. */
void pq_rotary_table(const float *inv_freq, int half, int64_t n_pos, float *cos_t,
                     float *sin_t);

/* Floats of scratch the attention slot needs for one head of T tokens. */
size_t pq_attention_scratch(int64_t T, int hd);

/* The complete scalar reference context; needs nothing from the CPU. */
void pq_ops_init_ref(pq_ops *out);

/* Fills *out with the context `name` names:
 *   "cpu"    the best context this CPU runs (avx512, else avx2, else ref)
 *   "ref"    the scalar references
 *   "avx2"   AVX2 + FMA element-wise ops and GEMM
 *   "avx512" avx2 with the AVX-512 VNNI int8 GEMM and the fused attention
 * PQ_KUNKNOWN for any other name (pq_ops_names lists them), PQ_KNOTBUILT when
 * the context is not compiled into this build, PQ_KNOCPU when this CPU lacks
 * what it needs (pq_ops_needs). *out is left alone on failure. */
pq_kstatus pq_ops_select(const char *name, pq_ops *out);

/* The names pq_ops_select accepts: "cpu, ref, avx2, avx512". */
const char *pq_ops_names(void);

/* The contexts usable on this build and CPU, best first, comma-separated
 * into buf (always NUL-terminated); returns buf. */
const char *pq_ops_available(char *buf, size_t n);

/* The CPU features context `name` needs ("avx2, fma", ...); "" for ref and
 * cpu, NULL for an unknown name. */
const char *pq_ops_needs(const char *name);

#endif
