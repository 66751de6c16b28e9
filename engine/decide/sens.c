/* SPDX-License-Identifier: Apache-2.0 */
/* sens.c - per-Linear sensitivity with the engine (sens.h). */
#include "decide/sens.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "base/pq_clock.h"
#include "eval/eval_metrics.h"
#include "eval/score.h"
#include "model/batch.h"
#include "model/fasta.h"
#include "quant/rtn.h"

static const pq_esm2_role k_roles[6] = {PQ_ESM2_Q, PQ_ESM2_K, PQ_ESM2_V, PQ_ESM2_OUT, PQ_ESM2_FC1, PQ_ESM2_FC2};

/* One forward batch, masked, with the reference's logits and the input
 * activations of the layers a unit may start from. */
typedef struct sens_batch {
    pq_packed pk;
    int32_t *orig;    /* [n_tokens] true id of masked positions, -1 elsewhere */
    float *ref;       /* [n_tokens, V] reference logits */
    float **xin;      /* [L]: layer l's input [n_tokens, D] for l a positive multiple of the stride, else NULL */
} sens_batch;

struct pq_sens {
    pq_esm2_model *m;
    int L, V;
    sens_batch *b;
    int n_b;
    int64_t n_seqs;
    pq_eval_mlm ref_mlm;
    double **xsq;     /* [L * 6]: per input column, sum over tokens of x^2 */
    int stride;       /* layers whose inputs are kept: multiples of it (0: none) */
    int64_t n_tok;    /* tokens seen by the reference pass */
    float *save;      /* a weight's original values while a unit runs */
    int64_t save_cap;
};

static void observe_sq(void *user, const pq_ops *ops, int layer, pq_esm2_role site, const float *x, int64_t N,
                       int64_t d)
{
    pq_sens *s = user;
    (void)ops;
    for (int r = 0; layer >= 0 && r < 6; r++) {
        if (k_roles[r] != site) continue;
        double *acc = s->xsq[layer * 6 + r];
        if (!acc) return;
        for (int64_t t = 0; t < N; t++)
            for (int64_t j = 0; j < d; j++) acc[j] += (double)x[t * d + j] * (double)x[t * d + j];
    }
}

/* The stride of the kept layer inputs: every layer when they fit in
 * PQ_SENS_CACHE_BYTES, else every stride-th (0: none fits). */
static int cache_stride(const pq_sens *s, const pq_sens_opts *o, const pq_fasta_record *recs, int64_t n_recs)
{
    if (!o->cache_layers || s->L < 2) return 0;
    int64_t tokens = 0;
    for (int64_t i = 0; i < n_recs; i++) tokens += recs[i].n_ids;
    double per_layer = (double)tokens * (double)pq_esm2_model_config(s->m)->embed_dim * sizeof(float);
    for (int k = 1; k < s->L; k++)
        if ((double)((s->L - 1) / k) * per_layer <= (double)PQ_SENS_CACHE_BYTES) return k;
    return 0;
}

/* Pack, mask and run the reference over every batch. */
static pq_status reference_pass(pq_sens *s, const pq_sens_opts *o, const pq_fasta_record *recs, int64_t n_recs)
{
    pq_status st = PQ_OK;
    pq_esm2_outputs out;
    memset(&out, 0, sizeof out);
    out.want_logits = true;
    s->stride = cache_stride(s, o, recs, n_recs);
    for (int l = s->stride; s->stride && l < s->L; l += s->stride) out.repr_layers[out.n_repr++] = l;
    pq_esm2_model_set_observer(s->m, observe_sq, s);
    for (int64_t start = 0; start < n_recs && st == PQ_OK;) {
        int64_t np = 0;
        sens_batch *nb = realloc(s->b, (size_t)(s->n_b + 1) * sizeof *nb);
        if (!nb) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); break; }
        s->b = nb;
        sens_batch *b = &s->b[s->n_b++];
        memset(b, 0, sizeof *b);
        if ((st = pq_pack_records(recs, n_recs, start, o->batch_tokens, &b->pk, &np)) != PQ_OK) break;
        if ((st = pq_eval_mask_batch(&b->pk, np, o->seed, o->mask_frac, &b->orig)) != PQ_OK) break;
        pq_esm2_outputs_clear(&out);
        if ((st = pq_esm2_forward(s->m, &b->pk.batch, NULL, &out)) != PQ_OK) break;
        int64_t N = b->pk.offsets[np];
        b->ref = out.logits;
        out.logits = NULL;
        if (out.n_repr && !(b->xin = calloc((size_t)s->L, sizeof *b->xin))) {
            st = pq_err(PQ_ERR_RESOURCE, "out of memory");
            break;
        }
        for (int i = 0; i < out.n_repr; i++) {
            b->xin[out.repr_layers[i]] = out.repr[i];
            out.repr[i] = NULL;
        }
        pq_eval_mlm_add(&s->ref_mlm, b->ref, b->orig, N, s->V);
        s->n_tok += N;
        start += np;
    }
    pq_esm2_model_set_observer(s->m, NULL, NULL);
    pq_esm2_outputs_clear(&out);
    return st;
}

