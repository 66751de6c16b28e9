/* SPDX-License-Identifier: Apache-2.0 */
/* synth.c - write deterministic synthetic ESM-2 safetensors checkpoints.
 *
 * Contents (Hugging Face names, esm2.md 4.2): every per-layer tensor
 * including the rotary inv_freq buffers, the embedding, final LayerNorm, LM
 * head (dense, layer_norm, bias) and the contact-head regression.
 * lm_head.decoder.weight is omitted: it is tied to the embedding and
 * safetensors cannot store aliases, so current HF exports leave it out too.
 * Legacy extras (position_ids, position_embeddings, pooler) are omitted.
 * Tensors are laid out contiguously in name order, as the reference writer does.
 *
 * Values: element i of tensor t is a pure function of (seed, t's name, i),
 * built from the splitmix64 finaliser used as a counter-based generator:
 * draw(key, i) = mix64(key + (i + 1) * 0x9e3779b97f4a7c15), key =
 * mix64(seed ^ mix64(FNV-1a 64 of name ^ stream)). Normals use Box-Muller on the
 * two 32-bit halves of one draw. So any row block can be generated on its
 * own, in parallel, and the file depends only on the seed (and on libm's
 * log/cos agreeing to well below one fp32 ulp, which glibc does).
 *
 * Distributions: Linear weights (q, k, v, out, fc1, fc2, lm_head.dense)
 * N(0, 0.02), with 0.5% of rows and 0.5% of columns scaled by 5..20x (the
 * larger scale where an outlier row meets an outlier column) and
 * about four single values per matrix of magnitude 0.4..1.2; biases
 * N(0, 0.01); LayerNorm weights 1 + N(0, 0.05), LayerNorm biases N(0, 0.02);
 * embedding N(0, 0.1); contact regression weight N(0, 0.1).
 *
 * Planted activation outliers (pq_synth_write_ex): K channels drawn from
 * the seed by a partial Fisher-Yates shuffle of 0..D-1 on draw(key of
 * "outlier_channels", i); in every per-layer LayerNorm their weight and
 * bias are multiplied by the scale after being drawn as above. */
#include "format/synth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pq_hash.h"
#include "base/pq_io.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "synth.c writes host floats as little-endian safetensors data"
#endif

#define BLOCK_BYTES ((size_t)16 << 20) /* fp32 staging per row block */
#define OUTLIER_FRAC 0.005
#define N_SINGLE_OUTLIERS 4.0

enum { STREAM_ELEM = 0x11, STREAM_ROW = 0x22, STREAM_COL = 0x33, STREAM_SPIKE = 0x44, STREAM_OUTLIER = 0x55 };

typedef enum kind { K_LINEAR, K_BIAS, K_LN_W, K_LN_B, K_EMBED, K_CONTACT_W, K_INV_FREQ } kind;

typedef struct spec {
    char name[128];
    kind k;
    int ndim;
    int64_t shape[2];
    int64_t rows, cols;
    uint64_t begin; /* offset in the data area */
} spec;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t draw(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * 0x9e3779b97f4a7c15ULL); }

static uint64_t stream_key(uint64_t seed, const char *name, uint64_t stream)
{
    return mix64(seed ^ mix64(pq_fnv1a64_str(PQ_FNV1A64_BASIS, name) ^ stream));
}

static double u32_open(uint32_t x) { return ((double)x + 0.5) * 0x1p-32; } /* (0, 1) */

