/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_safetensors.c - a safetensors file of any bytes: header length, JSON
 * header, dtypes, shapes, offsets and their tiling; then every tensor's byte
 * range is checked against the file, every float tensor's rows are converted
 * and the ESM-2 architecture is recognised from the names and shapes
 * (fuzz_ckpt.h). */
#include "fuzz_ckpt.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_fuzz_read_checkpoint(pq_fuzz_write(0, "model.safetensors", data, size));
    return 0;
}
