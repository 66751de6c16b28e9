/* SPDX-License-Identifier: Apache-2.0 */
/* t6_fixture.c - see t6_fixture.h. */
#include "t6_fixture.h"

#include <stdio.h>
#include <stdlib.h>

#include "format/synth.h"

int pq_t6_fixture_make(const char *tag, uint64_t seed, char dir[256], char model[300])
{
    snprintf(dir, 256, "/tmp/pq_%s_XXXXXX", tag);
    if (!mkdtemp(dir)) return -1;
    snprintf(model, 300, "%s/t6.safetensors", dir);
    return pq_synth_write(pq_esm2_arch_find("esm2_t6_8M_UR50D"), seed, PQ_DT_F32, model) == PQ_OK ? 0 : -1;
}

int pq_t6_fixture_remove(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}
