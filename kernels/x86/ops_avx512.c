/* SPDX-License-Identifier: Apache-2.0 */
/* ops_avx512.c - AVX-512F variants of the element-wise transformer ops of
 * kernels/ref/ops_ref.c (the avx512 context's; the others are avx2's).
 * Compiled with the avx512 context's flags only in this file. Tolerances in
 * math512.h, tested in tests/model/test_ops.c. */
#include <immintrin.h>

#include "kernels/kernels_impl.h"
#include "kernels/x86/math512.h"

void pq_gelu_avx512(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, pq_gelu512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, m, pq_gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