pq_status pq_sens_open(const pq_sens_opts *o, pq_sens **out)
{
    pq_status st;
    pq_fasta_record *recs = NULL;
    int64_t n_recs = 0;
    pq_sens *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s) return pq_err(PQ_ERR_RESOURCE, "out of memory");
    pq_fasta_opts fo = pq_fasta_defaults();
    fo.max_residues = o->max_length;
    if ((st = pq_fasta_read_all(o->fasta, &fo, o->max_seqs, &recs, &n_recs)) != PQ_OK) goto done;
    if ((st = pq_esm2_model_load(o->model, &o->model_opts, &s->m)) != PQ_OK) goto done;
    const pq_esm2_config *cfg = pq_esm2_model_config(s->m);
    s->L = cfg->num_layers;
    s->V = cfg->vocab_size;
    s->n_seqs = n_recs;
    if (!(s->xsq = calloc((size_t)s->L * 6, sizeof *s->xsq))) { st = pq_err(PQ_ERR_RESOURCE, "out of memory"); goto done; }
    for (int l = 0; l < s->L; l++)
        for (int r = 0; r < 6; r++) {
            int64_t d = r == 5 ? cfg->ffn_dim : cfg->embed_dim;
            if (!(s->xsq[l * 6 + r] = calloc((size_t)d, sizeof(double)))) {
                st = pq_err(PQ_ERR_RESOURCE, "out of memory");
                goto done;
            }
        }
    st = reference_pass(s, o, recs, n_recs);
done:
    for (int64_t i = 0; i < n_recs; i++) pq_fasta_record_free(&recs[i]);
    free(recs);
    if (st) pq_sens_close(s);
    else *out = s;
    return st;
}

void pq_sens_close(pq_sens *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_b; i++) {
        pq_packed_free(&s->b[i].pk);
        free(s->b[i].orig);
        free(s->b[i].ref);
        for (int l = 0; s->b[i].xin && l < s->L; l++) free(s->b[i].xin[l]);
        free(s->b[i].xin);
    }
    free(s->b);
    for (int i = 0; s->xsq && i < s->L * 6; i++) free(s->xsq[i]);
    free(s->xsq);
    free(s->save);
    pq_esm2_model_free(s->m);
    free(s);
}

pq_status pq_sens_layout(const pq_sens *s, const pq_cand *cands, int n, pq_sens_table *t)
{
    const pq_esm2_config *cfg = pq_esm2_model_config(s->m);
    pq_status st = pq_sens_table_alloc(t, s->L * 6, n);
    if (st) return st;
    memcpy(t->cands, cands, (size_t)n * sizeof *cands);
    for (int l = 0; l < s->L; l++)
        for (int r = 0; r < 6; r++) {
            pq_sens_linear *li = &t->lin[l * 6 + r];
            li->layer = l;
            li->linear = r;
            li->rows = r == 4 ? cfg->ffn_dim : cfg->embed_dim;
            li->cols = r == 5 ? cfg->ffn_dim : cfg->embed_dim;
            pq_esm2_name(k_roles[r], l, li->tensor, sizeof li->tensor);
            for (int j = 0; j < n; j++) {
                if (!pq_cand_fits(&cands[j], li->cols)) {
                    pq_sens_table_free(t);
                    return pq_err(PQ_ERR_CONFIG, "candidate group size %d does not divide the %lld columns of %s",
                                  cands[j].group_size, (long long)li->cols, li->tensor);
                }
                pq_sens_at(t, l * 6 + r, j)->bytes = pq_cand_bytes(&cands[j], li->rows, li->cols);
            }
        }
    return PQ_OK;
}

int pq_sens_n_units(const pq_sens_table *t)
{
    int m = 0;
    for (int j = 0; j < t->n_cands; j++) m += t->cands[j].precision < 32;
    return t->n_linears * m;
}

void pq_sens_unit_cell(const pq_sens_table *t, int unit, int *lin, int *cand)
{
    int m = 0;
    for (int j = 0; j < t->n_cands; j++) m += t->cands[j].precision < 32;
    *lin = unit / m;
    int k = unit % m;
    for (int j = 0; j < t->n_cands; j++)
        if (t->cands[j].precision < 32 && k-- == 0) *cand = j;
}

static pq_status run_from(pq_sens *s, pq_esm2_model *m, int from, pq_eval_mlm *mlm, double *kl, double *seconds);

/* w (rows x cols) into its fake-quantized values under c, in place. */
static pq_status fake_quantize(pq_sens *s, const pq_sens_linear *l, const pq_cand *c, float *w)
{
    int64_t n = l->rows * l->cols;
    if (c->precision == 16) {
        for (int64_t i = 0; i < n; i++) w[i] = pq_f16_to_f32(pq_f32_to_f16(w[i]));
        return PQ_OK;
    }
    pq_qspec spec = pq_cand_qspec(c);
    pq_qtensor qt;
    memset(&qt, 0, sizeof qt);
    pq_status st = pq_rtn_quantize(pq_esm2_model_ops(s->m), 1, w, l->rows, l->cols, &spec, PQ_NAN_ERROR, l->tensor,
                                   &qt);
    if (st == PQ_OK) pq_qtensor_dequantize_rows(&qt, 0, l->rows, w);
    pq_qtensor_free(&qt);
    return st;
}

