/* SPDX-License-Identifier: Apache-2.0 */
/* dtype.h - element types and exact fp16/bf16 <-> fp32 conversions. */
#ifndef PQ_DTYPE_H
#define PQ_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum pq_dtype {
    PQ_DT_F32 = 0, PQ_DT_F16, PQ_DT_BF16, PQ_DT_F64,
    PQ_DT_I64, PQ_DT_I32, PQ_DT_I16, PQ_DT_I8, PQ_DT_U8, PQ_DT_BOOL,
    PQ__DT_COUNT
} pq_dtype;

#define PQ_MAX_DIMS 8

/* Bytes per element. */
size_t pq_dtype_size(pq_dtype dt);
/* Safetensors spelling ("F32", "BF16", ...). */
const char *pq_dtype_name(pq_dtype dt);
/* Parse the safetensors spelling; returns 0 and sets *dt, or -1 if unknown. */
int pq_dtype_parse(const char *s, pq_dtype *dt);
/* True for the floating types a checkpoint tensor may be read as fp32 from. */
int pq_dtype_is_float(pq_dtype dt);

/* IEEE binary16 -> binary32, exact (denormals, inf; a NaN stays NaN with its
 * payload, made quiet as the x86 conversion instruction makes it). */
float pq_f16_to_f32(uint16_t h);
/* binary32 -> binary16 with round-to-nearest-even (as numpy/torch do). */
uint16_t pq_f32_to_f16(float f);
/* bfloat16 -> binary32, exact. */
float pq_bf16_to_f32(uint16_t b);
/* binary32 -> bfloat16 with round-to-nearest-even; NaN stays quiet NaN. */
uint16_t pq_f32_to_bf16(float f);

/* Convert n elements of a float type stored little-endian at src (any
 * alignment) to fp32. src must be F32, F16 or BF16. F16C (fp16) and AVX2
 * (bf16) where the CPU has them: the same bits as the scalar reference. */
void pq_convert_to_f32(pq_dtype dt, const void *src, int64_t n, float *dst);
/* The scalar reference of pq_convert_to_f32 (tests). */
void pq_convert_to_f32_scalar(pq_dtype dt, const void *src, int64_t n, float *dst);

#endif
