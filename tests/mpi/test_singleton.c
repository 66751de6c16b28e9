/* SPDX-License-Identifier: Apache-2.0 */
/* test_singleton.c - the settings pq_mpi_start gives a process that no
 * launcher started (mpi_start.h): set when no launcher variable is there,
 * never over the user's own values, and not at all under a launcher. Runs
 * as a plain process: it never calls MPI_Init. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "worker/mpi_start.h"

static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
static const char *const set_vars[] = {"OMPI_MCA_ess_singleton_isolated", "OMPI_MCA_pml",
                                       "HWLOC_PLUGINS_BLACKLIST"};

static int clean(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) unsetenv(launcher_vars[i]);
    for (int i = 0; i < 3; i++) unsetenv(set_vars[i]);
    return 0;
}

static void test_singleton_gets_them(void **state)
{
    (void)state;
    assert_true(pq_mpi_singleton_settings());
    assert_string_equal(getenv("OMPI_MCA_ess_singleton_isolated"), "1");
    assert_string_equal(getenv("OMPI_MCA_pml"), "ob1");
    assert_string_equal(getenv("HWLOC_PLUGINS_BLACKLIST"), "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml");
}

static void test_user_values_win(void **state)
{
    (void)state;
    setenv("OMPI_MCA_pml", "ucx", 1);
    setenv("OMPI_MCA_ess_singleton_isolated", "0", 1);
    assert_true(pq_mpi_singleton_settings());
    assert_string_equal(getenv("OMPI_MCA_pml"), "ucx");
    assert_string_equal(getenv("OMPI_MCA_ess_singleton_isolated"), "0");
    assert_non_null(getenv("HWLOC_PLUGINS_BLACKLIST"));
}

static void test_launched_processes_keep_theirs(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        clean(NULL);
        setenv(launcher_vars[i], "0", 1);
        assert_false(pq_mpi_singleton_settings());
        for (int k = 0; k < 3; k++) assert_null(getenv(set_vars[k]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_singleton_gets_them, clean),
        cmocka_unit_test_setup(test_user_values_win, clean),
        cmocka_unit_test_setup(test_launched_processes_keep_theirs, clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
