/* SPDX-License-Identifier: Apache-2.0 */
/* api_eval.c - the public evaluation call (proteus.h): a quantized model
 * against its float reference on one FASTA file, the comparison of
 * `proteus evaluate` (eval/compare.h), summarised in plain numbers. */
#include <stdio.h>
#include <string.h>

#include "api/proteus.h"
#include "eval/compare.h"

pq_status pq_evaluate(const pq_config *cfg, const char *model, const char *reference, const char *fasta,
                      int64_t max_seqs, uint64_t seed, pq_eval_summary *out)
{
    pq_eval_compare_opts co = {.model = model, .reference = reference, .fasta = fasta,
                               .max_seqs = max_seqs, .max_length = 500, .batch_tokens = 4096,
                               .seed = seed, .mask_frac = 0.15};
    co.model_opts = (pq_esm2_model_opts){.n_threads = cfg->threads, .no_fusion = !cfg->enable_fusion,
                                         .no_threading = !cfg->threading};
    pq_status st = pq_config_apply_hardware(cfg, &co.model_opts.ops);
    if (st) return st;
    co.reference_opts = (pq_esm2_model_opts){.n_threads = co.model_opts.n_threads,
                                             .no_threading = co.model_opts.no_threading,
                                             .ops = co.model_opts.ops};
    pq_eval_report r;
    memset(&r, 0, sizeof r);
    if (!(st = pq_eval_compare(&co, &r))) {
        double acc_r = pq_eval_mlm_accuracy(&r.ref.mlm), acc_q = pq_eval_mlm_accuracy(&r.q.mlm);
        *out = (pq_eval_summary){
            .n_sequences = r.n_sequences, .n_tokens = r.n_tokens, .n_masked = r.ref.mlm.n_masked,
            .accuracy_reference = acc_r, .accuracy_quantized = acc_q, .accuracy_drop_points = 100 * (acc_r - acc_q),
            .perplexity_reference = pq_eval_mlm_perplexity(&r.ref.mlm),
            .perplexity_quantized = pq_eval_mlm_perplexity(&r.q.mlm),
            .logits_kl_mean = r.kl_mean, .logits_kl_max = r.kl_max, .logits_cosine_mean = r.logits_cosine_mean,
            .embedding_cosine_mean = r.embedding_cosine_mean,
            .file_bytes_reference = r.ref.file_bytes, .file_bytes_quantized = r.q.file_bytes,
            .weight_bytes_reference = r.ref.weight_bytes, .weight_bytes_quantized = r.q.weight_bytes,
            .confidence_reference = pq_eval_calib_confidence(&r.ref.cal),
            .confidence_quantized = pq_eval_calib_confidence(&r.q.cal),
            .ece_reference = pq_eval_calib_ece(&r.ref.cal), .ece_quantized = pq_eval_calib_ece(&r.q.cal),
            .top1_error_reference = pq_eval_top1_error(&r.ref), .top1_error_quantized = pq_eval_top1_error(&r.q),
            .top1_disagreement = pq_eval_disagreement(&r),
            .achieved_gops = r.util.achieved_gops, .peak_gops = r.util.peak_gops,
            .utilization_fraction = r.util.fraction, .threads_busy = r.util.threads_busy,
            .memory_gbps = r.util.memory_gbps,
        };
        snprintf(out->utilization_kernel, sizeof out->utilization_kernel, "%s", r.util.kernel);
    }
    pq_eval_report_free(&r);
    return st;
}
