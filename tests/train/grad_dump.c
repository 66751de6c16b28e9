/* SPDX-License-Identifier: Apache-2.0 */
/* grad_dump.c - test driver: one training forward and backward of the
 * masked-LM loss (mean over the target positions) on a packed batch, with
 * the gradients written as raw float32 for the peer test.
 *
 * The batch file has one sequence per line: the residues, then any number
 * of POS:ID items: token POS (0 = <cls>, so residue i is token i + 1) is
 * shown to the model as ID and is a target whose label is its own residue.
 * Writes OUTDIR/loss.txt (the mean loss), grads.f32 (every trainable
 * tensor's gradient in the layout's order), tensors.txt (one line per
 * tensor: Hugging Face name, offset, element count), dembed.f32 ([N, D]
 * gradient of each token's embedding row) and offsets.txt.
 *
 * usage: grad_dump MODEL.safetensors BATCH.txt OUTDIR [--threads N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"
#include "train/esm2_grad.h"
#include "dump_io.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: grad_dump MODEL BATCH OUTDIR [--threads N]\n");
        return 2;
    }
    int threads = argc > 5 && !strcmp(argv[4], "--threads") ? atoi(argv[5]) : 0;
    FILE *bf = fopen(argv[2], "r");
    if (!bf) {
        fprintf(stderr, "grad_dump: cannot open %s\n", argv[2]);
        return 1;
    }
    int64_t *off = calloc(1, sizeof *off), *pos = NULL, n_t = 0, n_seqs = 0;
    int32_t *ids = NULL, *tgt = NULL;
    char line[65536];
    while (fgets(line, sizeof line, bf)) {
        char *tok = strtok(line, " \t\r\n");
        if (!tok) continue;
        int32_t *t;
        int64_t n;
        pq_status st = pq_tok_encode(tok, strlen(tok), "batch", 0, &t, &n);
        if (st != PQ_OK) return dump_fail("grad_dump", st);
        ids = realloc(ids, (size_t)(off[n_seqs] + n) * sizeof *ids);
        off = realloc(off, (size_t)(n_seqs + 2) * sizeof *off);
        memcpy(ids + off[n_seqs], t, (size_t)n * sizeof *t);
        free(t);
        while ((tok = strtok(NULL, " \t\r\n"))) {
            long long p;
            int id;
            if (sscanf(tok, "%lld:%d", &p, &id) != 2 || p <= 0 || p >= n - 1) {
                fprintf(stderr, "grad_dump: bad item %s\n", tok);
                return 2;
            }
            pos = realloc(pos, (size_t)(n_t + 1) * sizeof *pos);
            tgt = realloc(tgt, (size_t)(n_t + 1) * sizeof *tgt);
            pos[n_t] = off[n_seqs] + p;
            tgt[n_t] = ids[pos[n_t]];
            ids[pos[n_t]] = id;
            n_t++;
        }
        off[n_seqs + 1] = off[n_seqs] + n;
        n_seqs++;
    }
    fclose(bf);
    pq_train_params *p = NULL;
    pq_train_ws *ws = NULL;
    pq_status st = pq_train_params_load(argv[1], &p);
    if (st != PQ_OK) return dump_fail("grad_dump", st);
    if ((st = pq_train_ws_create(p, threads, &ws)) != PQ_OK) return dump_fail("grad_dump", st);
    pq_train_batch tb = {.b = {.n_seqs = n_seqs, .offsets = off, .ids = ids}, .n_targets = n_t, .tgt_pos = pos,
                         .tgt_id = tgt};
    float *grad = calloc((size_t)p->n_floats, sizeof(float));
    double loss = 0.0;
    if ((st = pq_train_forward(ws, p->data, &tb, 1.0f / (float)n_t, &loss)) != PQ_OK) return dump_fail("grad_dump", st);
    if ((st = pq_train_backward(ws, p->data, &tb, grad)) != PQ_OK) return dump_fail("grad_dump", st);
    const char *dir = argv[3];
    char path[1024];
    snprintf(path, sizeof path, "%s/loss.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%.9g\n", loss / (double)n_t);
    fclose(f);
    snprintf(path, sizeof path, "%s/tensors.txt", dir);
    f = fopen(path, "w");
    for (int i = 0; i < p->n_tensors; i++) {
        char name[256];
        pq_esm2_name(p->t[i].role, p->t[i].layer, name, sizeof name);
        fprintf(f, "%s %lld %lld\n", name, (long long)p->t[i].off, (long long)p->t[i].n_elems);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/offsets.txt", dir);
    f = fopen(path, "w");
    for (int64_t s = 0; s <= n_seqs; s++) fprintf(f, "%lld\n", (long long)off[s]);
    fclose(f);
    int rc = dump_file(dir, "grads.f32", grad, (size_t)p->n_floats * 4) ||
             dump_file(dir, "dembed.f32", pq_train_ws_dembed(ws), (size_t)(off[n_seqs] * p->cfg.embed_dim) * 4);
    pq_train_ws_free(ws);
    pq_train_params_free(p);
    free(grad); free(off); free(ids); free(pos); free(tgt);
    return rc;
}
