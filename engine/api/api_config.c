/* SPDX-License-Identifier: Apache-2.0 */
/* api_config.c - a configuration on the heap (proteus.h), for bindings
 * that should not mirror pq_config's layout. */
#include <stdlib.h>

#include "api/proteus.h"

pq_config *pq_config_new(void)
{
    pq_config *c = malloc(sizeof *c);
    if (c) pq_config_defaults(c);
    return c;
}

void pq_config_delete(pq_config *c)
{
    if (!c) return;
    pq_config_free(c);
    free(c);
}

pq_status pq_hardware_check(const char *target)
{
    pq_ops ops;
    return pq_hardware_select(target, &ops);
}
