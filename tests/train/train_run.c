/* SPDX-License-Identifier: Apache-2.0 */
/* train_run.c - test driver for the training loop: run some steps of a
 * masked-LM training run, writing the training checkpoint after every step
 * and, at the end, the master weights as raw float32.
 *
 * usage: train_run MODEL.safetensors TRAIN.fasta CKPT.h5 WEIGHTS.f32 STEPS RUN
 *          [--resume] [--lr X] [--batch B] [--micro M] [--threads T]
 *          [--qat BITS GROUP_SIZE SYMMETRIC ACT_INT8]
 * STEPS is the run's plan (schedule), RUN the steps to do now. Exits with
 * the status's exit code and its message on failure. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_ckpt.h"
#include "train/trainer.h"
#include "dump_io.h"

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: train_run MODEL FASTA CKPT WEIGHTS STEPS RUN [options]\n");
        return 2;
    }
    pq_train_opts o = pq_train_defaults();
    o.steps = atoll(argv[5]);
    o.max_residues = 128;
    o.lr = 1e-3;
    int64_t run = atoll(argv[6]);
    bool resume = false;
    for (int a = 7; a < argc; a++) {
        if (!strcmp(argv[a], "--resume")) resume = true;
        else if (!strcmp(argv[a], "--lr") && a + 1 < argc) o.lr = atof(argv[++a]);
        else if (!strcmp(argv[a], "--batch") && a + 1 < argc) o.batch_size = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--micro") && a + 1 < argc) o.micro_size = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) o.n_threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--qat") && a + 4 < argc) {
            o.qat = true;
            o.spec.bits = atoi(argv[++a]);
            o.spec.group_size = atoi(argv[++a]);
            o.spec.gran = o.spec.group_size ? PQ_GRAN_GROUP : PQ_GRAN_CHANNEL;
            o.spec.symmetric = atoi(argv[++a]) != 0;
            o.act_int8 = atoi(argv[++a]) != 0;
        } else {
            fprintf(stderr, "train_run: bad option %s\n", argv[a]);
            return 2;
        }
    }
    pq_fasta_opts fo = pq_fasta_defaults();
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    pq_train_params *p = NULL;
    pq_trainer *tr = NULL;
    int rc = 1;
    pq_status st = pq_fasta_read_all(argv[2], &fo, 64, &recs, &n_recs);
    /* every path frees what it made (the sanitized run checks leaks on the failures too) */
    if (st == PQ_OK) st = pq_train_params_load(argv[1], &p);
    if (st == PQ_OK) st = pq_trainer_create(p, recs, n_recs, &o, &tr);
    if (st == PQ_OK && resume && (st = pq_train_ckpt_read(tr, argv[3])) == PQ_OK)
        printf("resumed at step %lld\n", (long long)tr->step);
    for (int64_t i = 0; st == PQ_OK && i < run && tr->step < o.steps; i++) {
        double loss;
        if ((st = pq_trainer_step(tr, &loss)) != PQ_OK) break;
        printf("step %lld loss %.6f\n", (long long)tr->step, loss);
        st = pq_train_ckpt_write(tr, argv[3]);
    }
    if (st != PQ_OK) {
        rc = dump_fail("train_run", st);
        goto done;
    }
    FILE *f = fopen(argv[4], "wb");
    if (!f) goto done;
    bool ok = fwrite(tr->p->data, sizeof(float), (size_t)tr->p->n_floats, f) == (size_t)tr->p->n_floats &&
              (!tr->q || fwrite(tr->q->scale, sizeof(float), (size_t)tr->q->n_scales, f) == (size_t)tr->q->n_scales);
    if (fclose(f) == 0 && ok) rc = 0;
done:
    pq_trainer_free(tr);
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    return rc;
}
