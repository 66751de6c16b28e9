/* SPDX-License-Identifier: Apache-2.0 */
/* adamw_dump.c - test driver: one pq_adamw_update on the float32 files
 * DIR/p.f32, g.f32, m.f32, v.f32 (same length), written back as p1.f32,
 * m1.f32, v1.f32.
 *
 * usage: adamw_dump DIR STEP LR WEIGHT_DECAY BETA1 BETA2 EPS */
#include <stdio.h>
#include <stdlib.h>

#include "train/adamw.h"
#include "dump_io.h"

static float *slurp(const char *dir, const char *name, long *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f) / 4;
    fseek(f, 0, SEEK_SET);
    float *p = malloc((size_t)*n * 4 + 4);
    if (p && fread(p, 4, (size_t)*n, f) != (size_t)*n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: adamw_dump DIR STEP LR WEIGHT_DECAY BETA1 BETA2 EPS\n");
        return 2;
    }
    const char *d = argv[1];
    long n = 0, n2 = 0, n3 = 0, n4 = 0;
    float *p = slurp(d, "p.f32", &n), *g = slurp(d, "g.f32", &n2), *m = slurp(d, "m.f32", &n3),
          *v = slurp(d, "v.f32", &n4);
    if (!p || !g || !m || !v || n2 != n || n3 != n || n4 != n) {
        fprintf(stderr, "adamw_dump: cannot read the inputs in %s\n", d);
        return 1;
    }
    pq_adamw h = {.beta1 = atof(argv[5]), .beta2 = atof(argv[6]), .eps = atof(argv[7])};
    pq_adamw_update(&h, atoll(argv[2]), atof(argv[3]), atof(argv[4]), p, g, m, v, n);
    int rc = dump_file(d, "p1.f32", p, (size_t)n * 4) || dump_file(d, "m1.f32", m, (size_t)n * 4) ||
             dump_file(d, "v1.f32", v, (size_t)n * 4);
    free(p); free(g); free(m); free(v);
    return rc;
}
