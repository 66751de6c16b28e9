/* SPDX-License-Identifier: Apache-2.0 */
/* h5vfd.h - the model writer's HDF5 file driver: HDF5's POSIX driver (sec2),
 * through which one raw-data write can be skipped. A direct chunk write of
 * the right size then takes the chunk's file space, at the place the file's
 * layout gives it, without its bytes being written: the writer fills it
 * later (pwrite, also from other ranks). The file's bytes are those the sec2
 * driver gives for the same calls. Internal to engine/format. */
#ifndef PQ_H5VFD_H
#define PQ_H5VFD_H

#include <stddef.h>

#include <hdf5.h>

/* The switch a writer holds: arm it with the size of the write to skip,
 * then make the call; addr is where that write would have gone
 * (HADDR_UNDEF: no write of that size came, the bytes were written). */
typedef struct pq_h5vfd_skip {
    size_t size;   /* 0: nothing armed */
    haddr_t addr;
} pq_h5vfd_skip;

/* Register the driver (one id per writer, H5FDunregister it after the file
 * is closed); < 0 on failure. */
hid_t pq_h5vfd_register(void);

/* Make fapl open files through driver `id`, with skip as their switch (it
 * must outlive every file opened with fapl). < 0 on failure. */
herr_t pq_h5vfd_set_fapl(hid_t fapl, hid_t id, pq_h5vfd_skip *skip);

#endif
