/* SPDX-License-Identifier: Apache-2.0 */
/* test_job_metrics.c - the writer side of a job (job.h) when results arrive
 * out of plan order, as they do from several ranks: pq_job_end_next writes a
 * tensor's metrics only once it and every quantized tensor before it are
 * complete, and the metrics in the file match SQNR and errors recomputed
 * here from the stored codes and scales against the fp32 source. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "format/h5model.h"
#include "pipeline/job.h"
#include "t6_fixture.h"

static char g_dir[256], g_model[300];

static int setup(void **state)
{
    (void)state;
    return pq_t6_fixture_make("jobm", 3, g_dir, g_model);
}

static int teardown(void **state)
{
    (void)state;
    return pq_t6_fixture_remove(g_dir);
}

/* The first quantized tensor in plan order that is not yet complete, given
 * which units were put; n_tensors when all are. */
static int first_incomplete(const pq_plan *p, const bool *put)
{
    for (int t = 0; t < p->n_tensors; t++) {
        if (p->tensors[t].action != PQ_ACT_QUANT) continue;
        for (int u = 0; u < p->n_units; u++)
            if (p->units[u].tensor == t && !put[u]) return t;
    }
    return p->n_tensors;
}

/* Metrics recomputed from the file's int8 codes and per-row scales (w_hat =
 * code * scale) against the source's fp32 rows. */
static void check_metrics(pq_h5r *r, const pq_st_model *src, const char *name)
{
    const pq_h5r_entry *e = pq_h5r_find(r, name);
    assert_non_null(e);
    pq_qtensor q = {0};
    pq_qmetrics m;
    assert_int_equal(pq_h5r_read_qtensor(r, e, &q), PQ_OK);
    assert_int_equal(pq_h5r_read_metrics(r, name, &m), PQ_OK);
    const pq_st_tensor *t = pq_st_find(src, name);
    assert_non_null(t);
    float *w = malloc((size_t)(q.rows * q.cols) * sizeof *w);
    assert_non_null(w);
    assert_int_equal(pq_st_read_rows_f32(src, t, 0, q.rows, w), PQ_OK);
    double s = 0, err = 0, mx = 0;
    for (int64_t i = 0; i < q.rows; i++)
        for (int64_t c = 0; c < q.cols; c++) {
            double x = w[i * q.cols + c];
            double xh = (double)((const int8_t *)q.codes)[i * q.code_row_bytes + c] * (double)q.scale[i];
            s += x * x;
            err += (x - xh) * (x - xh);
            if (fabs(x - xh) > mx) mx = fabs(x - xh);
        }
    assert_true(fabs(m.sum_sq - s) <= 1e-9 * s);
    assert_true(fabs(m.err_sq - err) <= 1e-6 * err);
    assert_true(fabs(m.sqnr_db - 10.0 * log10(s / err)) < 1e-6);
    /* the quantizer forms w - w_hat in fp32: its rounding is ~1e-5 of a step */
    assert_true(fabs(m.max_abs_err - mx) <= 1e-4 * mx);
    assert_int_equal(m.n_nonfinite, 0);
    free(w);
    pq_qtensor_free(&q);
}

/* Run unit u and put its result, as rank 0 does with its own or a received one. */
static void run_put(pq_job *j, const pq_unit *u)
{
    pq_unit_result r;
    assert_int_equal(pq_job_run_unit(j, u, &r), PQ_OK);
    assert_int_equal(pq_job_put_result(j, u, &r), PQ_OK);
    pq_unit_result_free(&r);
}

static void test_metrics_in_plan_order(void **state)
{
    (void)state;
    pq_config c;
    pq_job *j = NULL;
    char out[320];
    snprintf(out, sizeof out, "%s/rev.h5", g_dir);
    pq_config_defaults(&c);
    assert_int_equal(pq_config_set(&c, "per_channel", "true"), PQ_OK);
    /* 256 KiB units: each 1280x320 fp32 tensor (1.6 MB) is several units */
    assert_int_equal(pq_job_open(&c, g_model, 256 << 10, &j), PQ_OK);
    const pq_plan *p = pq_job_plan(j);
    assert_true(p->n_units > 36);
    assert_int_equal(pq_job_begin_output(j, out, 2, NULL), PQ_OK);
    bool *put = calloc((size_t)p->n_units, sizeof *put);
    assert_non_null(put);
    /* last unit first: nothing may end until the first tensor is complete */
    int ended = 0;
    for (int u = p->n_units - 1; u >= 0; u--) {
        run_put(j, &p->units[u]);
        put[u] = true;
        for (bool did = true; did;) {
            assert_int_equal(pq_job_end_next(j, &did), PQ_OK);
            ended += did;
        }
        /* ended up to the first incomplete quantized tensor, none after */
        assert_int_equal(pq_job_tensors_ended(j), first_incomplete(p, put));
        if (u > 0) assert_int_equal(ended, 0); /* unit 0 is the first tensor's */
    }
    assert_int_equal(ended, 36);
    assert_int_equal(pq_job_tensors_ended(j), p->n_tensors);
    assert_int_equal(pq_job_finish_output(j), PQ_OK);
    assert_int_equal(pq_job_stats_of(j)->n_quantized, 36);

    pq_h5r *r = NULL;
    pq_st_model *src = NULL;
    assert_int_equal(pq_h5r_open(out, &r), PQ_OK);
    assert_int_equal(pq_st_open(g_model, &src), PQ_OK);
    for (int t = 0; t < p->n_tensors; t++)
        if (p->tensors[t].action == PQ_ACT_QUANT) check_metrics(r, src, p->tensors[t].st->name);
    pq_st_close(src);
    pq_h5r_close(r);
    free(put);
    pq_job_destroy(j);
    pq_config_free(&c);
}

/* A commit with a tensor short of rows fails and leaves no output. */
static void test_incomplete_tensor_fails(void **state)
{
    (void)state;
    pq_config c;
    pq_job *j = NULL;
    char out[320];
    snprintf(out, sizeof out, "%s/short.h5", g_dir);
    pq_config_defaults(&c);
    assert_int_equal(pq_job_open(&c, g_model, 256 << 10, &j), PQ_OK);
    const pq_plan *p = pq_job_plan(j);
    assert_int_equal(pq_job_begin_output(j, out, 1, NULL), PQ_OK);
    for (int u = 0; u + 1 < p->n_units; u++) run_put(j, &p->units[u]);
    pq_err_clear();
    assert_int_equal(pq_job_finish_output(j), PQ_ERR_INTERNAL);
    assert_non_null(strstr(pq_err_detail(), p->tensors[p->units[p->n_units - 1].tensor].st->name));
    pq_job_destroy(j);
    assert_int_not_equal(access(out, F_OK), 0);
    pq_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_in_plan_order),
        cmocka_unit_test(test_incomplete_tensor_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
