/* SPDX-License-Identifier: Apache-2.0 */
/* bundled.c - the places the bundled data is looked for (bundled.h). */
#include "base/bundled.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pq_config.h"

/* Try dir/rel; on failure append it to tried. */
static bool try_dir(const char *dir, const char *rel, char *buf, size_t n, char *tried, size_t tn)
{
    int len = snprintf(buf, n, "%s/%s", dir, rel);
    if (len > 0 && (size_t)len < n && access(buf, R_OK) == 0) return true;
    if (tried && tn) {
        size_t used = strlen(tried);
        if (used < tn) snprintf(tried + used, tn - used, "%s%s/%s", used ? ", " : "", dir, rel);
    }
    buf[0] = '\0';
    return false;
}

bool pq_bundled_find(const char *rel, char *buf, size_t n, char *tried, size_t tn)
{
    if (tried && tn) tried[0] = '\0';
    const char *env = getenv("PROTEUS_DATA_DIR");
    if (env && *env) return try_dir(env, rel, buf, n, tried, tn);

    char exe[PATH_MAX], dir[PATH_MAX + 32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = NULL;
    if (len > 0) {
        exe[len] = '\0';
        slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
    }
    if (slash) {
        snprintf(dir, sizeof dir, "%s/../share/proteus", exe);
        if (try_dir(dir, rel, buf, n, tried, tn)) return true;
    }
    if (try_dir(PQ_INSTALL_DATADIR, rel, buf, n, tried, tn)) return true;
    if (try_dir(PQ_SOURCE_DATADIR, rel, buf, n, tried, tn)) return true;
    if (slash) {
        static const char *const up[] = {"/../data", "/../../data"};
        for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
            snprintf(dir, sizeof dir, "%s%s", exe, up[i]);
            if (try_dir(dir, rel, buf, n, tried, tn)) return true;
        }
    }
    return false;
}
