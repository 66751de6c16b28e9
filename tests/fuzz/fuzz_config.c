/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_config.c - a --config JSON file of any bytes: keys, value types and
 * ranges, include/exclude lists; an accepted file is validated and its
 * canonical JSON is read back, which must give the same canonical JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "pipeline/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_err_clear();
    const char *p = pq_fuzz_write(0, "config.json", data, size);
    pq_config c;
    pq_config_defaults(&c);
    pq_status st = pq_config_load_json(&c, p);
    pq_fuzz_check_status(st);
    if (st == PQ_OK) {
        pq_fuzz_check_status(pq_config_validate(&c));
        char *js = pq_config_to_json(&c);
        if (!js) abort();
        const char *p2 = pq_fuzz_write(1, "canonical.json", (const uint8_t *)js, strlen(js));
        pq_config c2;
        pq_config_defaults(&c2);
        st = pq_config_load_json(&c2, p2);
        if (st != PQ_OK) {
            fprintf(stderr, "canonical config refused: %s\n%s\n", pq_err_detail(), js);
            abort();
        }
        char *js2 = pq_config_to_json(&c2);
        if (!js2 || strcmp(js, js2) != 0) {
            fprintf(stderr, "canonical config changed on reading:\n%s\n%s\n", js, js2 ? js2 : "(null)");
            abort();
        }
        free(js2);
        free(js);
        pq_config_free(&c2);
    }
    pq_config_free(&c);
    return 0;
}
