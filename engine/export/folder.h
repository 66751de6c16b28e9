/* SPDX-License-Identifier: Apache-2.0 */
/* folder.h - the model folders of the safetensors and compressed-tensors
 * exports: which tensors they hold and where each one's bytes come from
 * (folder.c), and their JSON files (folder_json.c). */
#ifndef PQ_EXPORT_FOLDER_H
#define PQ_EXPORT_FOLDER_H

#include <stdbool.h>

#include "export/export.h"
#include "export/st_write.h"
#include "format/h5model.h"

/* Where a tensor's bytes come from (pq_stw_tensor.tag). */
enum {
    PQ_XT_FLOAT = 0,   /* entry `index`, read (dequantized) as fp32, stored as the tensor's dtype */
    PQ_XT_INV_FREQ,    /* the rotary inv_freq of the file's head size */
    PQ_XT_ZEROS,       /* a part the file lacks (the contact head) */
    PQ_XT_POSITIONS,   /* position_ids: 0 .. n-1 as I64 */
    PQ_XT_CODES,       /* entry `index`: its codes in the compressed-tensors layout */
    PQ_XT_SCALE,       /* entry `index`: weight_scale */
    PQ_XT_ZERO_POINT,  /* entry `index`: weight_zero_point */
    PQ_XT_SHAPE,       /* entry `index`: weight_shape */
};

/* The tensors of the folder of model r; *out owned (pq_folder_free). */
typedef struct pq_folder {
    pq_stw_tensor *t;
    int64_t n, cap;
    bool tied;          /* the LM decoder is the word embeddings */
    bool packed;        /* compressed-tensors: pack-quantized (some tensor has 4 bits) */
} pq_folder;

pq_status pq_folder_plan(pq_h5r *r, const pq_export_opts *o, pq_folder *f);
void pq_folder_free(pq_folder *f);

/* The pq_stw_fill of a planned folder (user: the pq_folder_fill_ctx). */
typedef struct pq_folder_fill_ctx pq_folder_fill_ctx;
pq_status pq_folder_fill_open(pq_h5r *r, pq_folder_fill_ctx **out);
void pq_folder_fill_close(pq_folder_fill_ctx *c);
pq_status pq_folder_fill(void *user, const pq_stw_tensor *t, void *dst);

/* config.json (with quantization_config for compressed-tensors), vocab.txt,
 * tokenizer_config.json and special_tokens_map.json into dir. */
pq_status pq_folder_write_json(const char *dir, pq_h5r *r, const pq_export_opts *o, const pq_folder *f);

#endif
