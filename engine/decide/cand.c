/* SPDX-License-Identifier: Apache-2.0 */
/* cand.c - candidate recipes and their bytes (cand.h). */
#include "decide/cand.h"

#include <stdio.h>
#include <string.h>

const char *pq_cand_precision_name(const pq_cand *c)
{
    switch (c->precision) {
    case 4: return "int4";
    case 8: return "int8";
    case 16: return "fp16";
    default: return "fp32";
    }
}

int pq_cand_precision_parse(const char *s)
{
    if (!strcmp(s, "int4")) return 4;
    if (!strcmp(s, "int8")) return 8;
    if (!strcmp(s, "fp16")) return 16;
    if (!strcmp(s, "fp32")) return 32;
    return -1;
}

void pq_cand_label(const pq_cand *c, char *buf, int n)
{
    if (c->precision >= 16) snprintf(buf, (size_t)n, "%s", pq_cand_precision_name(c));
    else if (c->group_size > 0) snprintf(buf, (size_t)n, "%s-g%d", pq_cand_precision_name(c), c->group_size);
    else snprintf(buf, (size_t)n, "%s-%s", pq_cand_precision_name(c), c->per_channel ? "ch" : "t");
}

pq_qspec pq_cand_qspec(const pq_cand *c)
{
    pq_qspec s = {.bits = c->precision, .symmetric = c->symmetric};
    s.gran = c->group_size > 0 ? PQ_GRAN_GROUP : c->per_channel ? PQ_GRAN_CHANNEL : PQ_GRAN_TENSOR;
    s.group_size = c->group_size;
    return s;
}

int64_t pq_cand_bytes(const pq_cand *c, int64_t rows, int64_t cols)
{
    if (c->precision >= 16) return rows * cols * (c->precision / 8);
    pq_qspec s = pq_cand_qspec(c);
    int64_t n_scales = pq_qspec_n_scales(&s, rows, cols);
    return rows * pq_qspec_row_bytes(&s, cols) + n_scales * 4 + (c->symmetric ? 0 : n_scales * 4);
}

bool pq_cand_fits(const pq_cand *c, int64_t cols)
{
    return c->precision >= 16 || c->group_size <= 0 || cols % c->group_size == 0;
}

int pq_cand_defaults(int64_t col_gcd, pq_cand out[5])
{
    int n = 0;
    out[n++] = (pq_cand){.precision = 4, .per_channel = true, .symmetric = true};
    static const int k_groups[] = {128, 64, 32};
    for (int i = 0; i < 3; i++)
        if (col_gcd % k_groups[i] == 0 && col_gcd > k_groups[i]) {
            out[n++] = (pq_cand){.precision = 4, .group_size = k_groups[i], .symmetric = true};
            break;
        }
    out[n++] = (pq_cand){.precision = 8, .per_channel = true, .symmetric = true};
    out[n++] = (pq_cand){.precision = 16};
    out[n++] = (pq_cand){.precision = 32};
    return n;
}
