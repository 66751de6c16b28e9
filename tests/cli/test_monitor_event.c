/* SPDX-License-Identifier: Apache-2.0 */
/* test_monitor_event.c - `proteus monitor`'s event decoding
 * (cli/monitor_event.h): events packed here by protobuf-c come back field
 * for field; empty, oversized and non-protobuf bytes, another schema, a
 * missing or unknown kind, fields the schema does not have and more units
 * done than there are are each
 * refused with PQ_ERR_PROTO and a detail naming the cause. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli/monitor_event.h"
#include "proto/pq_wire.h"

static uint8_t g_buf[PQ_WIRE_MAX_MSG + 1];

static size_t pack(uint32_t schema, const char *kind, uint32_t done, uint32_t total)
{
    Proteus__ProgressEvent e = PROTEUS__PROGRESS_EVENT__INIT;
    e.schema = schema;
    e.phase = (char *)"infer";
    e.kind = (char *)kind;
    e.units_done = done;
    e.units_total = total;
    e.bytes_done = 1234;
    e.unit_id = 2;
    e.n_ranks = 3;
    return proteus__progress_event__pack(&e, g_buf);
}

static void refused(size_t n, const char *cause)
{
    Proteus__ProgressEvent *e = (Proteus__ProgressEvent *)1;
    pq_err_clear();
    assert_int_equal(pq_monitor_event_decode(g_buf, n, &e), PQ_ERR_PROTO);
    assert_null(e);
    if (!strstr(pq_err_detail(), cause)) fail_msg("detail '%s' does not name '%s'", pq_err_detail(), cause);
}

static void test_good(void **state)
{
    (void)state;
    Proteus__ProgressEvent *e = NULL;
    size_t n = pack(PQ_WIRE_SCHEMA, "unit", 3, 10);
    assert_int_equal(pq_monitor_event_decode(g_buf, n, &e), PQ_OK);
    assert_string_equal(e->kind, "unit");
    assert_string_equal(e->phase, "infer");
    assert_int_equal(e->units_done, 3);
    assert_int_equal(e->units_total, 10);
    assert_int_equal(e->bytes_done, 1234);
    assert_int_equal(e->unit_id, 2);
    assert_int_equal(e->n_ranks, 3);
    proteus__progress_event__free_unpacked(e, NULL);
}

static void test_malformed(void **state)
{
    (void)state;
    char want[128];
    refused(0, "an empty event");
    memset(g_buf, 0, sizeof g_buf);
    snprintf(want, sizeof want, "an event of %u bytes, over the %u-byte limit", PQ_WIRE_MAX_MSG + 1, PQ_WIRE_MAX_MSG);
    refused(PQ_WIRE_MAX_MSG + 1, want);
    memcpy(g_buf, "\xff\xff\xff\xff", 4); /* field 0x1fffffff..., a varint that never ends */
    refused(4, "not a ProgressEvent protobuf message");
    snprintf(want, sizeof want, "schema %u, where this proteus reads schema %u", PQ_WIRE_SCHEMA + 1, PQ_WIRE_SCHEMA);
    refused(pack(PQ_WIRE_SCHEMA + 1, "unit", 1, 2), want);
    refused(pack(PQ_WIRE_SCHEMA, "", 1, 2), "without a kind");
    refused(pack(PQ_WIRE_SCHEMA, "bogus", 1, 2), "unknown kind 'bogus'");
    refused(pack(PQ_WIRE_SCHEMA, "unit", 11, 10), "11 units done of 10");
    /* fields the schema does not have: a field 99 varint, and (found by
     * fuzz_monitor) the key 0x80 0x00, field number 0, which protobuf-c
     * keeps as an unknown field and then cannot read back once packed */
    size_t n = pack(PQ_WIRE_SCHEMA, "unit", 1, 2);
    memcpy(g_buf + n, "\x98\x06\x01", 3);
    refused(n + 3, "field(s) schema");
    n = pack(PQ_WIRE_SCHEMA, "unit", 1, 2);
    memcpy(g_buf + n, "\x80\x00\x02", 3);
    refused(n + 3, "(field number 0 first)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
