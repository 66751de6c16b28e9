/* SPDX-License-Identifier: Apache-2.0 */
/* calib_static.h - the static scheme's output: int8 input (activation)
 * qparams for every quantized Linear whose input is a calibration site, and
 * the merged statistics as /calibration, written into a model before commit;
 * where its statistics come from (a store, calibration data or the bundled
 * sample), and arming a job to write them. One process runs it all with
 * pq_calib_static_setup; an MPI run collects across ranks
 * (coordinator/calib_mpi.h) and arms rank 0's job with the same calls. */
#ifndef PQ_CALIB_STATIC_H
#define PQ_CALIB_STATIC_H

#include <stdbool.h>

#include "calib/calib_methods.h"
#include "calib/calib_run.h"
#include "calib/calib_stats.h"
#include "format/h5model.h"
#include "pipeline/job.h"
#include "pipeline/plan.h"
#include "base/pq_err.h"

typedef struct pq_calib_static {
    const pq_calib *calib;     /* borrowed merged statistics */
    pq_calib_method method;
    bool symmetric;
    double percentile;         /* percentile method only (default 99.99) */
    const struct pq_smooth *smooth; /* NULL, or SmoothQuant's factors: the smoothed sites take
                                     * (-amax, amax), amax = max_j absmax_j / s_j (quant/smooth.h) */
} pq_calib_static;

/* For each quantized tensor of p mapped to a site (q/k/v -> attn_in, ...):
 * act_scale (and act_zero_point when asymmetric) from the site's range by
 * the method; then /calibration. Checks the statistics first
 * (PQ_ERR_CALIBRATION naming the site and cause). */
pq_status pq_calib_static_write(pq_h5w *w, const pq_plan *p, const pq_calib_static *s);

/* Locate the bundled calibration FASTA (proteins/calib_sample.fasta in the
 * places of pq_bundled_find, base/bundled.h) and log it (info). Writes the
 * path into buf; PQ_ERR_CALIBRATION listing every place tried otherwise. */
pq_status pq_calib_default_data(char *buf, size_t n);

/* Where the statistics come from: with no store and no *data, the bundled
 * sample (pq_calib_default_data into buf of n bytes; *data then points to
 * buf and o->max_seqs is PQ_CALIB_DEFAULT_SEQS). Otherwise nothing changes.
 * PQ_ERR_CALIBRATION when the bundled sample is needed and not found. */
pq_status pq_calib_static_default(const char *store, const char **data, char *buf, size_t n,
                                  pq_calib_data_opts *o);

/* Load the calibration store at `store` (borrowed) for the model j has
 * open: the store's model digest must be the tree digest of j's checkpoint
 * (hashed with the job's threads), else PQ_ERR_CALIBRATION naming both.
 * Returns owned *out (pq_calib_free). */
pq_status pq_calib_static_load_store(const char *store, const pq_job *j, pq_calib **out);

/* A static run: the merged statistics and how to turn them into act
 * qparams; what j->before_commit_user points to once armed. */
typedef struct pq_calib_static_run pq_calib_static_run;

/* Check calib (taken, freed on failure too) and arm j: its before-commit
 * hook then writes act qparams by the job config's calibration_method and
 * symmetric, and /calibration (pq_calib_static_write). Returns owned *out
 * (pq_calib_static_done), which must outlive pq_job_finish_output.
 * PQ_ERR_CALIBRATION (j left unarmed) when the statistics are unusable. */
pq_status pq_calib_static_arm(pq_job *j, pq_calib *calib, pq_calib_static_run **out);
void pq_calib_static_done(pq_calib_static_run *r); /* NULL is fine */

/* The merged statistics an armed run holds (borrowed), and SmoothQuant's
 * factors for its act qparams (borrowed, must outlive the job's finish). */
const pq_calib *pq_calib_static_stats(const pq_calib_static_run *r);
void pq_calib_static_set_smooth(pq_calib_static_run *r, const struct pq_smooth *sm);

/* The static scheme on this process alone, for j opened on `model`
 * (borrowed): statistics from `store` when given, else collected from
 * `data` (the bundled sample, its first PQ_CALIB_DEFAULT_SEQS sequences,
 * when NULL) with the job's threads; then pq_calib_static_arm. Every failure to obtain usable
 * statistics is PQ_ERR_CALIBRATION (bundled sample not found, no usable
 * sequence, a site that never fired, NaN/Inf, a store of another model),
 * except unreadable files (PQ_ERR_IO / PQ_ERR_FORMAT naming them). */
pq_status pq_calib_static_setup(pq_job *j, const char *model, const char *store, const char *data,
                                pq_calib_static_run **out);

#endif
