/* SPDX-License-Identifier: Apache-2.0 */
/* test_mem_limit.c - pq_mem_limit_bytes: positive, never above the
 * machine's memory (sysconf), and never above the limit file of this
 * process's own control group where there is one with a number in it
 * (read here from /proc/self/cgroup and /sys/fs/cgroup directly). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem_limit.h"

/* The number in file path, or 0 (absent, "max"). */
static uint64_t number_in(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1) v = 0;
        fclose(f);
    }
    return v;
}

static void test_limit(void **state)
{
    (void)state;
    const uint64_t got = pq_mem_limit_bytes();
    const uint64_t phys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    assert_true(got > 0);
    assert_true(got <= phys);
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024], path[1400];
    int seen = 0;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        uint64_t lim = 0;
        if (!strncmp(line, "0::", 3)) {
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", line + 3);
            lim = number_in(path);
        } else if (strstr(line, ":memory:")) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", strstr(line, ":memory:") + 8);
            lim = number_in(path);
        }
        if (lim) {
            seen++;
            assert_true(got <= lim);
        }
    }
    if (f) fclose(f);
    printf("limit %llu bytes (machine %llu; %d cgroup limit file(s) read)\n", (unsigned long long)got,
           (unsigned long long)phys, seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_limit)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
