/* SPDX-License-Identifier: Apache-2.0 */
/* ops.c - the operations contexts, built from the reference by overriding
 * (ref -> avx2 -> avx512), and the one selector that fills a caller's
 * context by name. Built for baseline x86-64: the builders only copy
 * function pointers, so they run on any CPU. */
#include "kernels/kernels_impl.h"

#include <string.h>

#include "pq_config.h"

void pq_ops_init_ref(pq_ops *o)
{
    *o = (pq_ops){
        .name = "ref",
        .row_minmax = pq_row_minmax_ref, .row_absmax = pq_row_absmax_ref,
        .quantize_row = pq_quantize_row_ref, .dequantize_row = pq_dequantize_row_ref,
        .error_lanes = pq_error_lanes_ref,
        .pack_i4 = pq_pack_i4_ref, .unpack_i4 = pq_unpack_i4_ref,
        .layernorm = pq_layernorm_ref, .softmax_rows = pq_softmax_rows_ref,
        .gelu = pq_gelu_ref, .rotary = pq_rotary_ref,
        .hist_ieee = pq_hist_ieee_ref,
        .gptq_block = pq_gptq_block_ref,
        .gemm = pq_gemm_kernels_ref,
    };
}

#if PQ_HAVE_AVX2
void pq_ops_init_avx2(pq_ops *o)
{
    pq_ops_init_ref(o);
    o->name = "avx2";
    o->row_minmax = pq_row_minmax_avx2;
    o->row_absmax = pq_row_absmax_avx2;
    o->quantize_row = pq_quantize_row_avx2;
    o->dequantize_row = pq_dequantize_row_avx2;
    o->error_lanes = pq_error_lanes_avx2;
    o->pack_i4 = pq_pack_i4_avx2;
    o->unpack_i4 = pq_unpack_i4_avx2;
    o->layernorm = pq_layernorm_avx2;
    o->softmax_rows = pq_softmax_rows_avx2;
    o->gelu = pq_gelu_avx2;
    o->rotary = pq_rotary_avx2;
    o->hist_ieee = pq_hist_ieee_avx2;
    o->gptq_block = pq_gptq_block_avx2;
    o->gemm = pq_gemm_kernels_avx2;
}
#endif

#if PQ_HAVE_AVX2 && defined(PQ_HAVE_AVX512VNNI)
void pq_ops_init_avx512(pq_ops *o)
{
    pq_ops_init_avx2(o);
    o->name = "avx512";
    o->gemm = pq_gemm_kernels_avx512vnni;
    o->gptq_block = pq_gptq_block_avx512;
    o->attention = pq_attention_avx512;
    o->gelu = pq_gelu_avx512;
    o->layernorm = pq_layernorm_avx512;
    o->row_minmax = pq_row_minmax_avx512;
    o->error_lanes = pq_error_lanes_avx512;
#ifdef PQ_HAVE_AVX512BF16
    if (pq_cpu_bf16_dot_fast()) o->attention_bf16 = pq_attention_bf16_avx512;
#endif
}
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

/* libgcc's probe also checks that the OS saves the AVX-512 state. */
int pq_cpu_has_avx512vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           pq_cpu_has_avx2_fma();
#else
    return 0;
#endif
}

int pq_cpu_has_avx512bf16(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && pq_cpu_has_avx512vnni();
#else
    return 0;
#endif
}

/* VDPBF16PS (32 products per 512-bit instruction) against FMA (16): AMD's
 * Zen 4 issues one of each a cycle, so bf16 products double the rate; an
 * Intel core (measured on an Emerald Rapids Xeon: 1.34 G VDPBF16PS/s against
 * 5.5 G FMA/s on one core) issues one VDPBF16PS every two cycles and two
 * FMAs a cycle, so there fp32 attention is both the faster and the more
 * exact. */
int pq_cpu_bf16_dot_fast(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return pq_cpu_has_avx512bf16() && __builtin_cpu_is("amd");
#else
    return 0;
#endif
}

int pq_ops_force_bf16_attention(pq_ops *o)
{
#if PQ_HAVE_AVX2 && defined(PQ_HAVE_AVX512VNNI) && defined(PQ_HAVE_AVX512BF16)
    if (o->attention == pq_attention_avx512 && pq_cpu_has_avx512bf16()) {
        o->attention_bf16 = pq_attention_bf16_avx512;
        return 1;
    }
#endif
    return o->attention_bf16 != NULL;
}

static int cpu_any(void) { return 1; }

/* Every context, best first; init is NULL where the build lacks it. */
typedef struct ctx_entry {
    const char *name;
    const char *needs;
    int (*cpu_has)(void);
    void (*init)(pq_ops *);
} ctx_entry;

static const ctx_entry contexts[] = {
#if PQ_HAVE_AVX2 && defined(PQ_HAVE_AVX512VNNI)
    {"avx512", "avx512f, avx512bw, avx512vl, avx512vnni, avx2, fma", pq_cpu_has_avx512vnni,
     pq_ops_init_avx512},
#else
    {"avx512", "avx512f, avx512bw, avx512vl, avx512vnni, avx2, fma", pq_cpu_has_avx512vnni, NULL},
#endif
#if PQ_HAVE_AVX2
    {"avx2", "avx2, fma", pq_cpu_has_avx2_fma, pq_ops_init_avx2},
#else
    {"avx2", "avx2, fma", pq_cpu_has_avx2_fma, NULL},
#endif
    {"ref", "", cpu_any, pq_ops_init_ref},
};
#define N_CONTEXTS (sizeof contexts / sizeof contexts[0])

static int usable(const ctx_entry *e) { return e->init && e->cpu_has(); }

pq_kstatus pq_ops_select(const char *name, pq_ops *out)
{
    if (!name) return PQ_KUNKNOWN;
    int best = !strcmp(name, "cpu");
    for (size_t i = 0; i < N_CONTEXTS; i++) {
        const ctx_entry *e = &contexts[i];
        if (best) {
            if (!usable(e)) continue;
        } else if (strcmp(name, e->name)) {
            continue;
        } else if (!e->init) {
            return PQ_KNOTBUILT;
        } else if (!e->cpu_has()) {
            return PQ_KNOCPU;
        }
        e->init(out);
        return PQ_KOK;
    }
    return PQ_KUNKNOWN;
}

const char *pq_ops_names(void) { return "cpu, ref, avx2, avx512"; }

const char *pq_ops_available(char *buf, size_t n)
{
    if (!n) return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < N_CONTEXTS; i++) {
        if (!usable(&contexts[i])) continue;
        if (buf[0]) strncat(buf, ", ", n - strlen(buf) - 1);
        strncat(buf, contexts[i].name, n - strlen(buf) - 1);
    }
    return buf;
}

const char *pq_ops_needs(const char *name)
{
    if (name && !strcmp(name, "cpu")) return "";
    for (size_t i = 0; name && i < N_CONTEXTS; i++)
        if (!strcmp(name, contexts[i].name)) return contexts[i].needs;
    return NULL;
}

const char *pq_kstatus_str(pq_kstatus s)
{
    switch (s) {
    case PQ_KOK: return "ok";
    case PQ_KBADARG: return "bad argument";
    case PQ_KNOMEM: return "out of memory";
    case PQ_KUNKNOWN: return "no such kernel context";
    case PQ_KNOTBUILT: return "not compiled into this build";
    case PQ_KNOCPU: return "this CPU lacks the instructions it needs";
    }
    return "?";
}
