/* SPDX-License-Identifier: Apache-2.0 */
/* recipe_out.c - recipe files from a choice (recipe_out.h). */
#include "decide/recipe_out.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

json_t *pq_recipe_json(const pq_sens_table *t, const int *choice)
{
    json_t *rules = json_array();
    for (int i = 0; rules && i < t->n_linears; i++) {
        const pq_cand *c = &t->cands[choice[i]];
        json_t *r = c->precision >= 16
                        ? json_pack("{s:s, s:s}", "tensors", t->lin[i].tensor, "precision", pq_cand_precision_name(c))
                        : json_pack("{s:s, s:s, s:b, s:i, s:b}", "tensors", t->lin[i].tensor, "precision",
                                    pq_cand_precision_name(c), "per_channel", c->per_channel, "group_size",
                                    c->group_size, "symmetric", c->symmetric);
        if (!r || json_array_append_new(rules, r)) {
            json_decref(rules);
            return NULL;
        }
    }
    return rules ? json_pack("{s:o}", "rules", rules) : NULL;
}

pq_status pq_recipe_write(const pq_sens_table *t, const int *choice, const char *path)
{
    char tmp[4200];
    json_t *j = pq_recipe_json(t, choice);
    if (!j) return pq_err(PQ_ERR_RESOURCE, "out of memory for the recipe");
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int bad = json_dump_file(j, tmp, JSON_INDENT(1));
    json_decref(j);
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return pq_err(PQ_ERR_IO, "%s: cannot write the recipe: %s", path, bad ? "write failed" : strerror(e));
    }
    return PQ_OK;
}
