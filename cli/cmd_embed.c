/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_embed.c - `proteus embed`: per-sequence (and optionally per-token)
 * ESM-2 representations of a FASTA file, written to HDF5. */
#include <errno.h>
#include <getopt.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/batch.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "model/esm2_model.h"
#include "model/fasta.h"
#include "base/pq_io.h"

#define MAX_LAYERS_REQ 64

static void help(FILE *f)
{
    fprintf(f,
"usage: proteus embed --model M --fasta F --out EMB.h5 [--layers 0,6,-1]\n"
"                     [--per-token] [--max-length N] [--long crop|skip]\n"
"                     [--batch-tokens N] [--threads N]\n\n"
"Run the fp32 ESM-2 forward on every FASTA record and write its representations\n"
"to HDF5 (written to EMB.h5.partial, renamed when complete):\n"
"  /ids                  [n_seq] record ids (strings)\n"
"  /lengths              [n_seq] residues embedded (after cropping)\n"
"  /layer_<i>/mean       [n_seq, D] mean over the residues (cls/eos excluded)\n"
"  /layer_<i>/tokens     [sum(lengths), D] per-residue rows (--per-token)\n"
"  /offsets              [n_seq + 1] row offsets into tokens (--per-token)\n"
"Layer i is the representation after layer i (0 = embeddings; L = after the\n"
"final LayerNorm, as fair-esm's representations[L]); negative i counts from L+1.\n\n"
"  --model M         .safetensors (file/dir/index) or Proteus .h5\n"
"  --fasta F         FASTA, plain or .gz\n"
"  --out PATH        output HDF5\n"
"  --layers LIST     comma-separated layer indices (default -1)\n"
"  --per-token       also write per-residue arrays\n"
"  --max-length N    residues per sequence (default 1022)\n"
"  --long crop|skip  longer sequences are cropped (default) or skipped\n"
"  --batch-tokens N  tokens per forward batch (default 4096)\n"
"  --threads N       threads (default: all cores)\n");
}

static int parse_i64(const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return pq_cli_usage_error("embed", "%s '%s' is not an integer >= %lld", opt, v, (long long)lo);
    *out = x;
    return 0;
}

static pq_status h5_fail(const char *path, const char *what)
{
    return pq_err(PQ_ERR_IO, "%s: HDF5 could not %s", path, what);
}

/* Create a 2-D float dataset [rows, cols] under group g. */
static hid_t make_2d(hid_t g, const char *name, hsize_t rows, hsize_t cols)
{
    hsize_t dims[2] = {rows, cols};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    if (sp < 0) return -1;
    hid_t ds = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    return ds;
}

static herr_t write_rows(hid_t ds, hsize_t row0, hsize_t n, hsize_t cols, const float *data)
{
    hid_t fs = H5Dget_space(ds);
    hsize_t start[2] = {row0, 0}, count[2] = {n, cols};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(2, count, NULL);
    herr_t rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, data);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

