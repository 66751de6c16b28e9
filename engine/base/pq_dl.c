/* SPDX-License-Identifier: Apache-2.0 */
/* pq_dl.c - see pq_dl.h. */
#include "base/pq_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static pq_status load(pq_dl_lib *lib)
{
    if (lib->before) lib->before();
    void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(lib->why, sizeof lib->why, "cannot load %s (install %s): %s", lib->soname, lib->package,
                 e ? e : "unknown reason");
        return lib->kind;
    }
    for (int i = 0; i < lib->n_syms; i++) {
        const pq_dl_sym *s = &lib->syms[i];
        dlerror();
        *s->fn = dlsym(h, s->name);
        if (!*s->fn && !s->optional) {
            snprintf(lib->why, sizeof lib->why, "%s has no function %s: not the library this build expects",
                     lib->soname, s->name);
            for (int k = 0; k < lib->n_syms; k++) *lib->syms[k].fn = NULL;
            dlclose(h);
            return lib->kind;
        }
    }
    if (lib->loaded) lib->loaded();
    return PQ_OK; /* the handle stays open for the life of the process */
}

pq_status pq_dl_load(pq_dl_lib *lib)
{
    pthread_mutex_lock(&mu);
    if (!lib->tried) {
        lib->st = load(lib);
        lib->tried = true;
    }
    pq_status st = lib->st;
    pthread_mutex_unlock(&mu);
    return st ? pq_err(st, "%s", lib->why) : PQ_OK;
}
