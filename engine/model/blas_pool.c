/* SPDX-License-Identifier: Apache-2.0 */
/* blas_pool.c - see blas_pool.h. */
#include "blas_pool.h"

#include <stddef.h>

/* Exported by OpenBLAS's pthread server (its fork handler); weak, because
 * the libopenblas.so.0 picked at run time may be the OpenMP or serial
 * build, which may not have it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

void pq_blas_pool_park(void)
{
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}
