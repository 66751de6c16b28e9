/* SPDX-License-Identifier: Apache-2.0 */
/* mem_limit.c - see mem_limit.h. */
#include "base/mem_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The number in file `path` ("max" or absent: none). */
static uint64_t read_limit(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return UINT64_MAX;
    char buf[64] = "";
    uint64_t v = UINT64_MAX;
    if (fgets(buf, sizeof buf, f) && buf[0] >= '0' && buf[0] <= '9') v = strtoull(buf, NULL, 10);
    fclose(f);
    return v;
}

/* The smallest limit named `file` in folder root + group and the folders
 * above it, up to root. */
static uint64_t walk_up(const char *root, const char *group, const char *file)
{
    char dir[1024], path[1200];
    uint64_t best = UINT64_MAX;
    snprintf(dir, sizeof dir, "%s%s", root, group);
    for (;;) {
        snprintf(path, sizeof path, "%s/%s", dir, file);
        uint64_t v = read_limit(path);
        best = v < best ? v : best;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < strlen(root)) break;
        *slash = '\0';
    }
    return best;
}

uint64_t pq_mem_limit_bytes(void)
{
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t best = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "id:controllers:path"; v2 has id 0 and no controllers */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *ctl = c1 + 1, *group = c2 + 1;
        uint64_t v = UINT64_MAX;
        if (!*ctl) {
            v = walk_up("/sys/fs/cgroup", group, "memory.max");
            uint64_t u = walk_up("/sys/fs/cgroup/unified", group, "memory.max");
            v = u < v ? u : v;
        } else if (strstr(ctl, "memory")) {
            v = walk_up("/sys/fs/cgroup/memory", group, "memory.limit_in_bytes");
        }
        best = v < best ? v : best;
    }
    if (f) fclose(f);
    return best == UINT64_MAX ? 0 : best;
}
