/* SPDX-License-Identifier: Apache-2.0 */
/* recipe.h - a recipe file: per-tensor precisions over the config's
 * defaults (quantize --recipe, config key "recipe").
 *
 *   {"rules": [
 *     {"layers": "0-1", "linears": ["q", "k", "v"], "precision": "fp16"},
 *     {"linears": "fc1", "precision": "int4", "group_size": 64},
 *     {"tensors": "esm.encoder.layer.5.*", "precision": "int8", "per_channel": true}
 *   ]}
 *
 * A rule selects with any of "tensors" (fnmatch globs on Hugging Face names,
 * a string or a list), "layers" (a layer number, or "A-B" ranges separated by
 * commas) and "linears" (q, k, v, o, fc1, fc2; a string or a list); a tensor
 * must meet every selector given. It sets "precision" (int8 | int4 | fp16 |
 * fp32), "per_channel", "group_size" and "symmetric"; what it leaves out comes
 * from the global options. int8/int4 rules (precision given or not) apply to
 * 2-D float tensors only; fp16/fp32 ones to any stored tensor. The first rule
 * that matches a tensor wins; tensors no rule matches keep the global recipe.
 * Every rule must win at least one tensor. */
#ifndef PQ_RECIPE_H
#define PQ_RECIPE_H

#include "base/pq_err.h"
#include "pipeline/plan.h"

/* Read the recipe file at path and set the action, spec and float16 of every
 * tensor of p it matches (p's tensors hold the config's defaults). Errors:
 * PQ_ERR_CONFIG naming the file and the rule (bad JSON, unknown keys or
 * values, a rule that wins nothing, a group size that does not divide a
 * tensor's columns, GPTQ with one scale per tensor); PQ_ERR_IO when the file
 * cannot be read. */
pq_status pq_recipe_apply(const char *path, const pq_config *c, pq_plan *p);

#endif
