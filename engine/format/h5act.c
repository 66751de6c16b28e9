/* SPDX-License-Identifier: Apache-2.0 */
/* h5act.c - read the static input (activation) qparams of a quantized tensor:
 * /tensors/<name>/act_scale and the optional act_zero_point (FORMAT.md). */
#include <math.h>
#include <stdio.h>

#include "format/h5model.h"
#include "format/h5util.h"

static pq_status read_one(hid_t g, const char *path, const char *name, const char *ds, hid_t mem,
                          void *dst, bool *found)
{
    char eb[256];
    htri_t ex = H5Lexists(g, ds, H5P_DEFAULT);
    if (ex < 0) {
        H5Eclear2(H5E_DEFAULT);
        return pq_err(PQ_ERR_FORMAT, "%s: /tensors/%s/%s: corrupt group", path, name, ds);
    }
    *found = ex > 0;
    if (!ex) return PQ_OK;
    hid_t d = H5Dopen2(g, ds, H5P_DEFAULT);
    if (d < 0)
        return pq_err(PQ_ERR_FORMAT, "%s: /tensors/%s/%s: %s", path, name, ds, pq_h5u_detail(eb, sizeof eb));
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    hssize_t npts = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    pq_status st = PQ_OK;
    char w[400];
    snprintf(w, sizeof w, "/tensors/%s/%s", name, ds);
    if (npts != 1)
        st = pq_err(PQ_ERR_FORMAT, "%s: %s holds %lld values, expected 1", path, w, (long long)npts);
    else if (t < 0 || H5Tget_class(t) != H5Tget_class(mem) || H5Tget_size(t) != 4)
        st = pq_err(PQ_ERR_FORMAT, "%s: %s is not %s", path, w, H5Tget_class(mem) == H5T_FLOAT ? "float32" : "int32");
    else if (!pq_h5u_has_fletcher32(d))
        st = pq_err(PQ_ERR_FORMAT, "%s: %s: no Fletcher-32 checksum", path, w);
    else if (H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        st = pq_h5u_read_fail(path, w);
    H5Eclear2(H5E_DEFAULT);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return st;
}

pq_status pq_h5_read_act_qparams(const char *path, const char *name, float *scale, int32_t *zp,
                                 bool *found)
{
    char eb[256], where[600];
    *found = false;
    *scale = 0.0f;
    *zp = 0;
    pq_h5u_quiet();
    /* the same close degree as the reader, which may hold the file open */
    hid_t f = pq_h5u_open_ro(path);
    if (f < 0) return pq_err(PQ_ERR_FORMAT, "%s: cannot open: %s", path, pq_h5u_detail(eb, sizeof eb));
    snprintf(where, sizeof where, "/tensors/%s", name);
    pq_status st = PQ_OK;
    hid_t g = H5Gopen2(f, where, H5P_DEFAULT);
    if (g < 0) {
        st = pq_err(PQ_ERR_FORMAT, "%s: %s: no such tensor group", path, where);
        H5Eclear2(H5E_DEFAULT);
        goto done;
    }
    bool has_zp = false;
    if ((st = read_one(g, path, name, "act_scale", H5T_NATIVE_FLOAT, scale, found)) != PQ_OK) goto done;
    if (*found && (st = read_one(g, path, name, "act_zero_point", H5T_NATIVE_INT32, zp, &has_zp)) != PQ_OK)
        goto done;
    if (*found && (!(*scale > 0.0f) || !isfinite(*scale)))
        st = pq_err(PQ_ERR_FORMAT, "%s: %s/act_scale is %g, not a positive number", path, where, (double)*scale);
    else if (has_zp && (*zp < -128 || *zp > 127))
        st = pq_err(PQ_ERR_FORMAT, "%s: %s/act_zero_point is %d, outside [-128, 127]", path, where, (int)*zp);
done:
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return st;
}
