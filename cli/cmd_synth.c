/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_synth.c - `proteus synth`: a deterministic synthetic ESM-2 checkpoint. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "format/synth.h"

typedef struct synth_opts {
    const char *arch, *out;
    uint64_t seed;
    int dtype; /* index in k_dtypes */
    int outliers;
    double outlier_scale;
} synth_opts;

static const char *const k_dtypes[] = {"f32", "f16", NULL};

static const pq_cli_opt k_opts[] = {
    {.name = "arch", .kind = PQ_CLI_STR, .offset = offsetof(synth_opts, arch), .flags = PQ_CLI_REQUIRED,
     .meta = "NAME", .help = "a published ESM-2 size (listed below; short forms like t6_8M\nor 650M work too)"},
    {.name = "seed", .kind = PQ_CLI_U64, .offset = offsetof(synth_opts, seed), .meta = "N",
     .help = "unsigned 64-bit seed", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "out", .kind = PQ_CLI_STR, .offset = offsetof(synth_opts, out), .flags = PQ_CLI_REQUIRED,
     .meta = "PATH", .help = "output .safetensors file"},
    {.name = "dtype", .kind = PQ_CLI_CHOICE, .offset = offsetof(synth_opts, dtype), .choices = k_dtypes,
     .meta = "f32|f16", .help = "storage type", .flags = PQ_CLI_SHOW_DEFAULT},
    {.name = "outliers", .kind = PQ_CLI_INT, .offset = offsetof(synth_opts, outliers), .lo = 0, .hi = 100000,
     .meta = "K", .help = "plant activation outliers: K hidden channels (the same in\nevery layer, from the seed) of every "
     "per-layer LayerNorm\nscaled by --outlier-scale, so q/k/v and fc1 see a few huge\ninput channels (default 0: none)"},
    {.name = "outlier-scale", .kind = PQ_CLI_F64, .offset = offsetof(synth_opts, outlier_scale), .lo = 1, .hi = 1e6,
     .meta = "F", .help = "factor of the outlier channels", .flags = PQ_CLI_SHOW_DEFAULT},
    {0},
};

/* The names --arch knows, comma-separated, into buf. */
static void arch_list(char *buf, size_t len, const char *sep)
{
    int n;
    const pq_esm2_arch *a = pq_esm2_archs(&n);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        strncat(buf, i ? sep : "", len - strlen(buf) - 1);
        strncat(buf, a[i].name, len - strlen(buf) - 1);
    }
}

static void help_archs(FILE *f)
{
    char list[512];
    arch_list(list, sizeof list, "\n  ");
    fprintf(f, "\n--arch names:\n  %s\n", list);
}

static const pq_cli_cmd k_cmd = {
    .name = "synth",
    .usage = "usage: proteus synth --arch NAME --seed N --out FILE.safetensors [--dtype f32|f16]",
    .about = "Write a synthetic checkpoint with exactly the Hugging Face tensor names and\n"
             "shapes of a published ESM-2 size, deterministic from the seed (same seed, same\n"
             "bytes). Weights have realistic magnitudes (Linear ~ N(0, 0.02) with outlier rows\n"
             "and columns); the file is streamed, so the 3B size fits in little memory.",
    .opts = k_opts,
    .more_help = help_archs,
};

int pq_cmd_synth(int argc, char **argv)
{
    synth_opts o = {.outlier_scale = PQ_SYNTH_OUTLIER_SCALE};
    int rc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (rc != PQ_CLI_RUN) return rc;
    const char *arch = o.arch, *out = o.out, *dtype = k_dtypes[o.dtype];
    unsigned long long seed = o.seed;
    const pq_esm2_arch *a = pq_esm2_arch_find(arch);
    if (!a) {
        char list[512];
        arch_list(list, sizeof list, ", ");
        return pq_cli_usage_error("synth", "unknown --arch '%s' (known: %s)", arch, list);
    }
    pq_dtype dt = o.dtype == 0 ? PQ_DT_F32 : PQ_DT_F16;
    if (o.outliers > a->embed_dim)
        return pq_cli_usage_error("synth", "--outliers %d: %s has %d hidden channels", o.outliers, a->name,
                                  a->embed_dim);
    pq_synth_outliers ol = {.channels = o.outliers, .scale = (float)o.outlier_scale};
    pq_status st = pq_synth_write_ex(a, (uint64_t)seed, dt, out, 16u << 20, &ol);
    if (st) return pq_cli_fail(st);
    char b[32];
    printf("wrote %s (%s, %lld parameters, %s, seed %llu, %s)\n", out, a->name, (long long)a->n_params,
           dtype, seed, pq_cli_bytes((double)a->n_params * (dt == PQ_DT_F32 ? 4 : 2), b, sizeof b));
    if (o.outliers) printf("planted %d outlier channels x %g in every layer's LayerNorms\n", o.outliers, o.outlier_scale);
    return 0;
}
