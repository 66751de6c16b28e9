/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_msg.c - a control message between ranks of any bytes under any tag
 * (first input byte): protobuf decoding, size limit, schema version, value
 * ranges. A message that decodes is encoded again, and that encoding must
 * decode and encode to the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "proto/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    pq_err_clear();
    int tag = PQ_TAG_PLAN + data[0] % (PQ_TAG_END_ - PQ_TAG_PLAN + 1);
    pq_msg m;
    memset(&m, 0, sizeof m);
    pq_status st = pq_msg_decode(tag, 3, data + 1, size - 1, &m);
    pq_fuzz_check_status(st);
    if (st != PQ_OK) return 0;
    if (m.tag != tag || m.source != 3) abort();
    uint8_t *buf = NULL;
    size_t len = 0;
    if (pq_msg_encode(&m, &buf, &len) != PQ_OK) {
        fprintf(stderr, "decoded message does not encode: %s\n", pq_err_detail());
        abort();
    }
    pq_msg m2;
    memset(&m2, 0, sizeof m2);
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    if (pq_msg_decode(tag, 3, buf, len, &m2) != PQ_OK || pq_msg_encode(&m2, &buf2, &len2) != PQ_OK) {
        fprintf(stderr, "re-encoded message does not decode: %s\n", pq_err_detail());
        abort();
    }
    if (len != len2 || memcmp(buf, buf2, len) != 0) {
        fprintf(stderr, "message %s changed through decode/encode\n", pq_msg_name(tag));
        abort();
    }
    free(buf);
    free(buf2);
    return 0;
}
