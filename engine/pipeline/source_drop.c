/* SPDX-License-Identifier: Apache-2.0 */
/* source_drop.c - a checkpoint larger than the page cache can hold: the
 * bytes of a digest chunk leave the page cache once this process has read
 * them for good (job.h). */
#include "pipeline/job_impl.h"

#include <stdlib.h>

#include "base/mem_limit.h"
#include "base/pq_fault.h"
#include "format/st_hash.h"

/* A source at least this share of the memory the process may fill (the
 * machine's, or its cgroup's: a Slurm job's) cannot stay in the page cache
 * beside the output, so nothing is lost by dropping it. */
#define DROP_SHARE 0.75

/* Digest chunks [*c0, *c1] that unit u's rows lie in. */
static void unit_chunks(const pq_plan *p, const pq_unit *u, int64_t *c0, int64_t *c1)
{
    const pq_plan_tensor *pt = &p->tensors[u->tensor];
    const pq_st_tensor *t = pt->st;
    const uint64_t row_bytes = t->n_bytes / (uint64_t)(pt->rows > 0 ? pt->rows : 1);
    const uint64_t a = t->offset + row_bytes * (uint64_t)u->row0, n = row_bytes * (uint64_t)u->n_rows;
    const int64_t f0 = p->file_chunk0[t->file_idx];
    *c0 = f0 + (int64_t)(a / (uint64_t)p->hash_chunk_bytes);
    *c1 = f0 + (int64_t)((a + (n ? n : 1) - 1) / (uint64_t)p->hash_chunk_bytes);
    if (*c1 >= p->n_hash) *c1 = p->n_hash - 1;
}

void pq_job_drop_plan(pq_job *j)
{
    const pq_plan *p = j->plan;
    free(j->src_users);
    j->src_users = NULL;
    if (!j->defer_source_hash || !p->n_hash || !p->file_chunk0) return;
    double bytes = 0;
    for (int f = 0; f < pq_st_file_count(j->model); f++) {
        size_t n;
        pq_st_file_map(j->model, f, &n);
        bytes += (double)n;
    }
    const uint64_t mem = pq_mem_limit_bytes();
    if (!pq_fault_at(PQ_FAULT_DROP_SOURCE, 1) && (!mem || bytes < DROP_SHARE * (double)mem)) return;
    if (!(j->src_users = malloc((size_t)p->n_hash * sizeof *j->src_users))) return; /* a hint: no drop */
    /* every reader of a chunk, whichever rank the plan gives it: one that
     * another process runs never reaches this process, so its chunk stays */
    for (int64_t c = 0; c < p->n_hash; c++) j->src_users[c] = 1;
    for (int k = 0; k < p->n_units; k++) {
        int64_t c0, c1;
        unit_chunks(p, &p->units[k], &c0, &c1);
        for (int64_t c = c0; c <= c1; c++) j->src_users[c]++;
    }
}

static void drop_chunk(pq_job *j, int64_t c)
{
    if (__atomic_sub_fetch(&j->src_users[c], 1, __ATOMIC_ACQ_REL) == 0)
        pq_st_hash_chunk_drop(j->model, j->plan->hash_chunk_bytes, c);
}

void pq_job_drop_item(pq_job *j, int item)
{
    if (!j->src_users) return;
    const pq_plan *p = j->plan;
    if (item < 0) {
        drop_chunk(j, -(int64_t)item - 1);
        return;
    }
    int64_t c0, c1;
    unit_chunks(p, &p->units[item], &c0, &c1);
    for (int64_t c = c0; c <= c1; c++) drop_chunk(j, c);
}
