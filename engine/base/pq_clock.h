/* SPDX-License-Identifier: Apache-2.0 */
/* pq_clock.h - the one monotonic clock every phase timer reads. */
#ifndef PQ_CLOCK_H
#define PQ_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin): differences only. */
static inline double pq_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
