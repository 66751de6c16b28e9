/* SPDX-License-Identifier: Apache-2.0 */
/* calib_static.h - the static scheme's output: int8 input (activation)
 * qparams for every quantized Linear whose input is a calibration site, and
 * the merged statistics as /calibration, written into a model before commit. */
#ifndef PQ_CALIB_STATIC_H
#define PQ_CALIB_STATIC_H

#include <stdbool.h>

#include "calib/calib_methods.h"
#include "calib/calib_stats.h"
#include "format/h5model.h"
#include "pipeline/plan.h"
#include "base/pq_err.h"

typedef struct pq_calib_static {
    const pq_calib *calib;     /* borrowed merged statistics */
    pq_calib_method method;
    bool symmetric;
    double percentile;         /* percentile method only (default 99.99) */
} pq_calib_static;

/* For each quantized tensor of p mapped to a site (q/k/v -> attn_in, ...):
 * act_scale (and act_zero_point when asymmetric) from the site's range by
 * the method; then /calibration. Checks the statistics first
 * (PQ_ERR_CALIBRATION naming the site and cause). */
pq_status pq_calib_static_write(pq_h5w *w, const pq_plan *p, const pq_calib_static *s);

/* Locate the bundled calibration FASTA (data/proteins/calib_sample.fasta):
 * $PROTEUS_DATA_DIR/proteins, then relative to the executable: ../data,
 * ../../data (build trees), ../share/proteus/data (installs). Writes the
 * path into buf; PQ_ERR_CALIBRATION listing where it looked otherwise. */
pq_status pq_calib_default_data(char *buf, size_t n);

#endif
