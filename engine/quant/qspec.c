/* SPDX-License-Identifier: Apache-2.0 */
/* qspec.c - integer ranges and the PyTorch MinMax qparams contract
 * (docs/FORMAT.md, Numeric contract), computed in fp32 exactly as torch.ao does. */
#include "quant/qspec.h"

#include <math.h>

void pq_qspec_range(const pq_qspec *s, int32_t *qmin, int32_t *qmax)
{
    int32_t hi = s->bits == 4 ? 7 : 127;
    *qmax = hi;
    *qmin = s->symmetric ? -hi : -hi - 1;
}

int64_t pq_qspec_groups(const pq_qspec *s, int64_t cols)
{
    if (s->gran != PQ_GRAN_GROUP || s->group_size <= 0) return 1;
    return (cols + s->group_size - 1) / s->group_size;
}

int64_t pq_qspec_row_bytes(const pq_qspec *s, int64_t cols)
{
    return s->bits == 8 ? cols : (cols + 1) / 2;
}

int64_t pq_qspec_n_scales(const pq_qspec *s, int64_t rows, int64_t cols)
{
    return s->gran == PQ_GRAN_TENSOR ? 1 : rows * pq_qspec_groups(s, cols);
}

void pq_qparams(float mn, float mx, int32_t qmin, int32_t qmax, bool symmetric,
                float *scale, int32_t *zp)
{
    /* torch returns (1, 0) for an observer that saw nothing finite. */
    if (mn == INFINITY && mx == -INFINITY) {
        *scale = 1.0f;
        *zp = 0;
        return;
    }
    const float min_neg = mn < 0.0f ? mn : 0.0f;
    const float max_pos = mx > 0.0f ? mx : 0.0f;
    float s;
    if (symmetric) {
        /* torch divides by the Python float (qmax - qmin) / 2, which is exact
         * in fp32 (127, 7) and then divides in fp32. */
        float amax = -min_neg > max_pos ? -min_neg : max_pos;
        s = amax / ((float)(qmax - qmin) / 2.0f);
        *scale = s > PQ_SCALE_EPS ? s : PQ_SCALE_EPS;
        *zp = 0;
        return;
    }
    s = (max_pos - min_neg) / (float)(qmax - qmin);
    s = s > PQ_SCALE_EPS ? s : PQ_SCALE_EPS;
    /* |min_neg / s| <= qmax - qmin (+ rounding) unless s is inf, where the
     * quotient is -0: the int conversion is always in range. */
    int32_t z = qmin - (int32_t)nearbyintf(min_neg / s);
    *scale = s;
    *zp = z < qmin ? qmin : (z > qmax ? qmax : z);
}

const char *pq_granularity_name(pq_granularity g)
{
    switch (g) {
    case PQ_GRAN_TENSOR: return "tensor";
    case PQ_GRAN_CHANNEL: return "channel";
    case PQ_GRAN_GROUP: return "group";
    }
    return "unknown";
}
