/* SPDX-License-Identifier: Apache-2.0 */
/* h5smooth.c - write and read /smoothquant (h5smooth.h, docs/FORMAT.md). */
#include "format/h5smooth.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/esm2.h"
#include "format/h5util.h"

#define GROUP "smoothquant"

static pq_status h5fail(const char *where, const char *what)
{
    char d[256];
    pq_h5u_detail(d, sizeof d);
    return pq_err(PQ_ERR_IO, "%s: %s failed: %s", where, what, d);
}

/* One float32 vector: one chunk with the Fletcher-32 checksum, written whole. */
static pq_status put_vec(hid_t g, const char *where, const char *name, int64_t n, const float *v)
{
    pq_status st = PQ_OK;
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL), d = H5I_INVALID_HID, dcpl = pq_h5u_dcpl(1, &dims, dims, false);
    if (sp < 0 || dcpl < 0 ||
        (d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
        (n && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0))
        st = h5fail(where, name);
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return st;
}

/* "esm.encoder.layer.N.attention.LayerNorm" and the Linears a site feeds. */
static void site_names(const pq_smooth_site *ss, char *ln, size_t nl, char *lin, size_t nlin)
{
    char a[128], b[128], c[128];
    pq_esm2_name(ss->kind == PQ_SITE_ATTN_IN ? PQ_ESM2_LN_ATTN_W : PQ_ESM2_LN_FFN_W, ss->layer, a, sizeof a);
    char *dot = strrchr(a, '.');
    if (dot) *dot = '\0';
    snprintf(ln, nl, "%s", a);
    if (ss->kind == PQ_SITE_ATTN_IN) {
        pq_esm2_name(PQ_ESM2_Q, ss->layer, a, sizeof a);
        pq_esm2_name(PQ_ESM2_K, ss->layer, b, sizeof b);
        pq_esm2_name(PQ_ESM2_V, ss->layer, c, sizeof c);
        snprintf(lin, nlin, "%s,%s,%s", a, b, c);
    } else {
        pq_esm2_name(PQ_ESM2_FC1, ss->layer, a, sizeof a);
        snprintf(lin, nlin, "%s", a);
    }
}

