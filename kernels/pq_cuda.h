/* SPDX-License-Identifier: Apache-2.0 */
/* pq_cuda.h - the small C API through which the rest of Proteus reaches CUDA.
 * Without CUDA at build time the same functions exist and report that. */
#ifndef PQ_CUDA_H
#define PQ_CUDA_H

#include "kernels/pq_kernels.h"

/* Number of usable CUDA devices (0 when none or not built with CUDA). */
int pq_cuda_device_count(void);
/* Whether this build has CUDA support compiled in. */
int pq_cuda_compiled(void);
/* One line describing device `i` into buf (name, memory, compute capability);
 * on failure buf says why: PQ_KNOTBUILT without CUDA, PQ_KBADARG when the
 * device cannot be queried. */
pq_kstatus pq_cuda_describe(int i, char *buf, int n);

#endif
