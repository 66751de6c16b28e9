/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_inspect.c - `proteus inspect`: what is in a safetensors or Proteus file. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "format/h5smooth.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "format/esm2.h"
#include "format/h5model.h"
#include "format/safetensors.h"

typedef struct inspect_opts {
    const char *path;
    bool no_verify;
} inspect_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "no-verify-checksums", .kind = PQ_CLI_FLAG, .offset = offsetof(inspect_opts, no_verify),
     .help = "Proteus .h5: list without reading the data (its Fletcher-32\nchecksums are then not verified; "
             "reading costs ~4-5 s\nper GB on a 2-core VM, docs/PERFORMANCE.md)"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "inspect",
    .usage = "usage: proteus inspect FILE [--no-verify-checksums]",
    .about = "List the tensors of a checkpoint (safetensors or PyTorch .pt/.bin: a file, an\n"
             "index.json or a directory; fair-esm names shown as mapped to Hugging Face's)\n"
             "or of a Proteus HDF5 model: names, dtypes, shapes, bytes, the recognised ESM-2\n"
             "architecture, and for quantized files the recipe (bits, granularity, symmetry)\n"
             "and the per-tensor error metrics (SQNR, relative L2, max abs error). A Proteus\n"
             "model is read whole first: every dataset's checksum and every scale and zero\n"
             "point is checked, and a corrupt file is a format error (exit 4).",
    .opts = k_opts,
    .operand = "FILE",
    .operand_offset = offsetof(inspect_opts, path),
    .operand_error = "expected exactly one FILE",
};

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    if (ndim == 0) snprintf(buf, n, "scalar");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? "x%lld" : "%lld", (long long)shape[d]);
}

static int is_hdf5(const char *path, int *is)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    *is = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == EISDIR) return 0;
        return pq_err(PQ_ERR_IO, "%s: %s", path, strerror(errno));
    }
    *is = fread(b, 1, 8, f) == 8 && !memcmp(b, sig, 8);
    fclose(f);
    return 0;
}

static int inspect_safetensors(const char *path)
{
    pq_st_model *m = NULL;
    pq_status st = pq_st_open(path, &m);
    if (st) return pq_cli_fail(st);
    pq_esm2_config cfg;
    char shp[64], b[32];
    uint64_t total = 0;
    printf("%s: %s, %d file(s), %lld tensors\n", path, pq_st_kind(m), pq_st_file_count(m), (long long)pq_st_count(m));
    printf("%-64s %-5s %-14s %12s\n", "tensor", "dtype", "shape", "bytes");
    for (int64_t i = 0; i < pq_st_count(m); i++) {
        const pq_st_tensor *t = pq_st_get(m, i);
        shape_str(t->ndim, t->shape, shp, sizeof shp);
        printf("%-64s %-5s %-14s %12s\n", t->name, pq_dtype_name(t->dtype), shp,
               pq_cli_bytes((double)t->n_bytes, b, sizeof b));
        total += t->n_bytes;
    }
    printf("total: %s\n", pq_cli_bytes((double)total, b, sizeof b));
    if ((st = pq_esm2_detect(m, &cfg)) == PQ_OK)
        printf("architecture: %s (layers %d, embed %d, heads %d, ffn %d%s%s)\n",
               cfg.arch ? cfg.arch->name : "custom ESM-2", cfg.num_layers, cfg.embed_dim,
               cfg.attention_heads, cfg.ffn_dim, cfg.has_decoder ? "" : ", tied decoder",
               cfg.has_contact_head ? ", contact head" : "");
    else
        printf("architecture: not a consistent ESM-2 checkpoint: %s\n", pq_err_detail());
    pq_st_close(m);
    return 0;
}

/* One line per distinct recipe (the /recipe table of format 4, or what
 * the tensors' attributes say in format 3), with its tensor count. */
static void print_recipes(const pq_h5r *r)
{
    const int64_t n = pq_h5r_count(r);
    printf("recipes:");
    for (int64_t i = 0; i < n; i++) {
        const char *t = pq_h5r_get(r, i)->recipe;
        bool seen = false;
        for (int64_t k = 0; k < i && !seen; k++) seen = !strcmp(pq_h5r_get(r, k)->recipe, t);
        if (seen) continue;
        int64_t count = 0;
        for (int64_t k = i; k < n; k++) count += !strcmp(pq_h5r_get(r, k)->recipe, t);
        printf("%s %lld x %s", i ? ";" : "", (long long)count, t);
    }
    printf("\n");
}

