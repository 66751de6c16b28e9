/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_stub.c - the CUDA API of pq_cuda.h for builds without CUDA. */
#include "kernels/pq_cuda.h"

int pq_cuda_device_count(void) { return 0; }
int pq_cuda_compiled(void) { return 0; }
pq_status pq_cuda_describe(int i, char *buf, int n)
{
    (void)buf; (void)n;
    return pq_err(PQ_ERR_HARDWARE, "CUDA device %d requested but this build has no CUDA support", i);
}
