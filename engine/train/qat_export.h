/* SPDX-License-Identifier: Apache-2.0 */
/* qat_export.h - a trained model as a Proteus HDF5 model file (docs/
 * FORMAT.md), the same file `proteus quantize` writes and evaluate, score,
 * embed and inspect read.
 *
 * Every tensor of the source checkpoint is written under its name: the
 * fake-quantized Linear weights (QAT) as codes with the learned steps and
 * the zero points (method "qat"; scheme "static" with the learned input
 * steps as act_scale when trained with static int8 activations, "dynamic"
 * with per-token int8 activations, else "w8a16" / "w4a16"), the other trained tensors as fp32
 * from the master weights (a decoder stored as a copy of the embedding
 * gets the trained embedding), and the rest (rotary inv_freq, contact
 * head) copied from the source. Without QAT every tensor is fp32: the
 * file format's float form. /provenance gets command_line, qat_recipe
 * (JSON) and qat_curve (JSON: the mean training loss of every step), and
 * qat_eval when given. */
#ifndef PQ_QAT_EXPORT_H
#define PQ_QAT_EXPORT_H

#include "base/pq_err.h"
#include "train/trainer.h"

typedef struct pq_qat_export_info {
    const char *command_line; /* NULL: none */
    const char *recipe_json;  /* NULL: none */
    const char *eval_json;    /* NULL: none */
} pq_qat_export_info;

/* Write tr's model (source checkpoint src_path, borrowed) to out_path
 * (through OUT.partial, renamed when complete). Errors: the writer's
 * (PQ_ERR_IO ...), pq_st_open's, PQ_ERR_RESOURCE. */
pq_status pq_qat_export(const pq_trainer *tr, const char *src_path, const char *out_path,
                        const pq_qat_export_info *info);

#endif