static int inspect_h5(const char *path, bool verify)
{
    pq_h5r *r = NULL;
    pq_status st = pq_h5r_open(path, &r);
    if (!st && verify) st = pq_h5r_verify_data(r);
    if (st) {
        pq_h5r_close(r);
        return pq_cli_fail(st);
    }
    const pq_h5_meta *meta = pq_h5r_meta(r);
    char shp[64];
    printf("%s: Proteus HDF5 model, format version %d\n", path, meta->format_version);
    printf("architecture: %s  (layers %d, embed %d, heads %d)\n", meta->architecture,
           meta->cfg.num_layers, meta->cfg.embed_dim, meta->cfg.attention_heads);
    if (meta->source_hash_chunk_bytes > 0)
        printf("source: %s  %s tree %s (%lld-byte chunks)\n", meta->model_name,
               pq_digest_name(meta->source_digest_alg), meta->source_sha256, (long long)meta->source_hash_chunk_bytes);
    else
        printf("source: %s  sha256 %s\n", meta->model_name, meta->source_sha256);
    printf("created by: %s, %d rank(s)\n", meta->created_by, meta->num_ranks);
    printf("config: %s\n", meta->config_json);
    pq_smooth *sm = NULL;
    if ((st = pq_h5_read_smooth(path, &sm))) {
        pq_h5r_close(r);
        return pq_cli_fail(st);
    }
    if (sm) {
        printf("smoothquant: alpha %g, %d sites (LayerNorm -> q/k/v, LayerNorm -> fc1; attention output and fc2 "
               "not smoothed)\n", sm->alpha, sm->n_sites);
        for (int i = 0; i < sm->n_sites; i++) {
            const pq_smooth_site *ss = &sm->sites[i];
            float lo = ss->s[0], hi = ss->s[0];
            for (int64_t k = 1; k < ss->dim; k++) lo = ss->s[k] < lo ? ss->s[k] : lo, hi = ss->s[k] > hi ? ss->s[k] : hi;
            printf("  %-18s s in [%.4g, %.4g]\n", ss->site, (double)lo, (double)hi);
        }
        pq_smooth_free(sm);
    }
    print_recipes(r);
    printf("%-58s %-12s %-22s %9s %10s %10s\n", "tensor", "shape", "stored as", "SQNR dB", "rel L2",
           "max err");
    for (int64_t i = 0; i < pq_h5r_count(r); i++) {
        const pq_h5r_entry *e = pq_h5r_get(r, i);
        char how[64];
        shape_str(e->ndim, e->shape, shp, sizeof shp);
        if (!e->quantized) {
            printf("%-58s %-12s %-22s\n", e->name, shp, e->stored_dtype == PQ_DT_F16 ? "float16" : "float32");
            continue;
        }
        if (e->spec.gran == PQ_GRAN_GROUP)
            snprintf(how, sizeof how, "int%d group%d %s %s", e->spec.bits, e->spec.group_size,
                     e->spec.symmetric ? "sym" : "asym", e->method);
        else
            snprintf(how, sizeof how, "int%d %s %s %s", e->spec.bits, pq_granularity_name(e->spec.gran),
                     e->spec.symmetric ? "sym" : "asym", e->method);
        pq_qmetrics qm;
        if (e->has_metrics && (st = pq_h5r_read_metrics(r, e->name, &qm))) {
            pq_h5r_close(r);
            return pq_cli_fail(st);
        }
        if (e->has_metrics)
            printf("%-58s %-12s %-22s %9.2f %10.3e %10.3e\n", e->name, shp, how, qm.sqnr_db, qm.rel_l2,
                   qm.max_abs_err);
        else
            printf("%-58s %-12s %-22s\n", e->name, shp, how);
    }
    pq_h5r_close(r);
    return 0;
}

int pq_cmd_inspect(int argc, char **argv)
{
    inspect_opts o = {0};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    const char *path = o.path;
    int h5;
    pq_status st = is_hdf5(path, &h5);
    if (st) return pq_cli_fail(st);
    return h5 ? inspect_h5(path, !o.no_verify) : inspect_safetensors(path);
}
