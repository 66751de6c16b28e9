/* SPDX-License-Identifier: Apache-2.0 */
/* recipe_out.h - a per-Linear choice as a recipe file for `quantize
 * --recipe` (pipeline/recipe.h): one rule per Linear weight, naming it, with
 * every field of its candidate, so the file decides every Linear whatever
 * the global options (which still decide the tensors that are not Linears). */
#ifndef PQ_DECIDE_RECIPE_OUT_H
#define PQ_DECIDE_RECIPE_OUT_H

#include <jansson.h>

#include "base/pq_err.h"
#include "decide/table.h"

/* The recipe JSON of choice[n_linears] (returns owned, NULL when out of memory). */
json_t *pq_recipe_json(const pq_sens_table *t, const int *choice);

/* Write it to path (through a temporary beside it, renamed: nothing
 * half-written is left). PQ_ERR_IO naming the path. */
pq_status pq_recipe_write(const pq_sens_table *t, const int *choice, const char *path);

#endif
