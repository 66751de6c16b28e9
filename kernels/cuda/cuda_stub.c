/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_stub.c - the CUDA API of pq_cuda.h for builds without CUDA. */
#include "kernels/pq_cuda.h"

#include <stdio.h>

int pq_cuda_device_count(void) { return 0; }
int pq_cuda_compiled(void) { return 0; }
pq_kstatus pq_cuda_describe(int i, char *buf, int n)
{
    if (n > 0) snprintf(buf, (size_t)n, "CUDA device %d requested but this build has no CUDA support", i);
    return PQ_KNOTBUILT;
}