pq_status pq_sens_measure(pq_sens *s, const pq_sens_table *t, int unit, pq_sens_cell *out)
{
    int li, cj;
    pq_sens_unit_cell(t, unit, &li, &cj);
    const pq_sens_linear *l = &t->lin[li];
    int64_t n_elems;
    float *w = pq_esm2_model_tensor(s->m, k_roles[l->linear], l->layer, &n_elems);
    if (!w || n_elems != l->rows * l->cols)
        return pq_err(PQ_ERR_INTERNAL, "%s: not a loaded float weight of %lld x %lld", l->tensor, (long long)l->rows,
                      (long long)l->cols);
    if (n_elems > s->save_cap) {
        float *p = realloc(s->save, (size_t)n_elems * sizeof *p);
        if (!p) return pq_err(PQ_ERR_RESOURCE, "out of memory");
        s->save = p;
        s->save_cap = n_elems;
    }
    memcpy(s->save, w, (size_t)n_elems * sizeof *w);
    *out = (pq_sens_cell){.bytes = pq_sens_at(t, li, cj)->bytes};
    pq_status st = fake_quantize(s, l, &t->cands[cj], w);
    /* the estimate: sum_j (2/n sum_t x_tj^2) sum_i (w_ij - q_ij)^2 */
    const double *xsq = s->xsq[l->layer * 6 + l->linear];
    for (int64_t j = 0; st == PQ_OK && j < l->cols; j++) {
        double e = 0;
        for (int64_t i = 0; i < l->rows; i++) {
            double d = (double)s->save[i * l->cols + j] - (double)w[i * l->cols + j];
            e += d * d;
        }
        out->estimate += 2.0 * xsq[j] / (double)s->n_tok * e;
    }
    pq_eval_mlm mlm = {0};
    double kl = 0, secs;
    /* the layers before this one see the reference's activations: the
     * forward starts from the nearest kept input at or below it */
    int from = s->stride ? l->layer / s->stride * s->stride : 0;
    if (st == PQ_OK) st = run_from(s, NULL, from, &mlm, &kl, &secs);
    memcpy(w, s->save, (size_t)n_elems * sizeof *w);
    if (st) return st;
    out->d_loss = mlm.nll / (double)mlm.n_masked - s->ref_mlm.nll / (double)s->ref_mlm.n_masked;
    out->kl = kl;
    if (out->kl < 0) out->kl = 0; /* rounding of identical rows */
    return PQ_OK;
}

pq_status pq_sens_run(pq_sens *s, pq_esm2_model *m, pq_eval_mlm *mlm, double *kl, double *seconds)
{
    return run_from(s, m, 0, mlm, kl, seconds);
}

/* pq_sens_run from layer `from` on (0, or a layer whose input is kept). */
static pq_status run_from(pq_sens *s, pq_esm2_model *m, int from, pq_eval_mlm *mlm, double *kl, double *seconds)
{
    pq_status st = PQ_OK;
    pq_esm2_outputs o;
    double sum = 0, t0 = 0;
    int64_t n_pos = 0;
    memset(&o, 0, sizeof o);
    memset(mlm, 0, sizeof *mlm);
    o.want_logits = true;
    *seconds = 0;
    if (!m) m = s->m;
    for (int bi = 0; st == PQ_OK && bi < s->n_b; bi++) {
        const sens_batch *b = &s->b[bi];
        pq_esm2_outputs_clear(&o);
        t0 = pq_now_s();
        const float *x_in = from ? b->xin[from] : NULL;
        if ((st = pq_esm2_forward_from(m, &b->pk.batch, from, x_in, &o)) != PQ_OK) break;
        *seconds += pq_now_s() - t0;
        int64_t N = b->pk.offsets[b->pk.batch.n_seqs];
        pq_eval_mlm_add(mlm, o.logits, b->orig, N, s->V);
        for (int64_t q = 0; q < b->pk.batch.n_seqs; q++)
            for (int64_t tk = b->pk.offsets[q] + 1; tk < b->pk.offsets[q + 1] - 1; tk++) {
                sum += pq_eval_kl(b->ref + tk * s->V, o.logits + tk * s->V, s->V);
                n_pos++;
            }
    }
    pq_esm2_outputs_clear(&o);
    *kl = n_pos ? sum / (double)n_pos : 0.0;
    return st;
}

int64_t pq_sens_tokens(const pq_sens *s)
{
    return s->n_tok;
}

pq_esm2_model *pq_sens_model(pq_sens *s)
{
    return s->m;
}

void pq_sens_reference(const pq_sens *s, double *loss, double *accuracy, int64_t *n_seqs, int64_t *n_masked)
{
    *loss = s->ref_mlm.nll / (double)s->ref_mlm.n_masked;
    *accuracy = pq_eval_mlm_accuracy(&s->ref_mlm);
    *n_seqs = s->n_seqs;
    *n_masked = s->ref_mlm.n_masked;
}
