/* SPDX-License-Identifier: Apache-2.0 */
/* fq_dump.c - test driver for fake quantization: takes one Linear weight of
 * a checkpoint (layer 0 fc1), initialises its steps by RTN through the QAT
 * state, fake quantizes it and runs the LSQ backward of an upstream
 * gradient read from OUTDIR/dwhat.f32; also fake quantizes the weight's
 * rows as if they were activations (int8 per token), and its first
 * ACT_TOKENS rows as the input of a static site of width cols: step s =
 * max|x| / 254 (so that the largest values clip), the upstream gradient
 * the first values of dwhat.f32.
 *
 * Writes w.f32, scale.f32, zp.i32 (asymmetric only), what.f32, dw.f32,
 * ds.f32, act.f32, the static site's sact.f32 (s), xhat.f32, dx.f32 and
 * dsact.f32 (s's LSQ gradient), and shape.txt ("rows cols groups qmin
 * qmax") into OUTDIR.
 *
 * usage: fq_dump MODEL.safetensors OUTDIR BITS GROUP_SIZE(0 = per channel) SYMMETRIC(0|1) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/fake_quant.h"
#include "train/qat.h"
#include "dump_io.h"

#define ACT_TOKENS 64

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: fq_dump MODEL OUTDIR BITS GROUP_SIZE SYMMETRIC\n");
        return 2;
    }
    const char *dir = argv[2];
    int gs = atoi(argv[4]);
    pq_qspec spec = {.bits = atoi(argv[3]), .gran = gs ? PQ_GRAN_GROUP : PQ_GRAN_CHANNEL, .group_size = gs,
                     .symmetric = atoi(argv[5]) != 0};
    pq_train_params *p = NULL;
    pq_qat *q = NULL;
    pq_status st = pq_train_params_load(argv[1], &p);
    if (st != PQ_OK) return dump_fail("fq_dump", st);
    if ((st = pq_qat_create(p, p->data, &spec, false, &q)) != PQ_OK) return dump_fail("fq_dump", st);
    const pq_qat_site *s = NULL;
    for (int i = 0; i < q->n_sites; i++)
        if (q->site[i].role == PQ_ESM2_FC1 && q->site[i].layer == 0) s = &q->site[i];
    int64_t n = s->rows * s->cols, ns = s->rows * s->n_groups;
    float *what = malloc((size_t)p->n_floats * sizeof(float)), *dw = malloc((size_t)n * sizeof(float));
    float *ds = calloc((size_t)q->n_scales, sizeof(float)), *act = malloc((size_t)n * sizeof(float));
    char path[1024];
    snprintf(path, sizeof path, "%s/dwhat.f32", dir);
    FILE *f = fopen(path, "rb");
    if (!f || fread(dw, sizeof(float), (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "fq_dump: cannot read %s\n", path);
        return 1;
    }
    fclose(f);
    pq_qat_apply(q, p->data, p->n_floats, what, 2);
    /* the backward takes the gradient with respect to w_hat in place */
    float *grad = calloc((size_t)p->n_floats, sizeof(float));
    memcpy(grad + s->w_off, dw, (size_t)n * sizeof(float));
    pq_qat_backward(q, p->data, grad, ds, 2);
    memcpy(act, p->data + s->w_off, (size_t)n * sizeof(float));
    pq_fq_act_rows_ref(act, s->rows, s->cols);
    int64_t na = ACT_TOKENS * s->cols;
    float amax = 0.0f, *xhat = malloc((size_t)na * sizeof(float)), *dx = malloc((size_t)na * sizeof(float));
    for (int64_t i = 0; i < na; i++) amax = fabsf(p->data[s->w_off + i]) > amax ? fabsf(p->data[s->w_off + i]) : amax;
    float sact = amax / 254.0f;
    pq_fq_act_static_fwd_ref(p->data + s->w_off, na, sact, xhat);
    float dsact = (float)(pq_fq_act_static_bwd_ref(p->data + s->w_off, dw, na, sact, dx) * pq_fq_act_gscale(s->cols));
    snprintf(path, sizeof path, "%s/shape.txt", dir);
    f = fopen(path, "w");
    fprintf(f, "%lld %lld %lld %d %d\n", (long long)s->rows, (long long)s->cols, (long long)s->n_groups, q->qmin,
            q->qmax);
    fclose(f);
    int rc = dump_file(dir, "w.f32", p->data + s->w_off, (size_t)n * 4) ||
             dump_file(dir, "scale.f32", q->scale + s->s_off, (size_t)ns * 4) ||
             (q->zp && dump_file(dir, "zp.i32", q->zp + s->s_off, (size_t)ns * 4)) ||
             dump_file(dir, "what.f32", what + s->w_off, (size_t)n * 4) ||
             dump_file(dir, "dw.f32", grad + s->w_off, (size_t)n * 4) ||
             dump_file(dir, "ds.f32", ds + s->s_off, (size_t)ns * 4) || dump_file(dir, "act.f32", act, (size_t)n * 4) ||
             dump_file(dir, "sact.f32", &sact, 4) || dump_file(dir, "xhat.f32", xhat, (size_t)na * 4) ||
             dump_file(dir, "dx.f32", dx, (size_t)na * 4) || dump_file(dir, "dsact.f32", &dsact, 4);
    free(xhat); free(dx);
    free(what); free(dw); free(ds); free(act); free(grad);
    pq_qat_free(q);
    pq_train_params_free(p);
    return rc;
}
