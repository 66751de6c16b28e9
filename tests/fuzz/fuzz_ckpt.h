/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_ckpt.h - what the checkpoint harnesses (safetensors, pt) do with a
 * file of any bytes once it is written. */
#ifndef PQ_FUZZ_CKPT_H
#define PQ_FUZZ_CKPT_H

/* Open path with pq_st_open; when it opens, check every tensor's byte range
 * lies inside its mapped file and holds its elements exactly (the mapping is
 * not watched by ASan), convert every float tensor's rows (within a budget)
 * and recognise the ESM-2 architecture from names and shapes. Aborts on any
 * lie or unclean status (pq_fuzz_check_status). */
void pq_fuzz_read_checkpoint(const char *path);

#endif
