/* SPDX-License-Identifier: Apache-2.0 */
/* optimize_verify.c - quantize and evaluate one candidate (optimize_verify.h). */
#include "coordinator/optimize_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/pq_clock.h"
#include "decide/recipe_out.h"
#include "pipeline/config.h"
#include "pipeline/job.h"
#include "worker/runner.h"

#define UNIT_BYTES (64ll << 20)

pq_status pq_optimize_quantize(const pq_optimize_verify *v, const char *recipe_path, const char *out_path)
{
    pq_config cfg;
    pq_job *j = NULL;
    char threads[32];
    pq_config_defaults(&cfg);
    snprintf(threads, sizeof threads, "%d", v->threads);
    pq_status st = pq_config_set(&cfg, "threads", threads);
    if (!st && v->hardware) st = pq_config_set(&cfg, "hardware_target", v->hardware);
    if (!st && !(cfg.recipe = strdup(recipe_path))) st = pq_err(PQ_ERR_RESOURCE, "out of memory");
    if (!st) st = pq_job_open(&cfg, v->model, UNIT_BYTES, &j);
    if (!st) st = pq_job_begin_output(j, out_path, 1, NULL);
    if (!st) st = pq_run_local(j);
    if (!st) st = pq_job_finish_output(j);
    pq_job_destroy(j);
    pq_config_free(&cfg);
    return st;
}

pq_status pq_optimize_verify_measure(void *user, const pq_sens_table *t, pq_measured *m)
{
    const pq_optimize_verify *v = user;
    char recipe[4200], h5[4200];
    pq_esm2_model *q = NULL;
    pq_eval_mlm mlm;
    struct stat sb;
    double loss, ref_acc, kl, secs, ref_secs = v->ref_seconds;
    int64_t n_seqs, n_masked;
    snprintf(recipe, sizeof recipe, "%s/proteus-optimize-%ld.recipe.json", v->tmp_dir, (long)getpid());
    snprintf(h5, sizeof h5, "%s/proteus-optimize-%ld.h5", v->tmp_dir, (long)getpid());
    double t0 = pq_now_s();
    pq_status st = pq_recipe_write(t, m->choice, recipe);
    if (!st) st = pq_optimize_quantize(v, recipe, h5);
    if (!st && stat(h5, &sb) != 0) st = pq_err(PQ_ERR_IO, "%s: the candidate's file is missing", h5);
    if (!st) st = pq_esm2_model_open(h5, &v->model_opts, &q);
    if (!st && v->time_reference) st = pq_sens_run(v->eval, NULL, &mlm, &kl, &ref_secs);
    if (!st) st = pq_sens_run(v->eval, q, &mlm, &kl, &secs);
    if (!st) {
        int64_t tokens = pq_sens_tokens(v->eval);
        pq_sens_reference(v->eval, &loss, &ref_acc, &n_seqs, &n_masked);
        m->bytes = (int64_t)sb.st_size;
        m->accuracy = pq_eval_mlm_accuracy(&mlm);
        m->ref_accuracy = ref_acc;
        m->kl = kl;
        m->tokens_per_s = secs > 0 ? (double)tokens / secs : 0;
        m->ref_tokens_per_s = ref_secs > 0 ? (double)tokens / ref_secs : 0;
        if (v->progress)
            fprintf(stderr, "check %-18s %10lld bytes  accuracy %.4f (fp32 %.4f)  kl %.5f  %.0f tokens/s "
                    "(fp32 %.0f)  [%.1f s]\n", m->label, (long long)m->bytes, m->accuracy, m->ref_accuracy, m->kl,
                    m->tokens_per_s, m->ref_tokens_per_s, pq_now_s() - t0);
    }
    pq_esm2_model_free(q);
    unlink(recipe);
    unlink(h5);
    return st;
}
