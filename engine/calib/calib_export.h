/* SPDX-License-Identifier: Apache-2.0 */
/* calib_export.h - calibration ranges in other tools' formats.
 *
 *   json         Proteus: per site min/max/counts and the chosen range, scale,
 *                zero point, saturation, KL and MSE for one method.
 *   tensorrt     TensorRT calibration cache text: a header line
 *                "TRT-8601-EntropyCalibration2" (entropy) or
 *                "TRT-8601-MinMaxCalibration" (the others), then one line
 *                "<site>: <8 hex digits>" per site: the fp32 bits of amax / 127,
 *                big-endian hex as TensorRT prints them.
 *   onnxruntime  the calibration.json that onnxruntime.quantization's
 *                write_calibration_table writes for the TensorsData that
 *                quantize_static passes it: {"CLS": "TensorsData", "data":
 *                {"<site>": {"lowest": {"data": v, "dtype": "float32", "CLS":
 *                "numpy.array"}, "highest": {...}, "CLS": "TensorData"}, ...},
 *                "calibration_method": {"CLS": "CalibrationMethod", "value":
 *                "CalibrationMethod.<MinMax|Percentile|Entropy>"}} (mse is
 *                labelled MinMax: ONNX Runtime has no mse calibrator).
 * Site names are the calibration sites (layer.N.attn_in, ...). */
#ifndef PQ_CALIB_EXPORT_H
#define PQ_CALIB_EXPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "calib/calib_methods.h"
#include "calib/calib_stats.h"
#include "base/pq_err.h"

/* Write c's ranges by method m in `format` to out (borrowed). PQ_ERR_CONFIG
 * for an unknown format; PQ_ERR_CALIBRATION when a site is unusable. */
pq_status pq_calib_export(const pq_calib *c, const char *format, pq_calib_method m,
                          bool symmetric, double percentile, FILE *out);

#endif