static double normal(uint64_t x)
{
    double u1 = u32_open((uint32_t)(x >> 32)), u2 = u32_open((uint32_t)x);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* 5..20 for an outlier row/column, else 1. */
static float outlier_scale(uint64_t key, int64_t i)
{
    uint64_t x = draw(key, (uint64_t)i);
    if (u32_open((uint32_t)(x >> 32)) >= OUTLIER_FRAC) return 1.0f;
    return (float)(5.0 + 15.0 * u32_open((uint32_t)x));
}

static void add(spec *s, int *n, const char *name, kind k, int ndim, int64_t d0, int64_t d1)
{
    spec *p = &s[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->k = k;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->rows = ndim == 2 ? d0 : 1;
    p->cols = ndim == 2 ? d1 : d0;
}

static int cmp_spec(const void *a, const void *b) { return strcmp(((const spec *)a)->name, ((const spec *)b)->name); }

/* The tensor list of `arch`; returns owned array, *n set. */
static spec *build_specs(const pq_esm2_arch *a, int *n)
{
    int64_t L = a->num_layers, D = a->embed_dim, F = a->ffn_dim, V = a->vocab_size, H = a->attention_heads;
    spec *s = calloc((size_t)(L * 17 + 12), sizeof *s);
    if (!s) return NULL;
    int c = 0;
    char nm[128];
    for (int l = 0; l < L; l++) {
        for (int r = 1; r < PQ__ESM2_ROLE_COUNT; r++) {
            int lay;
            pq_esm2_name((pq_esm2_role)r, l, nm, sizeof nm);
            if (pq_esm2_role_of(nm, &lay) != (pq_esm2_role)r || lay != l) continue; /* global role */
            switch ((pq_esm2_role)r) {
            case PQ_ESM2_Q: case PQ_ESM2_K: case PQ_ESM2_V: case PQ_ESM2_OUT:
                add(s, &c, nm, K_LINEAR, 2, D, D); break;
            case PQ_ESM2_FC1: add(s, &c, nm, K_LINEAR, 2, F, D); break;
            case PQ_ESM2_FC2: add(s, &c, nm, K_LINEAR, 2, D, F); break;
            case PQ_ESM2_FC1_BIAS: add(s, &c, nm, K_BIAS, 1, F, 0); break;
            case PQ_ESM2_LN_ATTN_W: case PQ_ESM2_LN_FFN_W: add(s, &c, nm, K_LN_W, 1, D, 0); break;
            case PQ_ESM2_LN_ATTN_B: case PQ_ESM2_LN_FFN_B: add(s, &c, nm, K_LN_B, 1, D, 0); break;
            case PQ_ESM2_INV_FREQ: add(s, &c, nm, K_INV_FREQ, 1, D / H / 2, 0); break;
            default: add(s, &c, nm, K_BIAS, 1, D, 0); break;
            }
        }
    }
    add(s, &c, "esm.embeddings.word_embeddings.weight", K_EMBED, 2, V, D);
    add(s, &c, "esm.encoder.emb_layer_norm_after.weight", K_LN_W, 1, D, 0);
    add(s, &c, "esm.encoder.emb_layer_norm_after.bias", K_LN_B, 1, D, 0);
    add(s, &c, "lm_head.dense.weight", K_LINEAR, 2, D, D);
    add(s, &c, "lm_head.dense.bias", K_BIAS, 1, D, 0);
    add(s, &c, "lm_head.layer_norm.weight", K_LN_W, 1, D, 0);
    add(s, &c, "lm_head.layer_norm.bias", K_LN_B, 1, D, 0);
    add(s, &c, "lm_head.bias", K_BIAS, 1, V, 0);
    add(s, &c, "esm.contact_head.regression.weight", K_CONTACT_W, 2, 1, L * H);
    add(s, &c, "esm.contact_head.regression.bias", K_BIAS, 1, 1, 0);
    qsort(s, (size_t)c, sizeof *s, cmp_spec);
    *n = c;
    return s;
}

/* Fill rows [r0, r0+nr) of tensor p into dst (fp32). col_scale is the
 * per-column outlier scale for K_LINEAR, else unused. */
static void gen_rows(const spec *p, uint64_t seed, const float *col_scale, const float *inv_freq,
                     int64_t r0, int64_t nr, float *dst)
{
    uint64_t ke = stream_key(seed, p->name, STREAM_ELEM);
    uint64_t kr = stream_key(seed, p->name, STREAM_ROW);
    uint64_t ks = stream_key(seed, p->name, STREAM_SPIKE);
    int64_t cols = p->cols;
    double spike_p = N_SINGLE_OUTLIERS / (double)(p->rows * p->cols);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (nr * cols > 65536)
#endif
    for (int64_t r = r0; r < r0 + nr; r++) {
        float *row = dst + (r - r0) * cols;
        float rs = p->k == K_LINEAR ? outlier_scale(kr, r) : 1.0f;
        for (int64_t c = 0; c < cols; c++) {
            uint64_t i = (uint64_t)(r * cols + c);
            double z = normal(draw(ke, i));
            float v;
            switch (p->k) {
            case K_LINEAR: {
                /* an element in both an outlier row and column takes the larger
                 * scale, not the product: 400x spikes are not realistic */
                v = (float)(0.02 * z) * (rs > col_scale[c] ? rs : col_scale[c]);
                uint64_t x = draw(ks, i);
                if ((double)(x >> 11) * 0x1p-53 < spike_p) /* rare single large value */
                    v = (float)((x & 1 ? -0.02 : 0.02) * (20.0 + 40.0 * u32_open((uint32_t)mix64(x))));
                break;
            }
            case K_BIAS: v = (float)(0.01 * z); break;
            case K_LN_W: v = (float)(1.0 + 0.05 * z); break;
            case K_LN_B: v = (float)(0.02 * z); break;
            case K_EMBED: case K_CONTACT_W: v = (float)(0.1 * z); break;
            case K_INV_FREQ: default: v = inv_freq[c]; break;
            }
            row[c] = v;
        }
    }
}

static pq_status write_all(int fd, const void *buf, size_t n, const char *path)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return pq_err(PQ_ERR_IO, "%s: write: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return PQ_OK;
}

/* JSON header padded with spaces to a multiple of 8, as the reference writer
 * does, so the data area starts aligned. Returns owned string. */
static char *build_header(const spec *s, int n, pq_dtype dt, const pq_esm2_arch *a, uint64_t seed,
                          size_t *len)
{
    char *out = NULL, *txt = NULL;
    json_t *root = json_object(), *md = json_object();
    if (!root || !md) goto cleanup;
    char seedbuf[32];
    snprintf(seedbuf, sizeof seedbuf, "%llu", (unsigned long long)seed);
    json_object_set_new(md, "format", json_string("pt"));
    json_object_set_new(md, "proteus_synth_arch", json_string(a->name));
    json_object_set_new(md, "proteus_synth_seed", json_string(seedbuf));
    json_object_set(root, "__metadata__", md);
    for (int i = 0; i < n; i++) {
        uint64_t nb = (uint64_t)(s[i].rows * s[i].cols) * pq_dtype_size(dt);
        json_t *shape = json_array();
        for (int d = 0; d < s[i].ndim; d++) json_array_append_new(shape, json_integer(s[i].shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", pq_dtype_name(dt), "shape", shape,
                              "data_offsets", (json_int_t)s[i].begin, (json_int_t)(s[i].begin + nb));
        if (!e || json_object_set_new(root, s[i].name, e) != 0) goto cleanup;
    }
    txt = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!txt) goto cleanup;
    size_t tl = strlen(txt), padded = (tl + 7) & ~(size_t)7;
    out = malloc(padded + 1);
    if (!out) goto cleanup;
    memcpy(out, txt, tl);
    memset(out + tl, ' ', padded - tl);
    out[padded] = '\0';
    *len = padded;
cleanup:
    free(txt);
    json_decref(md);
    json_decref(root);
    return out;
}

pq_status pq_synth_write(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype, const char *path)
{
    return pq_synth_write_ex(arch, seed, dtype, path, BLOCK_BYTES, NULL);
}

pq_status pq_synth_write_blocked(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype,
                                 const char *path, size_t block_bytes)
{
    return pq_synth_write_ex(arch, seed, dtype, path, block_bytes, NULL);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void pq_synth_outlier_channels(uint64_t seed, int64_t embed_dim, int channels, int64_t *out)
{
    int64_t *perm = malloc((size_t)(embed_dim > 0 ? embed_dim : 1) * sizeof *perm);
    uint64_t key = stream_key(seed, "outlier_channels", STREAM_OUTLIER);
    if (!perm) { /* a deterministic fallback: evenly spaced */
        for (int i = 0; i < channels; i++) out[i] = (int64_t)i * embed_dim / channels;
        return;
    }
    for (int64_t i = 0; i < embed_dim; i++) perm[i] = i;
    for (int i = 0; i < channels; i++) {
        int64_t j = i + (int64_t)(draw(key, (uint64_t)i) % (uint64_t)(embed_dim - i));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        out[i] = perm[i];
    }
    free(perm);
    qsort(out, (size_t)channels, sizeof *out, cmp_i64);
}

/* Multiply the outlier channels of a per-layer LayerNorm tensor (one row of D). */
static void plant_outliers(const spec *p, const int64_t *ch, int n, float scale, float *row)
{
    int layer = -1;
    switch (pq_esm2_role_of(p->name, &layer)) {
    case PQ_ESM2_LN_ATTN_W: case PQ_ESM2_LN_ATTN_B: case PQ_ESM2_LN_FFN_W: case PQ_ESM2_LN_FFN_B:
        for (int i = 0; i < n; i++) row[ch[i]] *= scale;
        break;
    default: break;
    }
}

pq_status pq_synth_write_ex(const pq_esm2_arch *arch, uint64_t seed, pq_dtype dtype, const char *path,
                            size_t block_bytes, const pq_synth_outliers *outliers)
{
    int64_t *out_ch = NULL;
    int n_out = outliers ? outliers->channels : 0;
    pq_status rc = PQ_OK;
    spec *s = NULL;
    char *hdr = NULL, *partial = NULL;
    float *blk = NULL, *col_scale = NULL, *inv = NULL;
    uint16_t *half = NULL;
    int fd = -1, n = 0;

    if (!arch || arch->num_layers <= 0 || arch->embed_dim <= 0 || arch->attention_heads <= 0 ||
        arch->embed_dim % arch->attention_heads || (arch->embed_dim / arch->attention_heads) % 2)
        return pq_err(PQ_ERR_CONFIG, "synth: invalid architecture");
    if (dtype != PQ_DT_F32 && dtype != PQ_DT_F16)
        return pq_err(PQ_ERR_CONFIG, "synth: dtype %s not supported (F32 or F16)", pq_dtype_name(dtype));
    size_t esz = pq_dtype_size(dtype);
    int hd = arch->embed_dim / arch->attention_heads;
    if (outliers && (outliers->channels < 0 || outliers->channels > arch->embed_dim || !(outliers->scale > 0.0f)))
        return pq_err(PQ_ERR_CONFIG, "synth: %d outlier channels x %g: the count must be in [0, %d] and the "
                      "scale positive", outliers->channels, (double)outliers->scale, arch->embed_dim);
    if (n_out) {
        if (!(out_ch = malloc((size_t)n_out * sizeof *out_ch))) return pq_err(PQ_ERR_RESOURCE, "synth: out of memory");
        pq_synth_outlier_channels(seed, arch->embed_dim, n_out, out_ch);
    }

    s = build_specs(arch, &n);
    partial = pq_partial_dup(path);
    int64_t max_cols = 1;
    for (int i = 0; i < n; i++) if (s && s[i].cols > max_cols) max_cols = s[i].cols;
    int64_t rows_per_blk = (int64_t)(block_bytes / sizeof(float)) / max_cols;
    if (rows_per_blk < 1) rows_per_blk = 1;
    blk = malloc((size_t)(rows_per_blk * max_cols) * sizeof *blk);
    half = dtype == PQ_DT_F16 ? malloc((size_t)(rows_per_blk * max_cols) * sizeof *half) : NULL;
    col_scale = malloc((size_t)max_cols * sizeof *col_scale);
    inv = malloc((size_t)(hd / 2 > 0 ? hd / 2 : 1) * sizeof *inv);
    if (!s || !partial || !blk || !col_scale || !inv || (dtype == PQ_DT_F16 && !half)) {
        rc = pq_err(PQ_ERR_RESOURCE, "synth: out of memory");
        goto cleanup;
    }
    pq_esm2_inv_freq(hd, inv);

    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        s[i].begin = pos;
        pos += (uint64_t)(s[i].rows * s[i].cols) * esz;
    }
    size_t hlen = 0;
    hdr = build_header(s, n, dtype, arch, seed, &hlen);
    if (!hdr) {
        rc = pq_err(PQ_ERR_RESOURCE, "synth: cannot build the JSON header");
        goto cleanup;
    }

    fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = pq_err(PQ_ERR_IO, "%s: %s", partial, strerror(errno));
        goto cleanup;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if ((rc = write_all(fd, len8, 8, partial)) != PQ_OK) goto cleanup;
    if ((rc = write_all(fd, hdr, hlen, partial)) != PQ_OK) goto cleanup;

    for (int i = 0; i < n; i++) {
        const spec *p = &s[i];
        if (p->k == K_LINEAR) {
            uint64_t kc = stream_key(seed, p->name, STREAM_COL);
            for (int64_t c = 0; c < p->cols; c++) col_scale[c] = outlier_scale(kc, c);
        }
        for (int64_t r0 = 0; r0 < p->rows; r0 += rows_per_blk) {
            int64_t nr = p->rows - r0 < rows_per_blk ? p->rows - r0 : rows_per_blk;
            int64_t ne = nr * p->cols;
            gen_rows(p, seed, col_scale, inv, r0, nr, blk);
            if (n_out) plant_outliers(p, out_ch, n_out, outliers->scale, blk);
            if (dtype == PQ_DT_F16) {
                for (int64_t e = 0; e < ne; e++) half[e] = pq_f32_to_f16(blk[e]);
                rc = write_all(fd, half, (size_t)ne * 2, partial);
            } else {
                rc = write_all(fd, blk, (size_t)ne * 4, partial);
            }
            if (rc != PQ_OK) goto cleanup;
        }
    }
    if (fsync(fd) != 0) {
        rc = pq_err(PQ_ERR_IO, "%s: fsync: %s", partial, strerror(errno));
        goto cleanup;
    }
    /* written and durable: no reason to keep gigabytes in the page cache */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (close(fd) != 0) {
        fd = -1;
        rc = pq_err(PQ_ERR_IO, "%s: close: %s", partial, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    rc = pq_publish(partial, path); /* its fsync finds nothing left to write */
cleanup:
    if (fd >= 0) close(fd);
    if (rc != PQ_OK && partial) unlink(partial);
    free(out_ch);
    free(inv);
    free(col_scale);
    free(half);
    free(blk);
    free(hdr);
    free(partial);
    free(s);
    return rc;
}
