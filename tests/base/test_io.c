/* SPDX-License-Identifier: Apache-2.0 */
/* test_io.c - the partial-then-rename protocol: the name, a publish that
 * leaves only the final file with the bytes written, and the step named when
 * the partial file is missing or the rename cannot happen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_io.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pq_test_io.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void test_partial_name(void **state)
{
    (void)state;
    char buf[32];
    assert_int_equal(pq_partial_name(buf, sizeof buf, "out/m.h5"), 0);
    assert_string_equal(buf, "out/m.h5.partial");
    /* "x.h5" + ".partial" + NUL = 13 bytes: fits in 13, not in 12 */
    assert_int_equal(pq_partial_name(buf, 13, "x.h5"), 0);
    assert_string_equal(buf, "x.h5.partial");
    assert_int_equal(pq_partial_name(buf, 12, "x.h5"), ENAMETOOLONG);
    char *dup = pq_partial_dup("out/m.h5");
    assert_non_null(dup);
    assert_string_equal(dup, "out/m.h5.partial");
    free(dup);
}

static void test_publish(void **state)
{
    (void)state;
    char final[128], partial[160];
    snprintf(final, sizeof final, "%s/m.h5", dir);
    assert_int_equal(pq_partial_name(partial, sizeof partial, final), 0);
    FILE *f = fopen(partial, "w");
    assert_non_null(f);
    fputs("complete", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(pq_publish(partial, final), PQ_OK);
    assert_int_equal(access(partial, F_OK), -1);
    char got[16] = "";
    f = fopen(final, "r");
    assert_non_null(f);
    assert_non_null(fgets(got, sizeof got, f));
    fclose(f);
    assert_string_equal(got, "complete");
}

static void test_publish_failures(void **state)
{
    (void)state;
    char partial[128], final[160], want[400];
    snprintf(partial, sizeof partial, "%s/never-written.partial", dir);
    pq_err_clear();
    assert_int_equal(pq_publish(partial, "unused"), PQ_ERR_IO);
    snprintf(want, sizeof want, "%s: fsync to unused failed: %s", partial, strerror(ENOENT));
    assert_string_equal(pq_err_detail(), want);

    snprintf(partial, sizeof partial, "%s/n.partial", dir);
    snprintf(final, sizeof final, "%s/no-such-dir/n.h5", dir);
    FILE *f = fopen(partial, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    pq_err_clear();
    assert_int_equal(pq_publish(partial, final), PQ_ERR_IO);
    snprintf(want, sizeof want, "%s: rename to %s failed: %s", partial, final, strerror(ENOENT));
    assert_string_equal(pq_err_detail(), want);
    assert_int_equal(access(partial, F_OK), 0); /* left for the caller to remove */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partial_name),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_publish_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
