/* SPDX-License-Identifier: Apache-2.0 */
/* h5prov.c - a provenance string added to a written model file (h5prov.h). */
#include "format/h5prov.h"

#include <hdf5.h>

#include "format/h5util.h"

pq_status pq_h5_provenance_add(const char *path, const char *key, const char *value)
{
    char eb[256];
    pq_status rc = PQ_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, g = H5I_INVALID_HID;
    pq_h5u_quiet();
    if ((fapl = pq_h5u_fapl_write()) < 0) {
        rc = pq_err(PQ_ERR_INTERNAL, "%s: HDF5 property setup failed: %s", path, pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if ((file = H5Fopen(path, H5F_ACC_RDWR, fapl)) < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: cannot open for writing: %s", path, pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if ((g = H5Gopen2(file, "provenance", H5P_DEFAULT)) < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: no /provenance group: %s", path, pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    rc = pq_h5u_put_str(g, "/provenance", key, value);
cleanup:
    if (g >= 0) H5Gclose(g);
    if (file >= 0 && H5Fclose(file) < 0 && !rc)
        rc = pq_err(PQ_ERR_IO, "%s: close failed: %s", path, pq_h5u_detail(eb, sizeof eb));
    if (fapl >= 0) H5Pclose(fapl);
    return rc;
}
