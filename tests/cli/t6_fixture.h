/* SPDX-License-Identifier: Apache-2.0 */
/* t6_fixture.h - a synthetic esm2_t6_8M checkpoint in a fresh temporary
 * folder, for the unit tests that need a real one. */
#ifndef PQ_T6_FIXTURE_H
#define PQ_T6_FIXTURE_H

#include <stdint.h>

/* Make /tmp/pq_TAG_XXXXXX (its name into dir) holding DIR/t6.safetensors
 * (into model), fp32, the given seed. 0, or -1 when it cannot be made. */
int pq_t6_fixture_make(const char *tag, uint64_t seed, char dir[256], char model[300]);

/* Remove the folder and all it holds: 0, or -1. */
int pq_t6_fixture_remove(const char *dir);

#endif
