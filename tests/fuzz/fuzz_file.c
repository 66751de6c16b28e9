/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_file.c - private temporary directory and input files of a harness. */
#include "fuzz_file.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_err.h"

static char dir[256];
static char paths[4][320];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_dir(void)
{
    if (dir[0]) nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

const char *pq_fuzz_dir(void)
{
    if (dir[0]) return dir;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pq_fuzz.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        perror("pq_fuzz_dir: mkdtemp");
        abort();
    }
    atexit(rm_dir);
    return dir;
}

const char *pq_fuzz_write(int slot, const char *name, const uint8_t *data, size_t n)
{
    char *p = paths[slot & 3];
    snprintf(p, sizeof paths[0], "%s/%s", pq_fuzz_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

void pq_fuzz_check_status(int st)
{
    if (st < PQ_OK || st >= PQ__ERR_COUNT || st == PQ_ERR_INTERNAL) {
        fprintf(stderr, "fuzz: status %d outside the enum or internal: %s\n", st, pq_err_detail());
        abort();
    }
    if (st != PQ_OK && !pq_err_detail()[0]) {
        fprintf(stderr, "fuzz: status %d (%s) without a detail line\n", st, pq_strerror((pq_status)st));
        abort();
    }
    pq_err_clear();
}
