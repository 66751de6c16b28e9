/* SPDX-License-Identifier: Apache-2.0 */
/* train_ckpt.h - the training state of a pq_trainer in an HDF5 file:
 * group /train with the datasets weights, adam_m, adam_v (fp32 [n_floats],
 * the layout of train_params.h), for QAT also scale, scale_m, scale_v
 * (fp32 [n_scales]) and zero_point (int32, asymmetric only), curve (f64
 * [step]: the mean loss of each step done), and attributes step (steps
 * done; the data position is step * batch_size sequences) and the recipe
 * (seed, steps, batch_size, micro_size, max_residues, lr, warmup,
 * weight_decay, clip, qat, bits, group_size, symmetric, act_int8,
 * act_static, distill, n_floats, n_scales; the scale datasets hold the
 * weights' steps, then the static input steps). Written to PATH.tmp and renamed over PATH, so a
 * failed or interrupted write keeps the previous checkpoint. */
#ifndef PQ_TRAIN_CKPT_H
#define PQ_TRAIN_CKPT_H

#include "base/pq_err.h"
#include "train/trainer.h"

/* Write tr's state to path (borrowed). Errors: PQ_ERR_IO, with HDF5's
 * detail when the library failed. */
pq_status pq_train_ckpt_write(const pq_trainer *tr, const char *path);

/* Load the state of path into tr, created with the same model and options:
 * PQ_ERR_CONFIG naming the first recipe value that differs, PQ_ERR_FORMAT
 * for a file that is not a training checkpoint or is damaged, PQ_ERR_IO. */
pq_status pq_train_ckpt_read(pq_trainer *tr, const char *path);

#endif
