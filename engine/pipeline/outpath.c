/* SPDX-License-Identifier: Apache-2.0 */
/* outpath.c - an output path checked before any work (outpath.h). */
#include "pipeline/outpath.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder OUT.partial goes into must exist and take new files. */
static pq_status check_out_dir(const char *opt, const char *out)
{
    size_t n = strlen(out);
    char *dir = malloc(n + 2);
    if (!dir) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    memcpy(dir, out, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    pq_status st = PQ_OK;
    if (access(dir, W_OK | X_OK) != 0)
        st = pq_err(PQ_ERR_IO, "%s %s: cannot create files in %s: %s", opt, out, dir, strerror(errno));
    free(dir);
    return st;
}

pq_status pq_out_check(const char *opt, const char *out, const char *const *inputs, int n_inputs)
{
    struct stat so, si;
    if (!out) return PQ_OK;
    pq_status st = check_out_dir(opt, out);
    if (st || stat(out, &so) != 0) return st;
    /* found now, not by the rename after all the work */
    if (S_ISDIR(so.st_mode))
        return pq_err(PQ_ERR_CONFIG, "%s %s is a directory; name the output file", opt, out);
    if (!S_ISREG(so.st_mode)) return PQ_OK;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && stat(inputs[i], &si) == 0 && S_ISREG(si.st_mode) && si.st_dev == so.st_dev &&
            si.st_ino == so.st_ino)
            return pq_err(PQ_ERR_CONFIG, "%s %s is the input file %s: writing it would destroy the input; "
                          "choose another path", opt, out, inputs[i]);
    return PQ_OK;
}
