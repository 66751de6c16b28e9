/* SPDX-License-Identifier: Apache-2.0 */
/* esm2_model_h5.c - load the fp32 engine from a Proteus HDF5 model
 * (quantized tensors dequantized by the reader), and open either format. */
#include <string.h>

#include "esm2_model.h"
#include "h5model.h"

static pq_status h5_read(void *user, const char *name, int64_t n, float *dst, bool *found)
{
    pq_h5r *r = user;
    const pq_h5r_entry *e = pq_h5r_find(r, name);
    *found = (e != NULL);
    if (!e) return PQ_OK;
    int64_t cnt = 1;
    for (int i = 0; i < e->ndim; i++) cnt *= e->shape[i];
    if (cnt != n)
        return pq_err(PQ_ERR_FORMAT, "tensor %s has %lld elements, the architecture needs %lld", name,
                      (long long)cnt, (long long)n);
    return pq_h5r_read_f32(r, e, dst);
}

pq_status pq_esm2_model_load_h5(const char *path, const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    *out = NULL;
    pq_h5r *r = NULL;
    pq_status st = pq_h5r_open(path, &r);
    if (st != PQ_OK) return st;
    pq_esm2_config cfg = pq_h5r_meta(r)->cfg;
    if (cfg.head_dim == 0 && cfg.attention_heads > 0) cfg.head_dim = cfg.embed_dim / cfg.attention_heads;
    if (cfg.layer_norm_eps <= 0) cfg.layer_norm_eps = 1e-5f;
    cfg.token_dropout = true; /* every ESM-2 */
    st = pq_esm2_model_load_with(&cfg, h5_read, r, opts, out);
    pq_h5r_close(r);
    return st;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

pq_status pq_esm2_model_open(const char *path, const pq_esm2_model_opts *opts, pq_esm2_model **out)
{
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) return pq_esm2_model_load_h5(path, opts, out);
    return pq_esm2_model_load(path, opts, out);
}
