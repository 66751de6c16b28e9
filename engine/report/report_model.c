/* SPDX-License-Identifier: Apache-2.0 */
/* report_model.c - the model side of `proteus report`: tensors, bytes,
 * weight SQNR and provenance of a Proteus HDF5 file. */
#include "report/report_model.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/esm2.h"
#include "format/h5model.h"
#include "format/h5util.h"
#include "quant/qspec.h"

static const char *const k_linears[PQ_REPORT_N_LINEARS] = {"q", "k", "v", "o", "fc1", "fc2"};

const char *pq_report_linear_name(int i)
{
    return i >= 0 && i < PQ_REPORT_N_LINEARS ? k_linears[i] : "?";
}

int pq_report_linear_index(const char *name)
{
    if (!name) return -1;
    if (!strcmp(name, "out")) return 3;
    for (int i = 0; i < PQ_REPORT_N_LINEARS; i++)
        if (!strcmp(name, k_linears[i])) return i;
    return -1;
}

/* Bytes the tensor's datasets hold (without HDF5's own overhead). */
static int64_t stored_bytes(const pq_h5r_entry *e, int64_t n_elems)
{
    if (!e->quantized) return n_elems * (e->stored_dtype == PQ_DT_F16 ? 2 : 4);
    int64_t rows = e->shape[0], cols = e->shape[1];
    int64_t n_scales = pq_qspec_n_scales(&e->spec, rows, cols);
    int64_t b = rows * pq_qspec_row_bytes(&e->spec, cols) + n_scales * 4;
    if (!e->spec.symmetric) b += n_scales * 4;
    if (e->has_act_scale) b += 4;
    return b;
}

static pq_status read_tensors(pq_h5r *r, pq_report_model *m)
{
    int64_t n = pq_h5r_count(r);
    if ((m->t = calloc(n > 0 ? (size_t)n : 1, sizeof *m->t)) == NULL)
        return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", m->path);
    for (int64_t i = 0; i < n; i++, m->n_tensors++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        pq_report_tensor *t = &m->t[i];
        if ((t->name = strdup(e->name)) == NULL) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", m->path);
        snprintf(t->recipe, sizeof t->recipe, "%s", e->recipe);
        t->quantized = e->quantized;
        if (e->quantized) snprintf(t->precision, sizeof t->precision, "int%d", e->spec.bits);
        else snprintf(t->precision, sizeof t->precision, "%s", e->stored_dtype == PQ_DT_F16 ? "fp16" : "fp32");
        t->n_elems = 1;
        for (int d = 0; d < e->ndim; d++) t->n_elems *= e->shape[d];
        t->bytes = stored_bytes(e, t->n_elems);
        int layer = -1;
        pq_esm2_role role = pq_esm2_role_of(e->name, &layer);
        bool lin = pq_esm2_role_is_linear(role) && layer >= 0 && layer < m->num_layers;
        t->layer = lin ? layer : -1;
        t->linear = lin ? (int)(role - PQ_ESM2_Q) : -1;
        t->sqnr_db = NAN;
        if (!e->has_metrics) continue;
        pq_qmetrics qm = {0};
        pq_status st = pq_h5r_read_metrics(r, e->name, &qm);
        if (st) return st;
        /* the definition of docs/FORMAT.md; sqnr_db as stored when the
         * sums are not (files before they were recorded) */
        if (qm.sum_sq > 0 || qm.err_sq > 0)
            t->sqnr_db = qm.err_sq > 0 ? 10 * log10(qm.sum_sq / qm.err_sq) : INFINITY;
        else
            t->sqnr_db = qm.sqnr_db;
    }
    return PQ_OK;
}

typedef struct name_list {
    char **v;
    int64_t n;
    bool oom;
} name_list;

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *user)
{
    (void)loc;
    (void)info;
    name_list *l = user;
    char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof *v);
    if (!v || (v[l->n] = strdup(name)) == NULL) {
        if (v) l->v = v;
        l->oom = true;
        return -1;
    }
    l->v = v;
    l->n++;
    return 0;
}

/* Every /provenance attribute, by name (each a fixed-length string, read
 * and checked by pq_h5u_get_str as the model reader reads its strings). */
