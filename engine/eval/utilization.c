/* SPDX-License-Identifier: Apache-2.0 */
/* utilization.c - the kernel a model's Linears run on, and its peak. */
#include "eval/utilization.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pq_clock.h"
#include "kernels/gemm/pq_gemm.h"
#include "model/blas.h"

/* The kernels a Linear can run on. */
enum { K_I8, K_I4, K_WO8, K_WO4, K_F32, K_N };

static const pq_esm2_role k_roles[] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2};

static int kernel_of(const pq_qlinear *ql)
{
    if (!ql) return K_F32;
    switch (pq_qlinear_get_kind(ql)) {
    case PQ_QLINEAR_W8A8_DYNAMIC:
    case PQ_QLINEAR_W8A8_STATIC: return pq_qlinear_bits(ql) == 4 ? K_I4 : K_I8;
    case PQ_QLINEAR_WEIGHT_ONLY: return pq_qlinear_bits(ql) == 4 ? K_WO4 : K_WO8;
    default: return K_F32;
    }
}

/* in x out of a Linear role of the ESM-2 block (and the LM dense). */
static double macs(const pq_esm2_config *c, pq_esm2_role r)
{
    double D = c->embed_dim, F = c->ffn_dim;
    return r == PQ_ESM2_FC1 || r == PQ_ESM2_FC2 ? D * F : D * D;
}

/* The kernel carrying most of m's Linear operations, into u; returns it. */
static int pick(const pq_esm2_model *m, pq_eval_util_probe *u)
{
    const pq_esm2_config *c = pq_esm2_model_config(m);
    double ops[K_N] = {0};
    for (int l = 0; l < c->num_layers; l++)
        for (size_t i = 0; i < sizeof k_roles / sizeof k_roles[0]; i++)
            ops[kernel_of(pq_esm2_model_qlinear(m, k_roles[i], l))] += 2 * macs(c, k_roles[i]);
    ops[kernel_of(pq_esm2_model_qlinear(m, PQ_ESM2_LM_DENSE_W, -1))] += 2 * macs(c, PQ_ESM2_LM_DENSE_W);
    int best = K_I8;
    for (int k = 1; k < K_N; k++)
        if (ops[k] > ops[best]) best = k;
    static const char *const what[K_N] = {"int8 (W8A8)", "int4 (W4A8)", "weight-only int8", "weight-only int4",
                                          "fp32"};
    memset(u, 0, sizeof *u);
    if (best == K_F32) snprintf(u->kernel, sizeof u->kernel, "sgemm fp32");
    else snprintf(u->kernel, sizeof u->kernel, "%s %s", pq_esm2_model_ops(m)->gemm.name, what[best]);
    u->ops_per_token = ops[best];
    return best;
}

void pq_eval_util_kernel(const pq_esm2_model *m, pq_eval_util_probe *u)
{
    pick(m, u);
}

/* One run of the kernel on the probe shape. */
static pq_status run_once(const pq_ops *ops, int k, const int8_t *a8, const float *af, const pq_gemm_w *w,
                          const float *wf, int32_t *c32, float *cf, int n_threads)
{
    enum { M = PQ_EVAL_PEAK_M, N = PQ_EVAL_PEAK_N, K = PQ_EVAL_PEAK_K };
    pq_kstatus ks = PQ_KOK;
    if (k == K_I8 || k == K_I4) ks = pq_gemm_i8i8_s32(ops, a8, M, K, w, c32, N, n_threads);
    else if (k == K_WO8 || k == K_WO4) ks = pq_gemm_wonly_f32(ops, af, M, K, w, NULL, cf, N, n_threads);
    else return pq_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, af, K, wf, K, 0.0f, cf, N);
    return ks == PQ_KOK ? PQ_OK : pq_err(PQ_ERR_RESOURCE, "the peak probe's GEMM failed: %s", pq_kstatus_str(ks));
}

pq_status pq_eval_util_measure(const pq_esm2_model *m, int n_threads, pq_eval_util_probe *u)
{
    enum { M = PQ_EVAL_PEAK_M, N = PQ_EVAL_PEAK_N, K = PQ_EVAL_PEAK_K };
    int k = pick(m, u);
    const pq_ops *ops = pq_esm2_model_ops(m);
    pq_status st = PQ_OK;
    int8_t *a8 = malloc((size_t)M * K), *w8 = malloc((size_t)N * K);
    float *af = malloc((size_t)M * K * sizeof(float)), *wf = malloc((size_t)N * K * sizeof(float));
    float *cf = malloc((size_t)M * N * sizeof(float)), *scale = malloc((size_t)N * sizeof(float));
    int32_t *c32 = malloc((size_t)M * N * sizeof(int32_t));
    pq_gemm_w *w = NULL;
    if (!a8 || !w8 || !af || !wf || !cf || !scale || !c32) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory for the peak probe");
        goto done;
    }
    uint64_t x = 0x9E3779B97F4A7C15u; /* any values: the kernels' time does not depend on them */
    for (int64_t i = 0; i < (int64_t)M * K; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        a8[i] = (int8_t)((int)(x >> 56) % 127);
        af[i] = (float)a8[i] / 127.0f;
    }
    for (int64_t i = 0; i < (int64_t)N * K; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        w8[i] = (int8_t)((int)(x >> 56) % 8); /* in the int4 range too */
        wf[i] = (float)w8[i] / 8.0f;
    }
    for (int i = 0; i < N; i++) scale[i] = 0.01f;
    pq_gemm_use use = k == K_I8 || k == K_I4 ? PQ_GEMM_USE_I8I8 : PQ_GEMM_USE_WONLY;
    pq_kstatus ks = PQ_KOK;
    if (k == K_I4 || k == K_WO4) {
        uint8_t *p = malloc((size_t)N * (K / 2));
        if (!p) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory for the peak probe");
            goto done;
        }
        for (int i = 0; i < N; i++) ops->pack_i4(w8 + (int64_t)i * K, K, p + (int64_t)i * (K / 2));
        ks = pq_gemm_pack_i4(p, N, K, scale, NULL, PQ_GEMM_CHANNEL, 0, use, &w);
        free(p);
    } else if (k != K_F32) ks = pq_gemm_pack_i8(w8, N, K, scale, NULL, PQ_GEMM_CHANNEL, 0, use, &w);
    if (ks != PQ_KOK) {
        st = pq_err(PQ_ERR_RESOURCE, "the peak probe could not pack its weights: %s", pq_kstatus_str(ks));
        goto done;
    }
    /* one warm-up run, then the best of up to 5 runs within about a second */
    if ((st = run_once(ops, k, a8, af, w, wf, c32, cf, n_threads)) != PQ_OK) goto done;
    double best = 0, t_end = pq_now_s() + 1.0;
    for (int r = 0; r < 5 && (r == 0 || pq_now_s() < t_end); r++) {
        double t0 = pq_now_s();
        if ((st = run_once(ops, k, a8, af, w, wf, c32, cf, n_threads)) != PQ_OK) goto done;
        double dt = pq_now_s() - t0;
        if (dt > 0 && (best == 0 || dt < best)) best = dt;
    }
    u->peak_gops = best > 0 ? 2.0 * M * N * K / best / 1e9 : 0;
done:
    pq_gemm_w_free(w);
    free(a8);
    free(w8);
    free(af);
    free(wf);
    free(cf);
    free(scale);
    free(c32);
    return st;
}
