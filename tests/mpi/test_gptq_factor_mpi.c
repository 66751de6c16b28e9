/* SPDX-License-Identifier: Apache-2.0 */
/* test_gptq_factor_mpi.c - the GPTQ factor shared by the ranks of an MPI
 * run (worker/gptq_comm.c's comm, quant/gptq_factor.h's blocks): rank 0
 * writes the factor's image, which must be the same bytes for any rank and
 * thread count (tests/mpi/test_gptq_factor_mpi.sh compares them), and
 * checks it against LAPACK's unblocked route within fp32 rounding.
 * Usage: test_gptq_factor_mpi OUT THREADS [act-order] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "model/blas.h"
#include "quant/gptq.h"
#include "worker/gptq_comm.h"

enum { D = 150, NB = 16, T = 300 };

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank, n;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n);
    if (argc < 3) {
        if (!rank) fprintf(stderr, "usage: test_gptq_factor_mpi OUT THREADS [act-order]\n");
        MPI_Finalize();
        return 2;
    }
    /* H = X^T X / T, X uniform from a fixed LCG, one column dead: the same
     * on every rank, as the Hessian sum leaves it */
    double *x = malloc((size_t)T * D * sizeof *x), *H = calloc((size_t)D * D, sizeof *H);
    uint64_t seed = 42;
    for (int k = 0; k < T * D; k++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        x[k] = (k % D == 7) ? 0.0 : (double)(seed >> 11) / 9007199254740992.0 - 0.5 + 0.01 * (k % D);
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int r = 0; r < T; r++) s += x[r * D + i] * x[r * D + j];
            H[i * D + j] = s / T;
        }
    double *H0 = malloc((size_t)D * D * sizeof *H0);
    memcpy(H0, H, (size_t)D * D * sizeof *H0);
    pq_gptq_comm gc = pq_gptq_comm_mpi(&comm, rank, n);
    const pq_factor_comm fc = {.rank = rank, .n_ranks = n, .bcast = gc.bcast_bytes, .agree = gc.agree,
                               .user = gc.user};
    pq_gptq_opts o = PQ_GPTQ_OPTS_DEFAULT;
    o.act_order = argc > 3 && !strcmp(argv[3], "act-order");
    pq_gptq_factor *f = NULL;
    pq_status st = pq_gptq_prepare_with(H, D, &o, "test", &fc, NB, atoi(argv[2]), &f);
    int rc = 0;
    if (st) {
        fprintf(stderr, "rank %d: %s\n", rank, pq_err_detail());
        rc = 1;
    }
    const size_t nbytes = pq_gptq_factor_image_bytes(D);
    unsigned char *img = malloc(nbytes);
    if (!rc) pq_gptq_factor_to_image(f, img);
    /* every rank holds the same factor */
    unsigned char *r0 = malloc(nbytes);
    if (!rc) memcpy(r0, img, nbytes);
    MPI_Bcast(r0, (int)nbytes, MPI_BYTE, 0, comm);
    if (!rc && memcmp(r0, img, nbytes)) {
        fprintf(stderr, "rank %d: its factor differs from rank 0's\n", rank);
        rc = 1;
    }
    if (!rc && rank == 0) {
        /* LAPACK's unblocked route on the permuted, damped H (dead column:
         * H_ii = 1): dpotrf, dpotri, dpotrf(upper) */
        const float *U = (const float *)(img + nbytes - D - (size_t)D * D * sizeof(float));
        const int64_t *perm = (const int64_t *)(img + nbytes - D - (size_t)D * D * sizeof(float) - D * sizeof(int64_t));
        double *A = malloc((size_t)D * D * sizeof *A), mean = 0;
        for (int i = 0; i < D; i++) {
            if (H0[i * D + i] == 0) H0[i * D + i] = 1;
            mean += H0[i * D + i] / D;
        }
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++) A[a * D + b] = H0[perm[a] * D + perm[b]];
        for (int i = 0; i < D; i++) A[i * D + i] += 0.01 * mean;
        int info = 0, d = D, ok = 1;
        ok &= !pq_dpotrf('L', d, A, d, &info) && !info;
        ok &= !pq_dpotri('L', d, A, d, &info) && !info;
        for (int c = 0; c < D; c++)
            for (int r = 0; r < c; r++) A[r + c * D] = A[c + r * D];
        ok &= !pq_dpotrf('U', d, A, d, &info) && !info;
        double mx = 0, err = 0;
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) {
                const double ref = j >= i ? A[i + j * D] : 0.0;
                mx = fmax(mx, fabs(ref));
                err = fmax(err, fabs(ref - U[i * D + j]));
            }
        if (!ok || !(err <= 1e-5 * mx)) {
            fprintf(stderr, "the factor is %g (max %g) from LAPACK's unblocked one\n", err, mx);
            rc = 1;
        }
        FILE *fp = fopen(argv[1], "wb");
        if (!fp || fwrite(img, 1, nbytes, fp) != nbytes) rc = 1;
        if (fp) fclose(fp);
        free(A);
    }
    int all = 0;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, comm);
    pq_gptq_factor_free(f);
    free(img);
    free(r0);
    free(x);
    free(H);
    free(H0);
    MPI_Finalize();
    return all;
}
