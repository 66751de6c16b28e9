/* SPDX-License-Identifier: Apache-2.0 */
/* api_prov.c - one /provenance string of a Proteus model file (proteus.h). */
#include "api/proteus.h"
#include "format/h5model.h"

pq_status pq_model_provenance(const char *path, const char *key, char **out)
{
    pq_h5r *r = NULL;
    *out = NULL;
    pq_status st = pq_h5r_open(path, &r);
    if (!st) st = pq_h5r_provenance(r, key, out);
    pq_h5r_close(r);
    if (!st && !*out) st = pq_err(PQ_ERR_FORMAT, "%s: /provenance has no %s", path, key);
    return st;
}
