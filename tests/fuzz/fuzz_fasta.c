/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_fasta.c - a FASTA file of any bytes, plain or gzip. The first input
 * byte chooses the reader's options (length limit, what to do with long and
 * empty records and unknown letters) and whether the rest is gzip-compressed
 * before reading (raw input that happens to be gzip, corrupt or not, is read
 * as gzip too). Every record returned must be <cls> ids <eos> with ids in the
 * alphabet and within the limit. */
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "fuzz_file.h"
#include "model/fasta.h"
#include "model/tokenizer.h"

static void check_record(const pq_fasta_record *r, const pq_fasta_opts *o)
{
    if (!r->id || !r->desc || !r->ids || r->n_ids < 3) abort();
    if (r->ids[0] != PQ_TOK_CLS || r->ids[r->n_ids - 1] != PQ_TOK_EOS) abort();
    if (o->max_residues > 0 && r->n_ids - 2 > o->max_residues) abort();
    for (int64_t i = 1; i < r->n_ids - 1; i++)
        if (r->ids[i] < 0 || r->ids[i] >= PQ_TOK_VOCAB || r->ids[i] == PQ_TOK_PAD) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    pq_err_clear();
    uint8_t sel = data[0];
    pq_fasta_opts o = pq_fasta_defaults();
    o.max_residues = (sel & 3) == 0 ? 0 : (sel & 3) == 1 ? 4 : 1022;
    o.on_long = (pq_fasta_long)((sel >> 2) % 3);
    o.unknown_to_unk = sel & 0x10;
    o.skip_empty = sel & 0x20;
    const char *p;
    if (sel & 0x40) {
        p = pq_fuzz_write(0, "in.fasta.gz", NULL, 0);
        gzFile gz = gzopen(p, "wb");
        if (!gz || (size > 1 && gzwrite(gz, data + 1, (unsigned)(size - 1)) <= 0) || gzclose(gz) != Z_OK) abort();
    } else {
        p = pq_fuzz_write(0, "in.fasta", data + 1, size - 1);
    }
    if (sel & 0x80) {
        pq_fasta_record *recs = NULL;
        int64_t n = 0;
        pq_status st = pq_fasta_read_all(p, &o, 0, &recs, &n);
        pq_fuzz_check_status(st);
        for (int64_t i = 0; i < n; i++) {
            check_record(&recs[i], &o);
            pq_fasta_record_free(&recs[i]);
        }
        free(recs);
        return 0;
    }
    pq_fasta *f = NULL;
    pq_status st = pq_fasta_open(p, &o, &f);
    pq_fuzz_check_status(st);
    if (st != PQ_OK) return 0;
    for (;;) {
        pq_fasta_record r;
        bool got = false;
        st = pq_fasta_next(f, &r, &got);
        pq_fuzz_check_status(st);
        if (st != PQ_OK || !got) break;
        check_record(&r, &o);
        pq_fasta_record_free(&r);
    }
    pq_fasta_close(f);
    return 0;
}
