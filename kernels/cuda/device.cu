/* SPDX-License-Identifier: Apache-2.0 */
/* device.cu - CUDA device discovery behind the C API of pq_cuda.h. */
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" {
#include "kernels/pq_cuda.h"

int pq_cuda_compiled(void) { return 1; }

int pq_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

pq_kstatus pq_cuda_describe(int i, char *buf, int n)
{
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, i);
    if (e != cudaSuccess) {
        snprintf(buf, (size_t)n, "CUDA device %d: %s", i, cudaGetErrorString(e));
        return PQ_KBADARG;
    }
    snprintf(buf, (size_t)n, "%s, %.1f GiB, sm_%d%d", p.name,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.major, p.minor);
    return PQ_KOK;
}
}
