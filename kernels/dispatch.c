/* SPDX-License-Identifier: Apache-2.0 */
/* dispatch.c - run-time choice of kernel variants: best first, reference last.
 * PQ_KERNELS=ref|avx2 forces one (checked against what the CPU can run). */
#include "kernels/kernels_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pq_config.h"

static const pq_kernel_ops ops_ref = {
    .name = "ref",
    .row_minmax = pq_row_minmax_ref, .row_absmax = pq_row_absmax_ref,
    .quantize_row = pq_quantize_row_ref, .dequantize_row = pq_dequantize_row_ref,
    .pack_i4 = pq_pack_i4_ref, .unpack_i4 = pq_unpack_i4_ref,
    .layernorm = pq_layernorm_ref, .softmax_rows = pq_softmax_rows_ref,
    .gelu = pq_gelu_ref, .rotary = pq_rotary_ref,
    .hist_ieee = pq_hist_ieee_ref,
};

#if PQ_HAVE_AVX2
static const pq_kernel_ops ops_avx2 = {
    .name = "avx2",
    .row_minmax = pq_row_minmax_avx2, .row_absmax = pq_row_absmax_avx2,
    .quantize_row = pq_quantize_row_avx2, .dequantize_row = pq_dequantize_row_avx2,
    .pack_i4 = pq_pack_i4_avx2, .unpack_i4 = pq_unpack_i4_avx2,
    .layernorm = pq_layernorm_avx2, .softmax_rows = pq_softmax_rows_avx2,
    .gelu = pq_gelu_avx2, .rotary = pq_rotary_avx2,
    .hist_ieee = pq_hist_ieee_avx2,
};
#endif

int pq_cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Best first; the reference requires nothing and ends the table. */
static const pq_kernel_ops *candidates(int i)
{
    int k = 0;
#if PQ_HAVE_AVX2
    if (pq_cpu_has_avx2_fma() && i == k++) return &ops_avx2;
#endif
    if (i == k) return &ops_ref;
    return NULL;
}

static const pq_kernel_ops *current;

const pq_kernel_ops *pq_kernels_ref(void) { return &ops_ref; }

const pq_kernel_ops *pq_kernels_get(const char *name)
{
    for (int i = 0; candidates(i); i++)
        if (strcmp(candidates(i)->name, name) == 0) return candidates(i);
    return NULL;
}

const char *pq_kernels_available(void)
{
    static char buf[128];
    buf[0] = '\0';
    for (int i = 0; candidates(i); i++) {
        if (i) strncat(buf, ",", sizeof buf - strlen(buf) - 1);
        strncat(buf, candidates(i)->name, sizeof buf - strlen(buf) - 1);
    }
    return buf;
}

pq_status pq_kernels_select(const char *name)
{
    if (!name || !*name || strcmp(name, "auto") == 0) { current = candidates(0); return PQ_OK; }
    const pq_kernel_ops *o = pq_kernels_get(name);
    if (!o)
        return pq_err(PQ_ERR_HARDWARE,
                      "kernel variant '%s' is not available on this build/CPU (available: %s)",
                      name, pq_kernels_available());
    current = o;
    return PQ_OK;
}

const pq_kernel_ops *pq_kernels(void)
{
    if (!current) {
        const char *env = getenv("PQ_KERNELS");
        if (pq_kernels_select(env) != PQ_OK) {
            fprintf(stderr, "proteus: warning: PQ_KERNELS=%s ignored (available: %s)\n",
                    env, pq_kernels_available());
            current = candidates(0);
        }
    }
    return current;
}
