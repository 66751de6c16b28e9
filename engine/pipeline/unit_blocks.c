/* SPDX-License-Identifier: Apache-2.0 */
/* unit_blocks.c - a unit of a half-precision checkpoint quantized a block of
 * rows at a time (job_impl.h). */
#include "pipeline/job_impl.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/dtype.h"
#include "format/safetensors.h"
#include "pq_config.h"
#include "quant/rtn.h"

/* fp32 bytes of one block: converted, then quantized while in the core's
 * cache. Rows are independent (per channel and per group), so the codes do
 * not depend on the block size or on which thread ran a block. */
#define BLOCK_BYTES ((int64_t)512 << 10)

pq_status pq_unit_quantize_blocks(pq_job *j, const pq_unit *u, const pq_plan_tensor *pt, pq_rtn_rows *rows)
{
    const int64_t cols = pt->cols;
    const pq_qspec *spec = &pt->spec;
    const int64_t code_row = pq_qspec_row_bytes(spec, cols);
    const int64_t groups = spec->gran == PQ_GRAN_GROUP ? (cols + spec->group_size - 1) / spec->group_size : 1;
    int64_t per = BLOCK_BYTES / (cols * (int64_t)sizeof(float));
    if (per < 1) per = 1;
    const int64_t n_blocks = (u->n_rows + per - 1) / per;
    pq_status first = PQ_OK;
    char detail[1024] = "";
    int64_t first_block = n_blocks, bad = 0, oom = 0;
    int nt = j->threads < 1 ? 1 : j->threads;
    if (nt > n_blocks) nt = (int)n_blocks;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : bad, oom)
    {
        float *buf = malloc((size_t)(per * cols) * sizeof *buf);
        if (!buf) oom++;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < n_blocks; b++) {
            if (!buf) continue;
            const int64_t r0 = b * per, n = u->n_rows - r0 < per ? u->n_rows - r0 : per;
            pq_status st = pq_st_read_rows_f32(j->model, pt->st, u->row0 + r0, n, buf);
            pq_rtn_rows out = {
                .codes = (uint8_t *)rows->codes + r0 * code_row,
                .scale = rows->scale + r0 * groups,
                .zero_point = rows->zero_point ? rows->zero_point + r0 * groups : NULL,
                .row_sum_sq = rows->row_sum_sq ? rows->row_sum_sq + r0 : NULL,
                .row_err_sq = rows->row_err_sq ? rows->row_err_sq + r0 : NULL,
                .row_max_err = rows->row_max_err ? rows->row_max_err + r0 : NULL,
            };
            if (!st)
                st = pq_rtn_quantize_rows(&j->ops, 1, buf, n, cols, spec, j->cfg->nan_policy, NULL, pt->st->name,
                                          u->row0 + r0, &out);
            bad += out.n_nonfinite;
            if (st) {
                /* the lowest failing block's error, whatever the threads */
#pragma omp critical(pq_unit_blocks_first)
                if (b < first_block) {
                    first_block = b;
                    first = st;
                    snprintf(detail, sizeof detail, "%s", pq_err_detail());
                }
            }
        }
        free(buf);
    }
    rows->n_nonfinite = bad;
    if (oom) return pq_err(PQ_ERR_RESOURCE, "out of memory converting tensor '%s' to fp32", pt->st->name);
    /* the detail was recorded in the thread that failed */
    return first ? pq_err(first, "%s", detail) : PQ_OK;
}
