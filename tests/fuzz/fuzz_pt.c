/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_pt.c - a PyTorch checkpoint of any bytes, named model.pt so that both
 * of torch.save's formats are tried (zip: central directory, entries, the
 * pickle in <archive>/data.pkl, storages as stored entries; legacy: its four
 * pickles and the storages' data area), through pq_st_open as `quantize`
 * opens it: the unpickler (nothing executed), the state dict's tensors and
 * their storages, fair-esm's names mapped to Hugging Face's and a tied head
 * dropped; then the table is checked against the file and read as the
 * safetensors harness reads it (fuzz_ckpt.h). Seeds: tests/fuzz/corpus/pt,
 * written by write_pt_seeds.py. */
#include "fuzz_ckpt.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_fuzz_read_checkpoint(pq_fuzz_write(0, "model.pt", data, size));
    return 0;
}
