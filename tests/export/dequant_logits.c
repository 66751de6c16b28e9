/* SPDX-License-Identifier: Apache-2.0 */
/* dequant_logits.c - test driver: the logits of a Proteus HDF5 model run by
 * the fp32 engine on its dequantized weights (PQ_ESM2_QMODE_DEQUANT), for
 * the sequences given, as one packed batch: OUT.f32 holds [tokens, 33]
 * float32, one line per sequence on stdout its token count.
 *
 * With DEQUANT_LOGITS_MODE=auto in the environment the model runs as the
 * inference commands run it (quantized kernels, PQ_ESM2_QMODE_AUTO) instead.
 *
 * usage: dequant_logits MODEL.h5 OUT.f32 SEQ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/esm2_model.h"
#include "model/tokenizer.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: dequant_logits MODEL.h5 OUT.f32 SEQ...\n");
        return 2;
    }
    int n = argc - 3;
    int64_t *off = calloc((size_t)n + 1, sizeof *off);
    int32_t *ids = NULL;
    pq_esm2_model *m = NULL;
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    pq_status st = off ? PQ_OK : PQ_ERR_RESOURCE;
    for (int s = 0; s < n && !st; s++) {
        int32_t *t, *grown;
        int64_t k;
        if ((st = pq_tok_encode(argv[3 + s], strlen(argv[3 + s]), argv[3 + s], 0, &t, &k))) break;
        if (!(grown = realloc(ids, (size_t)(off[s] + k) * sizeof *ids))) st = PQ_ERR_RESOURCE;
        else memcpy((ids = grown) + off[s], t, (size_t)k * sizeof *t);
        off[s + 1] = off[s] + k;
        free(t);
    }
    const char *mode = getenv("DEQUANT_LOGITS_MODE");
    pq_esm2_model_opts o = {.quantized_mode = mode && !strcmp(mode, "auto") ? PQ_ESM2_QMODE_AUTO
                                                                             : PQ_ESM2_QMODE_DEQUANT};
    pq_esm2_batch b = {.n_seqs = n, .offsets = off, .ids = ids};
    out.want_logits = true;
    if (!st) st = pq_esm2_model_open(argv[1], &o, &m);
    if (!st) st = pq_esm2_forward(m, &b, NULL, &out);
    if (!st) {
        FILE *f = fopen(argv[2], "wb");
        size_t len = (size_t)off[n] * 33;
        if (!f || fwrite(out.logits, sizeof(float), len, f) != len || fclose(f)) st = PQ_ERR_IO;
        for (int s = 0; s < n && !st; s++) printf("%lld\n", (long long)(off[s + 1] - off[s]));
    }
    if (st) fprintf(stderr, "dequant_logits: %s: %s\n", pq_strerror(st), pq_err_detail());
    pq_esm2_outputs_clear(&out);
    pq_esm2_model_free(m);
    free(off);
    free(ids);
    return st ? 1 : 0;
}
