/* SPDX-License-Identifier: Apache-2.0 */
/* h5vfd.c - a pass-through to HDF5's sec2 driver that can skip one raw-data
 * write (h5vfd.h). Every callback hands its call to an inner sec2 file
 * through HDF5's public H5FD* functions; the driver has sec2's feature
 * flags, so HDF5 lays the file out exactly as with sec2, and no driver
 * information goes into the file. */
#include "format/h5vfd.h"

#include <stdlib.h>

typedef struct vfd_fa {
    pq_h5vfd_skip *skip;
} vfd_fa;

typedef struct vfd_file {
    H5FD_t pub;          /* first: HDF5 fills it in */
    H5FD_t *inner;       /* the sec2 file */
    pq_h5vfd_skip *skip;
} vfd_file;

static H5FD_t *inner_of(const H5FD_t *f)
{
    return ((const vfd_file *)f)->inner;
}

static void *fa_copy(const void *fa)
{
    vfd_fa *c = malloc(sizeof *c);
    if (c) *c = *(const vfd_fa *)fa;
    return c;
}

static herr_t fa_free(void *fa)
{
    free(fa);
    return 0;
}

static void *fa_get(H5FD_t *f)
{
    vfd_fa fa = {((vfd_file *)f)->skip};
    return fa_copy(&fa);
}

static H5FD_t *vfd_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    const vfd_fa *fa = H5Pget_driver_info(fapl);
    vfd_file *f = calloc(1, sizeof *f);
    hid_t sec = H5Pcopy(fapl);
    if (f && fa && sec >= 0 && H5Pset_fapl_sec2(sec) >= 0) f->inner = H5FDopen(name, flags, sec, maxaddr);
    if (sec >= 0) H5Pclose(sec);
    if (!f || !f->inner) {
        free(f);
        return NULL;
    }
    f->skip = fa->skip;
    return &f->pub;
}

static herr_t vfd_close(H5FD_t *f)
{
    herr_t r = H5FDclose(inner_of(f));
    free(f);
    return r;
}

static int vfd_cmp(const H5FD_t *a, const H5FD_t *b)
{
    return H5FDcmp(inner_of(a), inner_of(b));
}

static herr_t vfd_query(const H5FD_t *f, unsigned long *flags)
{
    if (f) return H5FDquery(inner_of(f), flags) < 0 ? -1 : 0;
    return H5FDdriver_query(H5FD_SEC2, flags);
}

static haddr_t vfd_get_eoa(const H5FD_t *f, H5FD_mem_t type)
{
    return H5FDget_eoa(inner_of(f), type);
}

static herr_t vfd_set_eoa(H5FD_t *f, H5FD_mem_t type, haddr_t addr)
{
    return H5FDset_eoa(inner_of(f), type, addr);
}

static haddr_t vfd_get_eof(const H5FD_t *f, H5FD_mem_t type)
{
    return H5FDget_eof(inner_of(f), type);
}

static herr_t vfd_get_handle(H5FD_t *f, hid_t fapl, void **handle)
{
    return H5FDget_vfd_handle(inner_of(f), fapl, handle);
}

static herr_t vfd_read(H5FD_t *f, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buf)
{
    return H5FDread(inner_of(f), type, dxpl, addr, size, buf);
}

static herr_t vfd_write(H5FD_t *f, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buf)
{
    pq_h5vfd_skip *s = ((vfd_file *)f)->skip;
    if (s && s->size && s->size == size && type == H5FD_MEM_DRAW && s->addr == HADDR_UNDEF) {
        s->addr = addr;
        return 0;
    }
    return H5FDwrite(inner_of(f), type, dxpl, addr, size, buf);
}

static herr_t vfd_flush(H5FD_t *f, hid_t dxpl, hbool_t closing)
{
    return H5FDflush(inner_of(f), dxpl, closing);
}

static herr_t vfd_truncate(H5FD_t *f, hid_t dxpl, hbool_t closing)
{
    return H5FDtruncate(inner_of(f), dxpl, closing);
}

static herr_t vfd_lock(H5FD_t *f, hbool_t rw)
{
    return H5FDlock(inner_of(f), rw);
}

static herr_t vfd_unlock(H5FD_t *f)
{
    return H5FDunlock(inner_of(f));
}

static const H5FD_class_t vfd_class = {
    .name = "proteus_sec2_skip",
    .maxaddr = ((haddr_t)1 << 63) - 1, /* sec2's: the largest off_t */
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof(vfd_fa),
    .fapl_get = fa_get,
    .fapl_copy = fa_copy,
    .fapl_free = fa_free,
    .open = vfd_open,
    .close = vfd_close,
    .cmp = vfd_cmp,
    .query = vfd_query,
    .get_eoa = vfd_get_eoa,
    .set_eoa = vfd_set_eoa,
    .get_eof = vfd_get_eof,
    .get_handle = vfd_get_handle,
    .read = vfd_read,
    .write = vfd_write,
    .flush = vfd_flush,
    .truncate = vfd_truncate,
    .lock = vfd_lock,
    .unlock = vfd_unlock,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

hid_t pq_h5vfd_register(void)
{
    return H5FDregister(&vfd_class);
}

herr_t pq_h5vfd_set_fapl(hid_t fapl, hid_t id, pq_h5vfd_skip *skip)
{
    vfd_fa fa = {skip};
    return H5Pset_driver(fapl, id, &fa);
}