static pq_status read_provenance(pq_report_model *m)
{
    char eb[256], where[600];
    pq_status rc = PQ_OK;
    hid_t f = H5I_INVALID_HID, g = H5I_INVALID_HID;
    name_list l = {0};
    snprintf(where, sizeof where, "%s: /provenance", m->path);
    if ((f = pq_h5u_open_ro(m->path)) < 0) {
        rc = pq_err(PQ_ERR_FORMAT, "%s: cannot open again: %s", m->path, pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if (H5Lexists(f, "provenance", H5P_DEFAULT) <= 0) goto cleanup;
    if ((g = H5Gopen2(f, "provenance", H5P_DEFAULT)) < 0 ||
        H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr, &l) < 0) {
        rc = l.oom ? pq_err(PQ_ERR_RESOURCE, "%s: out of memory", where)
                   : pq_err(PQ_ERR_FORMAT, "%s: cannot list: %s", where, pq_h5u_detail(eb, sizeof eb));
        goto cleanup;
    }
    if (l.n && ((m->prov_key = calloc((size_t)l.n, sizeof *m->prov_key)) == NULL ||
                (m->prov_val = calloc((size_t)l.n, sizeof *m->prov_val)) == NULL)) {
        rc = pq_err(PQ_ERR_RESOURCE, "%s: out of memory", where);
        goto cleanup;
    }
    for (int64_t i = 0; i < l.n && !rc; i++) {
        m->prov_key[i] = l.v[i];
        l.v[i] = NULL;
        m->n_prov++;
        rc = pq_h5u_get_str(g, where, m->prov_key[i], &m->prov_val[i]);
    }
cleanup:
    for (int64_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

pq_status pq_report_model_read(const char *path, bool verify, pq_report_model *m)
{
    *m = (pq_report_model){0};
    pq_h5r *r = NULL;
    struct stat sb;
    if ((m->path = strdup(path)) == NULL) return pq_err(PQ_ERR_RESOURCE, "%s: out of memory", path);
    pq_status rc = pq_h5r_open(path, &r);
    if (!rc && verify) rc = pq_h5r_verify_data(r);
    if (rc) goto cleanup;
    const pq_h5_meta *meta = pq_h5r_meta(r);
    m->format_version = meta->format_version;
    m->source_digest_alg = pq_digest_name(meta->source_digest_alg);
    m->num_layers = meta->cfg.num_layers;
    m->num_ranks = meta->num_ranks;
    m->embed_dim = meta->cfg.embed_dim;
    m->attention_heads = meta->cfg.attention_heads;
    m->ffn_dim = meta->cfg.ffn_dim;
    m->file_bytes = stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
    if ((meta->architecture && !(m->architecture = strdup(meta->architecture))) ||
        (meta->model_name && !(m->model_name = strdup(meta->model_name))) ||
        (meta->source_sha256 && !(m->source_sha256 = strdup(meta->source_sha256))) ||
        (meta->created_by && !(m->created_by = strdup(meta->created_by))) ||
        (meta->config_json && !(m->config_json = strdup(meta->config_json)))) {
        rc = pq_err(PQ_ERR_RESOURCE, "%s: out of memory", path);
        goto cleanup;
    }
    if ((rc = read_tensors(r, m))) goto cleanup;
    pq_h5r_close(r);
    r = NULL;
    rc = read_provenance(m);
cleanup:
    pq_h5r_close(r);
    return rc;
}

void pq_report_model_free(pq_report_model *m)
{
    if (!m) return;
    for (int64_t i = 0; i < m->n_tensors; i++) free(m->t[i].name);
    free(m->t);
    for (int64_t i = 0; i < m->n_prov; i++) {
        free(m->prov_key[i]);
        free(m->prov_val[i]);
    }
    free(m->prov_key);
    free(m->prov_val);
    free(m->path);
    free(m->architecture);
    free(m->model_name);
    free(m->source_sha256);
    free(m->created_by);
    free(m->config_json);
    *m = (pq_report_model){0};
}

const char *pq_report_model_prov(const pq_report_model *m, const char *key)
{
    for (int64_t i = 0; i < m->n_prov; i++)
        if (!strcmp(m->prov_key[i], key)) return m->prov_val[i];
    return NULL;
}
