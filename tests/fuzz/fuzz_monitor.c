/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_monitor.c - the bytes of a progress event as `proteus monitor`
 * receives them from a socket (cli/monitor_event.h): decoding, size limit,
 * schema, kind and counts. An event that decodes is packed again, and that
 * packing must decode to an event that packs to the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/monitor_event.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pq_err_clear();
    Proteus__ProgressEvent *e = NULL;
    pq_status st = pq_monitor_event_decode(data, size, &e);
    pq_fuzz_check_status(st);
    if (st != PQ_OK) {
        if (e) abort(); /* a refusal hands back nothing */
        return 0;
    }
    size_t n = proteus__progress_event__get_packed_size(e);
    uint8_t *buf = malloc(n ? n : 1), *buf2 = NULL;
    if (!buf) abort();
    proteus__progress_event__pack(e, buf);
    Proteus__ProgressEvent *e2 = NULL;
    if (pq_monitor_event_decode(buf, n, &e2) != PQ_OK) {
        fprintf(stderr, "a decoded event packs to bytes that do not decode: %s\n", pq_err_detail());
        abort();
    }
    size_t n2 = proteus__progress_event__get_packed_size(e2);
    if (n2 != n || !(buf2 = malloc(n2 ? n2 : 1))) abort();
    proteus__progress_event__pack(e2, buf2);
    if (memcmp(buf, buf2, n) != 0) {
        fprintf(stderr, "an event changed through pack/decode\n");
        abort();
    }
    proteus__progress_event__free_unpacked(e, NULL);
    proteus__progress_event__free_unpacked(e2, NULL);
    free(buf);
    free(buf2);
    return 0;
}