static herr_t write_i64(hid_t f, const char *name, hsize_t n, const int64_t *v)
{
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

int pq_cmd_embed(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"fasta", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'}, {"layers", required_argument, 0, 'y'},
        {"per-token", no_argument, 0, 'P'}, {"max-length", required_argument, 0, 'l'},
        {"long", required_argument, 0, 'L'}, {"batch-tokens", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *model_path = NULL, *fasta_path = NULL, *out_path = NULL, *layers_arg = "-1";
    int64_t max_len = 1022, batch_tokens = 4096, threads = 0;
    int per_token = 0, c;
    pq_fasta_opts fo = pq_fasta_defaults();
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:f:o:y:Pl:L:b:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': fasta_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'y': layers_arg = optarg; break;
        case 'P': per_token = 1; break;
        case 'l': if (parse_i64("--max-length", optarg, 1, &max_len)) return 2; break;
        case 'b': if (parse_i64("--batch-tokens", optarg, 3, &batch_tokens)) return 2; break;
        case 't': if (parse_i64("--threads", optarg, 1, &threads)) return 2; break;
        case 'L':
            if (!strcmp(optarg, "crop")) fo.on_long = PQ_FASTA_CROP;
            else if (!strcmp(optarg, "skip")) fo.on_long = PQ_FASTA_SKIP;
            else return pq_cli_usage_error("embed", "--long '%s' is not crop or skip", optarg);
            break;
        case 'h': help(stdout); return 0;
        case ':': return pq_cli_usage_error("embed", "option '%s' needs a value", argv[optind - 1]);
        default: return pq_cli_usage_error("embed", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return pq_cli_usage_error("embed", "unexpected argument '%s'", argv[optind]);
    if (!model_path) return pq_cli_usage_error("embed", "--model is required");
    if (!fasta_path) return pq_cli_usage_error("embed", "--fasta is required");
    if (!out_path) return pq_cli_usage_error("embed", "--out is required");
    fo.max_residues = max_len;
    int req[MAX_LAYERS_REQ], n_req = 0;
    {
        const char *p = layers_arg;
        while (*p) {
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (errno || end == p || (*end && *end != ',') || n_req == MAX_LAYERS_REQ)
                return pq_cli_usage_error("embed", "--layers '%s' is not a comma-separated list of integers",
                                          layers_arg);
            req[n_req++] = (int)v;
            p = *end ? end + 1 : end;
        }
        if (n_req == 0) return pq_cli_usage_error("embed", "--layers is empty");
    }

    pq_status st = PQ_OK;
    pq_esm2_model *m = NULL;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0, *lengths = NULL, *toff = NULL;
    float *mean = NULL;
    hid_t file = -1, mean_ds[MAX_LAYERS_REQ], tok_ds[MAX_LAYERS_REQ];
    for (int i = 0; i < MAX_LAYERS_REQ; i++) mean_ds[i] = tok_ds[i] = -1;
    char *partial = NULL;
    pq_packed pk;
    memset(&pk, 0, sizeof pk);
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    pq_esm2_model_opts mo = {.n_threads = (int)threads};

    const char *inputs[] = {model_path, fasta_path};
    if ((st = pq_out_check("--out", out_path, inputs, 2)) != PQ_OK) goto done;
    if ((st = pq_esm2_model_open(model_path, &mo, &m)) != PQ_OK) goto done;
    const pq_esm2_config *cfg = pq_esm2_model_config(m);
    int L = cfg->num_layers;
    int64_t D = cfg->embed_dim;
    int resolved[MAX_LAYERS_REQ];
    for (int i = 0; i < n_req; i++) {
        int li = req[i] < 0 ? L + 1 + req[i] : req[i];
        if (li < 0 || li > L) {
            st = pq_err(PQ_ERR_CONFIG, "--layers: layer %d is outside 0..%d (or -%d..-1) of this model", req[i], L,
                        L + 1);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (resolved[j] == li) {
                st = pq_err(PQ_ERR_CONFIG, "--layers: layer %d requested twice", li);
                goto done;
            }
        resolved[i] = li;
    }
    if ((st = pq_fasta_read_all(fasta_path, &fo, 0, &recs, &n_recs)) != PQ_OK) goto done;
    lengths = malloc((size_t)n_recs * sizeof *lengths);
    toff = malloc((size_t)(n_recs + 1) * sizeof *toff);
    mean = malloc((size_t)D * sizeof *mean);
    if (!lengths || !toff || !mean) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    toff[0] = 0;
    for (int64_t i = 0; i < n_recs; i++) {
        lengths[i] = recs[i].n_ids - 2;
        toff[i + 1] = toff[i] + lengths[i];
    }

    partial = pq_partial_dup(out_path);
    if (!partial) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* h5_fail reports; no HDF5 stack dump */
    file = H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) { st = h5_fail(partial, "create the file"); goto done; }
    {
        /* /ids as variable-length strings */
        hsize_t n = (hsize_t)n_recs;
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t ds = H5Dcreate2(file, "ids", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const char **names = malloc((size_t)n_recs * sizeof *names);
        herr_t rc = -1;
        if (names && ds >= 0) {
            for (int64_t i = 0; i < n_recs; i++) names[i] = recs[i].id;
            rc = H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names);
        }
        free(names);
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(sp);
        H5Tclose(t);
        if (rc < 0) { st = h5_fail(partial, "write /ids"); goto done; }
        if (write_i64(file, "lengths", n, lengths) < 0) { st = h5_fail(partial, "write /lengths"); goto done; }
        if (per_token && write_i64(file, "offsets", n + 1, toff) < 0) {
            st = h5_fail(partial, "write /offsets");
            goto done;
        }
        hid_t as = H5Screate(H5S_SCALAR);
        int attrs[3] = {L, (int)D, cfg->attention_heads};
        const char *an[3] = {"num_layers", "embed_dim", "attention_heads"};
        for (int i = 0; i < 3; i++) {
            hid_t a = H5Acreate2(file, an[i], H5T_STD_I32LE, as, H5P_DEFAULT, H5P_DEFAULT);
            if (a >= 0) { H5Awrite(a, H5T_NATIVE_INT, &attrs[i]); H5Aclose(a); }
        }
        H5Sclose(as);
    }
    for (int i = 0; i < n_req; i++) {
        char gname[64];
        snprintf(gname, sizeof gname, "layer_%d", resolved[i]);
        hid_t g = H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) { st = h5_fail(partial, "create a layer group"); goto done; }
        mean_ds[i] = make_2d(g, "mean", (hsize_t)n_recs, (hsize_t)D);
        if (per_token) tok_ds[i] = make_2d(g, "tokens", (hsize_t)toff[n_recs], (hsize_t)D);
        H5Gclose(g);
        if (mean_ds[i] < 0 || (per_token && tok_ds[i] < 0)) { st = h5_fail(partial, "create datasets"); goto done; }
    }

    for (int64_t start = 0; start < n_recs;) {
        int64_t np;
        if ((st = pq_pack_records(recs, n_recs, start, batch_tokens, &pk, &np)) != PQ_OK) goto done;
        pq_esm2_outputs_clear(&out);
        out.n_repr = n_req;
        memcpy(out.repr_layers, resolved, sizeof(int) * (size_t)n_req);
        if ((st = pq_esm2_forward(m, &pk.batch, NULL, &out)) != PQ_OK) goto done;
        for (int i = 0; i < n_req; i++) {
            for (int64_t s = 0; s < np; s++) {
                int64_t t0 = pk.offsets[s] + 1, n = pk.offsets[s + 1] - pk.offsets[s] - 2;
                const float *rep = out.repr[i];
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int64_t t = t0; t < t0 + n; t++) acc += rep[t * D + d];
                    mean[d] = (float)(acc / (double)n);
                }
                if (write_rows(mean_ds[i], (hsize_t)(start + s), 1, (hsize_t)D, mean) < 0 ||
                    (per_token && write_rows(tok_ds[i], (hsize_t)toff[start + s], (hsize_t)n, (hsize_t)D,
                                             rep + t0 * D) < 0)) {
                    st = h5_fail(partial, "write representations");
                    goto done;
                }
            }
        }
        start += np;
    }
    for (int i = 0; i < n_req; i++) {
        H5Dclose(mean_ds[i]);
        mean_ds[i] = -1;
        if (tok_ds[i] >= 0) H5Dclose(tok_ds[i]);
        tok_ds[i] = -1;
    }
    herr_t crc = H5Fclose(file);
    file = -1;
    if (crc < 0) { st = h5_fail(partial, "close the file"); goto done; }
    if ((st = pq_publish(partial, out_path))) goto done;
    printf("embedded %lld sequences (%lld residues), %d layer(s), D=%lld -> %s\n", (long long)n_recs,
           (long long)toff[n_recs], n_req, (long long)D, out_path);
done:
    for (int i = 0; i < MAX_LAYERS_REQ; i++) {
        if (mean_ds[i] >= 0) H5Dclose(mean_ds[i]);
        if (tok_ds[i] >= 0) H5Dclose(tok_ds[i]);
    }
    if (file >= 0) H5Fclose(file);
    if (st != PQ_OK && partial) unlink(partial);
    free(partial);
    pq_esm2_outputs_clear(&out);
    pq_packed_free(&pk);
    free(mean);
    free(lengths);
    free(toff);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    pq_esm2_model_free(m);
    return st == PQ_OK ? 0 : pq_cli_fail(st);
}
