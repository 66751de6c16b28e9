/* SPDX-License-Identifier: Apache-2.0 */
/* pq_fault.c - the fault switches, read once (pq_fault.h). */
#include "base/pq_fault.h"

#include <pthread.h>
#include <stdlib.h>

#define MAX_VALUES 16

typedef struct fault_switch {
    const char *env;
    int n;                  /* values listed; 0: not set */
    long v[MAX_VALUES];
} fault_switch;

static fault_switch switches[PQ__FAULT_COUNT] = {
    [PQ_FAULT_FAIL_UNIT] = {.env = "PQ_TEST_FAIL_UNIT"},
    [PQ_FAULT_SLOW_RANK] = {.env = "PQ_TEST_SLOW_RANK"},
    [PQ_FAULT_KILL_RANK] = {.env = "PQ_TEST_KILL_RANK"},
    [PQ_FAULT_FAIL_HASH] = {.env = "PQ_TEST_FAIL_HASH"},
    [PQ_FAULT_FAKE_PLACED] = {.env = "PQ_TEST_FAKE_PLACED"},
    [PQ_FAULT_HASH_CHUNK_BYTES] = {.env = "PQ_TEST_HASH_CHUNK_BYTES"},
    [PQ_FAULT_PLAN_SALT] = {.env = "PQ_TEST_PLAN_SALT"},
    [PQ_FAULT_REMOTE_RANKS] = {.env = "PQ_TEST_REMOTE_RANKS"},
    [PQ_FAULT_KILL_JOURNAL] = {.env = "PQ_TEST_KILL_JOURNAL"},
    [PQ_FAULT_KILL_AT] = {.env = "PQ_TEST_KILL_AT"},
    [PQ_FAULT_KILL_AFTER] = {.env = "PQ_TEST_KILL_AFTER"},
    [PQ_FAULT_DROP_SOURCE] = {.env = "PQ_TEST_DROP_SOURCE"},
    [PQ_FAULT_WRITE_BEHIND] = {.env = "PQ_TEST_WRITE_BEHIND"},
};
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void read_switches(void)
{
    for (int f = 0; f < PQ__FAULT_COUNT; f++) {
        fault_switch *s = &switches[f];
        for (const char *c = getenv(s->env); c && *c && s->n < MAX_VALUES;) {
            char *end;
            long v = strtol(c, &end, 10);
            if (end == c) break;
            s->v[s->n++] = v;
            c = *end == ',' ? end + 1 : end;
        }
    }
}

bool pq_fault_at(pq_fault f, long v)
{
    pthread_once(&once, read_switches);
    for (int i = 0; i < switches[f].n; i++)
        if (switches[f].v[i] == v) return true;
    return false;
}

long pq_fault_value(pq_fault f, long dflt)
{
    pthread_once(&once, read_switches);
    return switches[f].n ? switches[f].v[0] : dflt;
}
