/* SPDX-License-Identifier: Apache-2.0 */
/* fasta_dump.c - the token ids Proteus reads from a FASTA file, one record a
 * line ("ID<TAB>id,id,..."), for test_fasta_peer.py to compare with fair-esm.
 * On a refusal: the detail on stderr and the Proteus exit status.
 * usage: fasta_dump FASTA [MAX_RESIDUES] */
#include <stdio.h>
#include <stdlib.h>

#include "model/fasta.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fasta_dump FASTA [MAX_RESIDUES]\n");
        return 2;
    }
    pq_fasta_opts o = pq_fasta_defaults();
    if (argc > 2) o.max_residues = atoll(argv[2]);
    pq_fasta_record *r = NULL;
    int64_t n = 0;
    pq_status st = pq_fasta_read_all(argv[1], &o, 0, &r, &n);
    if (st != PQ_OK) {
        fprintf(stderr, "fasta_dump: %s\n", pq_err_detail());
        return pq_status_exit_code(st);
    }
    for (int64_t i = 0; i < n; i++) {
        printf("%s\t", r[i].id);
        for (int64_t k = 0; k < r[i].n_ids; k++) printf(k ? ",%d" : "%d", r[i].ids[k]);
        printf("\n");
        pq_fasta_record_free(&r[i]);
    }
    free(r);
    return 0;
}
