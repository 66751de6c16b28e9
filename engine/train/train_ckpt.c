/* SPDX-License-Identifier: Apache-2.0 */
/* train_ckpt.c - write and read a trainer's state (train_ckpt.h). */
#include "train/train_ckpt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <hdf5.h>

#include "format/h5util.h"

#define GROUP "train"

static pq_status h5_fail(const char *path, const char *what)
{
    char d[256];
    return pq_err(PQ_ERR_IO, "%s: %s: %s", path, what, pq_h5u_detail(d, sizeof d));
}

static pq_status put_data(hid_t g, const char *path, const char *name, hid_t ftype, hid_t mtype, int64_t n,
                          const void *buf)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL), ds = H5I_INVALID_HID, dcpl = H5Pcreate(H5P_DATASET_CREATE);
    pq_status st = PQ_OK;
    /* no modification times in the file */
    if (sp < 0 || dcpl < 0 || H5Pset_obj_track_times(dcpl, 0) < 0 ||
        (ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
        (n > 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0))
        st = h5_fail(path, name);
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return st;
}

static pq_status get_data(hid_t g, const char *path, const char *name, hid_t mtype, int64_t n, void *buf)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT), sp = H5I_INVALID_HID;
    pq_status st = PQ_OK;
    if (ds < 0) return pq_err(PQ_ERR_FORMAT, "%s: not a training checkpoint (no /%s/%s)", path, GROUP, name);
    sp = H5Dget_space(ds);
    hsize_t dim = 0;
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &dim, NULL) < 0 ||
        (int64_t)dim != n)
        st = pq_err(PQ_ERR_FORMAT, "%s: /%s/%s has %llu values, the training state needs %lld", path, GROUP, name,
                    (unsigned long long)dim, (long long)n);
    else if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = pq_err(PQ_ERR_FORMAT, "%s: /%s/%s cannot be read", path, GROUP, name);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return st;
}

/* The recipe values a resumed run must share, as (name, value). */
typedef struct recipe_item {
    const char *name;
    double value;
} recipe_item;

static int recipe(const pq_trainer *tr, recipe_item *it)
{
    const pq_train_opts *o = &tr->o;
    int n = 0;
    it[n++] = (recipe_item){"seed", (double)o->seed};
    it[n++] = (recipe_item){"steps", (double)o->steps};
    it[n++] = (recipe_item){"batch_size", (double)o->batch_size};
    it[n++] = (recipe_item){"micro_size", (double)o->micro_size};
    it[n++] = (recipe_item){"max_residues", (double)o->max_residues};
    it[n++] = (recipe_item){"lr", o->lr};
    it[n++] = (recipe_item){"warmup", (double)o->warmup};
    it[n++] = (recipe_item){"weight_decay", o->weight_decay};
    it[n++] = (recipe_item){"clip", o->clip};
    it[n++] = (recipe_item){"qat", o->qat ? 1.0 : 0.0};
    it[n++] = (recipe_item){"bits", o->qat ? (double)o->spec.bits : 0.0};
    it[n++] = (recipe_item){"group_size", o->qat && o->spec.gran == PQ_GRAN_GROUP ? (double)o->spec.group_size : 0.0};
    it[n++] = (recipe_item){"symmetric", o->qat && o->spec.symmetric ? 1.0 : 0.0};
    it[n++] = (recipe_item){"act_int8", o->qat && o->act_int8 ? 1.0 : 0.0};
    it[n++] = (recipe_item){"act_static", o->qat && o->act_static ? 1.0 : 0.0};
    it[n++] = (recipe_item){"distill", o->distill ? 1.0 : 0.0};
    it[n++] = (recipe_item){"n_floats", (double)tr->p->n_floats};
    it[n++] = (recipe_item){"n_scales", tr->q ? (double)tr->q->n_scales : 0.0};
    return n;
}

