/* SPDX-License-Identifier: Apache-2.0 */
/* test_cpu.c - pq_cpu_count follows this process's affinity mask (read back
 * from /proc/self/status), and a mask of one CPU counts 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "base/pq_cpu.h"

/* CPUs in the kernel's own listing of the mask, e.g. "0-3,8,10-11". */
static int allowed_list_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[4096];
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Cpus_allowed_list:", 18)) continue;
        n = 0;
        for (char *p = line + 18; *p && *p != '\n';) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            if (!*p || *p == '\n') break;
            long a = strtol(p, &p, 10), b = a;
            if (*p == '-') b = strtol(p + 1, &p, 10);
            n += (int)(b - a + 1);
        }
    }
    fclose(f);
    return n;
}

static void test_follows_mask(void **state)
{
    (void)state;
    assert_int_equal(pq_node_cpus(), get_nprocs());
    assert_int_equal(pq_cpu_count(), allowed_list_count());
    assert_true(pq_cpu_count() <= pq_node_cpus());

    cpu_set_t old, one;
    assert_int_equal(sched_getaffinity(0, sizeof old, &old), 0);
    int first = 0;
    while (!CPU_ISSET(first, &old)) first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    assert_int_equal(pq_cpu_count(), 1);
    assert_int_equal(allowed_list_count(), 1);
    assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
    assert_int_equal(pq_cpu_count(), CPU_COUNT(&old));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_follows_mask)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
