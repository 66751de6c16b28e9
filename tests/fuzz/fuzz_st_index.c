/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_st_index.c - model.safetensors.index.json of any bytes beside two valid
 * shards (a.safetensors holds "x", b.safetensors holds "y"): the weight_map,
 * its shard paths (absolute, "..", missing files) and the cross-check of
 * every tensor against its shard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"
#include "fuzz_file.h"

static void write_shard(const char *name, const char *tensor)
{
    char json[128];
    int n = snprintf(json, sizeof json, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     tensor);
    uint8_t buf[256] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, (size_t)n);
    pq_fuzz_write(1, name, buf, 8 + (size_t)n + 8);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    write_shard("a.safetensors", "x");
    write_shard("b.safetensors", "y");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_st_model *m = NULL;
    pq_err_clear();
    pq_status st = pq_st_open(pq_fuzz_write(0, "model.safetensors.index.json", data, size), &m);
    pq_fuzz_check_status(st);
    if (st == PQ_OK && pq_st_count(m) > 2) abort(); /* only two tensors exist */
    pq_st_close(m);
    return 0;
}
