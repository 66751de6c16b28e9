/* SPDX-License-Identifier: Apache-2.0 */
/* dtype.c - element sizes, names and float conversions. */
#include "base/dtype.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <pthread.h>
#include <immintrin.h>
#define PQ_DTYPE_X86 1
#endif

static const struct { const char *name; size_t size; } info[PQ__DT_COUNT] = {
    [PQ_DT_F32] = {"F32", 4}, [PQ_DT_F16] = {"F16", 2}, [PQ_DT_BF16] = {"BF16", 2},
    [PQ_DT_F64] = {"F64", 8}, [PQ_DT_I64] = {"I64", 8}, [PQ_DT_I32] = {"I32", 4},
    [PQ_DT_I16] = {"I16", 2}, [PQ_DT_I8] = {"I8", 1}, [PQ_DT_U8] = {"U8", 1},
    [PQ_DT_BOOL] = {"BOOL", 1},
};

size_t pq_dtype_size(pq_dtype dt) { return (unsigned)dt < PQ__DT_COUNT ? info[dt].size : 0; }
const char *pq_dtype_name(pq_dtype dt) { return (unsigned)dt < PQ__DT_COUNT ? info[dt].name : "?"; }

int pq_dtype_parse(const char *s, pq_dtype *dt)
{
    for (int i = 0; i < PQ__DT_COUNT; i++)
        if (strcmp(s, info[i].name) == 0) { *dt = (pq_dtype)i; return 0; }
    return -1;
}

int pq_dtype_is_float(pq_dtype dt) { return dt == PQ_DT_F32 || dt == PQ_DT_F16 || dt == PQ_DT_BF16; }

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float pq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    /* a NaN comes out quiet, its payload kept, as VCVTPH2PS gives it */
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0));
    if (exp == 0) {
        /* denormal or zero: value = man * 2^-24, exact in fp32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t pq_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is an fp16 denormal (or zero): scale so the ulp is 1, let the
         * FPU round to nearest even. 2^24 * |f| is exact in float. */
        float v = bits_to_f32(a) * 0x1p24f;
        uint32_t m = (uint32_t)__builtin_nearbyintf(v);
        return (uint16_t)(sign | m);
    }
    uint32_t mant = a & 0x7fffffu, e = (a >> 23) - 112u;
    uint32_t r = (e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

float pq_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t pq_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* The scalar reference of the conversions below, elements [i, n). */
static void convert_scalar(pq_dtype dt, const unsigned char *p, int64_t i, int64_t n, float *dst)
{
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = dt == PQ_DT_F16 ? pq_f16_to_f32(h) : pq_bf16_to_f32(h);
    }
}

#ifdef PQ_DTYPE_X86
/* 8 halves a step with VCVTPH2PS (F16C): exact, as the scalar form. */
__attribute__((target("avx,f16c"))) static int64_t f16_f16c(const unsigned char *p, int64_t n, float *dst)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i))));
    return i;
}

/* 8 bfloat16 a step: zero-extended to 32 bits and shifted into the high half. */
__attribute__((target("avx2"))) static int64_t bf16_avx2(const unsigned char *p, int64_t n, float *dst)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    return i;
}

/* F16C (CPUID leaf 1, ECX bit 29) beside AVX2 (whose YMM state the OS
 * saves): not every compiler's __builtin_cpu_supports knows "f16c". Asked
 * once per process: CPUID leaves a virtual machine, and a large checkpoint
 * is converted in hundreds of thousands of blocks. */
static bool f16c_avx2;
static pthread_once_t f16c_once = PTHREAD_ONCE_INIT;

static void find_f16c_avx2(void)
{
    unsigned a, b, c, d;
    __builtin_cpu_init();
    f16c_avx2 = __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

static bool has_f16c_avx2(void)
{
    pthread_once(&f16c_once, find_f16c_avx2);
    return f16c_avx2;
}
#endif

void pq_convert_to_f32_scalar(pq_dtype dt, const void *src, int64_t n, float *dst)
{
    if (dt == PQ_DT_F32) { memcpy(dst, src, (size_t)n * 4); return; }
    convert_scalar(dt, src, 0, n, dst);
}

void pq_convert_to_f32(pq_dtype dt, const void *src, int64_t n, float *dst)
{
    const unsigned char *p = src;
    if (dt == PQ_DT_F32) { memcpy(dst, src, (size_t)n * 4); return; }
    int64_t i = 0;
#ifdef PQ_DTYPE_X86
    if (has_f16c_avx2()) i = dt == PQ_DT_F16 ? f16_f16c(p, n, dst) : bf16_avx2(p, n, dst);
#endif
    convert_scalar(dt, p, i, n, dst);
}