pq_status pq_h5w_put_smooth(pq_h5w *w, const pq_smooth *s)
{
    pq_status st = PQ_OK;
    pq_h5u_quiet();
    hid_t f = pq_h5w_file_id(w);
    if (f < 0) return pq_err(PQ_ERR_INTERNAL, "pq_h5w_put_smooth: no open writer");
    const char *where = "/" GROUP;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;
    if (gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0 ||
        (g = H5Gcreate2(f, GROUP, H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        st = h5fail(where, "group create");
        goto cleanup;
    }
    if ((st = pq_h5u_put_str(g, where, "method", "smoothquant")) ||
        (st = pq_h5u_put_f64(g, where, "alpha", s->alpha)) ||
        (st = pq_h5u_put_i32(g, where, "num_layers", s->num_layers)) ||
        (st = pq_h5u_put_str(g, where, "act_scales", "rescaled")))
        goto cleanup;
    for (int i = 0; i < s->n_sites && !st; i++) {
        const pq_smooth_site *ss = &s->sites[i];
        char sw[96], ln[160], lin[480];
        snprintf(sw, sizeof sw, "%s/%s", where, ss->site);
        site_names(ss, ln, sizeof ln, lin, sizeof lin);
        hid_t sg = H5Gcreate2(g, ss->site, H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (sg < 0) { st = h5fail(sw, "group create"); break; }
        if (!(st = pq_h5u_put_i32(sg, sw, "layer", ss->layer)) &&
            !(st = pq_h5u_put_str(sg, sw, "layer_norm", ln)) &&
            !(st = pq_h5u_put_str(sg, sw, "linears", lin)) &&
            !(st = put_vec(sg, sw, "scale", ss->dim, ss->s)) &&
            !(st = ss->act_absmax ? put_vec(sg, sw, "act_absmax", ss->dim, ss->act_absmax) : PQ_OK))
            st = ss->w_absmax ? put_vec(sg, sw, "weight_absmax", ss->dim, ss->w_absmax) : PQ_OK;
        H5Gclose(sg);
    }
cleanup:
    if (g >= 0) H5Gclose(g);
    if (gcpl >= 0) H5Pclose(gcpl);
    return st;
}

/* Dataset `name` of g, exactly n floats, into dst; *found false when absent.
 * Every value finite and non-negative; > 0 too when `factor` (a smoothing
 * factor divides the activations). */
static pq_status get_vec(hid_t g, const char *where, const char *name, int64_t n, bool factor, float *dst,
                         bool *found)
{
    char eb[256];
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    *found = ex > 0;
    if (ex <= 0) return ex < 0 ? pq_err(PQ_ERR_FORMAT, "%s/%s: corrupt group", where, name) : PQ_OK;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return pq_err(PQ_ERR_FORMAT, "%s/%s: %s", where, name, pq_h5u_detail(eb, sizeof eb));
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    pq_status st = PQ_OK;
    char w[700];
    snprintf(w, sizeof w, "%s/%s", where, name);
    if (sp < 0 || t < 0 || H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_npoints(sp) != n ||
        H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4)
        st = pq_err(PQ_ERR_FORMAT, "%s: expected %lld float32 values", w, (long long)n);
    else if (n && !pq_h5u_has_fletcher32(d))
        st = pq_err(PQ_ERR_FORMAT, "%s: no Fletcher-32 checksum", w);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        st = pq_h5u_read_fail(NULL, w);
    for (int64_t i = 0; !st && i < n; i++)
        if (!isfinite(dst[i]) || dst[i] < 0 || (factor && dst[i] == 0))
            st = pq_err(PQ_ERR_FORMAT, "%s[%lld] = %g is not a finite %s", w, (long long)i, (double)dst[i],
                        factor ? "positive smoothing factor" : "non-negative absolute maximum");
    H5Eclear2(H5E_DEFAULT);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return st;
}

pq_status pq_h5_read_smooth(const char *path, pq_smooth **out)
{
    char eb[256];
    pq_status st = PQ_OK;
    pq_smooth *s = NULL;
    hid_t g = H5I_INVALID_HID;
    *out = NULL;
    pq_h5u_quiet();
    hid_t f = pq_h5u_open_ro(path);
    if (f < 0) return pq_err(PQ_ERR_FORMAT, "%s: cannot open: %s", path, pq_h5u_detail(eb, sizeof eb));
    htri_t ex = H5Lexists(f, GROUP, H5P_DEFAULT);
    if (ex <= 0) {
        H5Eclear2(H5E_DEFAULT);
        goto done;
    }
    if ((g = H5Gopen2(f, GROUP, H5P_DEFAULT)) < 0) {
        st = pq_err(PQ_ERR_FORMAT, "%s: /" GROUP ": %s", path, pq_h5u_detail(eb, sizeof eb));
        goto done;
    }
    double alpha = 0;
    int64_t nl = 0, dim = 0, cfg_nl = 0;
    hid_t cfg = H5Gopen2(f, "config", H5P_DEFAULT);
    if (cfg < 0) {
        H5Eclear2(H5E_DEFAULT);
        st = pq_err(PQ_ERR_FORMAT, "%s: /config is missing", path);
        goto done;
    }
    if (!(st = pq_h5u_get_i64(cfg, "/config", "embed_dim", &dim)))
        st = pq_h5u_get_i64(cfg, "/config", "num_layers", &cfg_nl);
    H5Gclose(cfg);
    if (st || (st = pq_h5u_get_f64(g, "/" GROUP, "alpha", &alpha)) ||
        (st = pq_h5u_get_i64(g, "/" GROUP, "num_layers", &nl)))
        goto done;
    /* one attn_in and one ffn_in site per layer of the model: checked before
     * the factors of every site are allocated */
    if (nl != cfg_nl) {
        st = pq_err(PQ_ERR_FORMAT, "%s: /" GROUP ": num_layers %lld, /config says %lld", path, (long long)nl,
                    (long long)cfg_nl);
        goto done;
    }
    if (nl < 0 || nl > 100000 || dim <= 0 || dim > (1 << 24) || !(alpha > 0 && alpha <= 1)) {
        st = pq_err(PQ_ERR_FORMAT, "%s: /" GROUP ": num_layers %lld / embed_dim %lld / alpha %g out of range", path,
                    (long long)nl, (long long)dim, alpha);
        goto done;
    }
    if ((st = pq_smooth_create((int)nl, dim, alpha, &s))) goto done;
    for (int i = 0; i < s->n_sites && !st; i++) {
        pq_smooth_site *ss = &s->sites[i];
        char sw[600]; /* "file: /smoothquant/<site>" names the dataset in errors */
        bool found;
        snprintf(sw, sizeof sw, "%s: /" GROUP "/%s", path, ss->site);
        hid_t sg = H5Gopen2(g, ss->site, H5P_DEFAULT);
        if (sg < 0) {
            H5Eclear2(H5E_DEFAULT);
            st = pq_err(PQ_ERR_FORMAT, "%s is missing", sw);
            break;
        }
        ss->act_absmax = malloc((size_t)dim * sizeof *ss->act_absmax);
        ss->w_absmax = malloc((size_t)dim * sizeof *ss->w_absmax);
        if (!ss->act_absmax || !ss->w_absmax) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
        if (!st && !(st = get_vec(sg, sw, "scale", dim, true, ss->s, &found)) && !found)
            st = pq_err(PQ_ERR_FORMAT, "%s/scale is missing", sw);
        if (!st && !(st = get_vec(sg, sw, "act_absmax", dim, false, ss->act_absmax, &found)) && !found) {
            free(ss->act_absmax);
            ss->act_absmax = NULL;
        }
        if (!st && !(st = get_vec(sg, sw, "weight_absmax", dim, false, ss->w_absmax, &found)) && !found) {
            free(ss->w_absmax);
            ss->w_absmax = NULL;
        }
        H5Gclose(sg);
    }
done:
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    if (st) pq_smooth_free(s);
    else *out = s;
    return st;
}
