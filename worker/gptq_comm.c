/* SPDX-License-Identifier: Apache-2.0 */
/* gptq_comm.c - GPTQ's collectives over MPI (gptq_comm.h).
 *
 * The Hessian words are summed as 128-bit integers (quant/hessian.h: an
 * entry is two uint64 words, low first; the last two words, the token
 * count and the overflow count, add the same way without a carry, since a
 * token count stays far below 2^64). The reduction's datatype is that
 * 128-bit pair, so an MPI library that cuts the buffer into segments cuts
 * between entries. Integer sums are exact in any order: the result does not
 * depend on the reduction's tree. Each rank's entries stay below 2^64 in
 * magnitude, so below 2^63 ranks the 128-bit sum cannot overflow. */
#include "worker/gptq_comm.h"

#include "proto/msg.h"
#include "worker/sync.h"

static void add128(void *in, void *inout, int *len, MPI_Datatype *type)
{
    const uint64_t *a = in;
    uint64_t *b = inout;
    (void)type;
    for (int i = 0; i < *len; i++) {
        uint64_t lo = b[2 * i] + a[2 * i];
        b[2 * i + 1] += a[2 * i + 1] + (lo < a[2 * i]);
        b[2 * i] = lo;
    }
}

static pq_status mpi_allreduce(void *user, pq_hessian *h)
{
    MPI_Comm comm = *(MPI_Comm *)user;
    MPI_Datatype pair = MPI_DATATYPE_NULL;
    MPI_Op op = MPI_OP_NULL;
    uint64_t *w;
    int64_t n;
    pq_hessian_words(h, &w, &n);
    pq_status st = pq_mpi_check(MPI_Type_contiguous(2, MPI_UINT64_T, &pair), "MPI_Type_contiguous");
    if (!st) st = pq_mpi_check(MPI_Type_commit(&pair), "MPI_Type_commit");
    if (!st) st = pq_mpi_check(MPI_Op_create(add128, 1, &op), "MPI_Op_create");
    /* in pieces of at most 2^30 entries: MPI counts are int */
    for (int64_t k = 0; !st && k < n / 2;) {
        int64_t m = n / 2 - k > (1 << 30) ? (1 << 30) : n / 2 - k;
        st = pq_mpi_check(MPI_Allreduce(MPI_IN_PLACE, w + 2 * k, (int)m, pair, op, comm),
                          "summing the GPTQ Hessians over the ranks");
        k += m;
    }
    if (op != MPI_OP_NULL) MPI_Op_free(&op);
    if (pair != MPI_DATATYPE_NULL) MPI_Type_free(&pair);
    return st;
}

/* n bytes from owner, in pieces that fit MPI's int counts */
static pq_status mpi_bcast_bytes(void *user, int owner, void *buf, size_t n)
{
    MPI_Comm comm = *(MPI_Comm *)user;
    pq_status st = PQ_OK;
    for (size_t off = 0; !st && off < n;) {
        size_t m = n - off > (1u << 30) ? (1u << 30) : n - off;
        st = pq_mpi_check(MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, owner, comm), "sharing GPTQ data");
        off += m;
    }
    return st;
}

static pq_status mpi_bcast(void *user, int owner, pq_unit_result *r, const pq_unit_layout *l)
{
    pq_result_part parts[PQ_RESULT_PARTS];
    pq_unit_result_parts(r, l, parts);
    pq_status st = mpi_bcast_bytes(user, owner, &r->n_nonfinite, sizeof r->n_nonfinite);
    for (int i = 0; i < PQ_RESULT_PARTS && !st; i++)
        if (parts[i].bytes) st = mpi_bcast_bytes(user, owner, *parts[i].data, parts[i].bytes);
    return st;
}

static pq_status mpi_agree(void *user, pq_status local)
{
    return pq_sync_agree(*(MPI_Comm *)user, local);
}

pq_gptq_comm pq_gptq_comm_mpi(MPI_Comm *comm, int rank, int n_ranks)
{
    return (pq_gptq_comm){.rank = rank, .n_ranks = n_ranks, .allreduce = mpi_allreduce, .bcast = mpi_bcast,
                          .bcast_bytes = mpi_bcast_bytes, .agree = mpi_agree, .user = comm};
}