pq_status pq_train_ckpt_write(const pq_trainer *tr, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return pq_err(PQ_ERR_IO, "%s: path too long", path);
    pq_h5u_quiet();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), g = H5I_INVALID_HID;
    hid_t gcpl = H5I_INVALID_HID;
    if (f < 0) return h5_fail(tmp, "cannot create");
    pq_status st = PQ_OK;
    int64_t n = tr->p->n_floats;
    if ((gcpl = H5Pcreate(H5P_GROUP_CREATE)) < 0 || H5Pset_obj_track_times(gcpl, 0) < 0 ||
        (g = H5Gcreate2(f, GROUP, H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        st = h5_fail(tmp, GROUP);
        goto done;
    }
    recipe_item it[32];
    int ni = recipe(tr, it);
    for (int i = 0; i < ni && st == PQ_OK; i++) st = pq_h5u_put_f64(g, "/" GROUP, it[i].name, it[i].value);
    if (st == PQ_OK) st = pq_h5u_put_i64(g, "/" GROUP, "step", tr->step);
    if (st == PQ_OK) st = put_data(g, tmp, "weights", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, n, tr->p->data);
    if (st == PQ_OK) st = put_data(g, tmp, "adam_m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, n, tr->m);
    if (st == PQ_OK) st = put_data(g, tmp, "adam_v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, n, tr->v);
    if (st == PQ_OK) st = put_data(g, tmp, "curve", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, tr->step, tr->curve);
    if (tr->q) {
        int64_t ns = tr->q->n_scales;
        if (st == PQ_OK) st = put_data(g, tmp, "scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ns, tr->q->scale);
        if (st == PQ_OK) st = put_data(g, tmp, "scale_m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ns, tr->sm);
        if (st == PQ_OK) st = put_data(g, tmp, "scale_v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ns, tr->sv);
        if (st == PQ_OK && tr->q->zp)
            st = put_data(g, tmp, "zero_point", H5T_STD_I32LE, H5T_NATIVE_INT32, ns, tr->q->zp);
    }
done:
    if (g >= 0) H5Gclose(g);
    if (gcpl >= 0) H5Pclose(gcpl);
    if (H5Fclose(f) < 0 && st == PQ_OK) st = h5_fail(tmp, "cannot close");
    if (st == PQ_OK && rename(tmp, path) != 0)
        st = pq_err(PQ_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != PQ_OK) remove(tmp);
    return st;
}

pq_status pq_train_ckpt_read(pq_trainer *tr, const char *path)
{
    pq_h5u_quiet();
    hid_t f = pq_h5u_open_ro(path), g = H5I_INVALID_HID;
    if (f < 0) return h5_fail(path, "cannot open the training checkpoint");
    pq_status st = PQ_OK;
    int64_t n = tr->p->n_floats, step = 0;
    if ((g = H5Gopen2(f, GROUP, H5P_DEFAULT)) < 0) {
        st = pq_err(PQ_ERR_FORMAT, "%s: not a training checkpoint (no /%s)", path, GROUP);
        goto done;
    }
    recipe_item it[32];
    int ni = recipe(tr, it);
    for (int i = 0; i < ni; i++) {
        double v;
        if ((st = pq_h5u_get_f64(g, "/" GROUP, it[i].name, &v)) != PQ_OK) goto done;
        if (v != it[i].value) {
            st = pq_err(PQ_ERR_CONFIG, "%s: the checkpoint was written with %s = %.9g, this run has %.9g", path,
                        it[i].name, v, it[i].value);
            goto done;
        }
    }
    if ((st = pq_h5u_get_i64(g, "/" GROUP, "step", &step)) != PQ_OK) goto done;
    if (step < 0 || step > tr->o.steps) {
        st = pq_err(PQ_ERR_FORMAT, "%s: step %lld is outside the run's %lld steps", path, (long long)step,
                    (long long)tr->o.steps);
        goto done;
    }
    if ((st = get_data(g, path, "weights", H5T_NATIVE_FLOAT, n, tr->p->data)) != PQ_OK ||
        (st = get_data(g, path, "adam_m", H5T_NATIVE_FLOAT, n, tr->m)) != PQ_OK ||
        (st = get_data(g, path, "adam_v", H5T_NATIVE_FLOAT, n, tr->v)) != PQ_OK ||
        (st = get_data(g, path, "curve", H5T_NATIVE_DOUBLE, step, tr->curve)) != PQ_OK)
        goto done;
    if (tr->q) {
        int64_t ns = tr->q->n_scales;
        if ((st = get_data(g, path, "scale", H5T_NATIVE_FLOAT, ns, tr->q->scale)) != PQ_OK ||
            (st = get_data(g, path, "scale_m", H5T_NATIVE_FLOAT, ns, tr->sm)) != PQ_OK ||
            (st = get_data(g, path, "scale_v", H5T_NATIVE_FLOAT, ns, tr->sv)) != PQ_OK ||
            (tr->q->zp && (st = get_data(g, path, "zero_point", H5T_NATIVE_INT32, ns, tr->q->zp)) != PQ_OK))
            goto done;
    }
    tr->step = step;
done:
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return st;
}
