/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_file.h - what the libFuzzer harnesses share: the parsers under test
 * read files by path, so each harness writes its input into a file of its
 * own private directory (made once per process, removed at exit). */
#ifndef PQ_FUZZ_FILE_H
#define PQ_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* The private directory (created on first use; aborts when it cannot be). */
const char *pq_fuzz_dir(void);

/* Write n bytes to `name` inside the private directory and return its path
 * (a static buffer per name slot: slot 0..3). Aborts on a write failure, which
 * is the machine's fault, not the input's. */
const char *pq_fuzz_write(int slot, const char *name, const uint8_t *data, size_t n);

/* Abort (a crash libFuzzer records) when st is not a clean Proteus status or
 * a failure left no detail line: every refusal must say why. */
void pq_fuzz_check_status(int st);

#endif
