/* SPDX-License-Identifier: Apache-2.0 */
/* test_msg.c - proto/msg.c against garbage: malformed, oversized,
 * wrong-schema and unexpected messages all give PQ_ERR_PROTO naming the rank
 * and the message type, through the pure decoder and through MPI (an MPI
 * singleton sending to itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/msg.h"
#include "proteus.pb-c.h"

static void assert_detail_has(const char *a, const char *b)
{
    const char *d = pq_err_detail();
    if (!strstr(d, a) || (b && !strstr(d, b))) fail_msg("detail '%s' lacks '%s' / '%s'", d, a, b ? b : "");
}

static void roundtrip(void **state)
{
    (void)state;
    pq_msg m = {.tag = PQ_TAG_RESULT}, back;
    m.u.result = (pq_wire_result){.unit_id = 7, .rank = 2, .n_rows = 51, .code_bytes = 51 * 320,
                                  .n_scales = 51, .has_zero_point = true, .sum_sq = 1.5, .err_sq = 0.25};
    uint8_t *buf;
    size_t len;
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_OK);
    assert_int_equal(pq_msg_decode(PQ_TAG_RESULT, 2, buf, len, &back), PQ_OK);
    assert_int_equal(back.u.result.unit_id, 7);
    assert_int_equal(back.u.result.n_rows, 51);
    assert_int_equal(back.u.result.code_bytes, 51 * 320);
    assert_true(back.u.result.has_zero_point);
    assert_true(back.u.result.err_sq == 0.25);
    /* the same bytes claimed by rank 3: the rank field names another rank */
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_RESULT, 3, buf, len, &back), PQ_ERR_PROTO);
    assert_detail_has("UnitResult", "rank 3");
    free(buf);
}

/* OutputLayout and UnitResult.codes_in_file survive a round trip; a layout
 * of no tensors or of another schema is malformed, naming rank and type. */
static void output_layout(void **state)
{
    (void)state;
    pq_msg m = {.tag = PQ_TAG_LAYOUT}, back;
    m.u.layout = (pq_wire_layout){.file_dev = 0x803, .file_ino = (1ull << 40) + 5, .n_tensors = 700};
    uint8_t *buf;
    size_t len;
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_OK);
    assert_int_equal(pq_msg_decode(PQ_TAG_LAYOUT, 0, buf, len, &back), PQ_OK);
    assert_true(back.u.layout.file_dev == 0x803);
    assert_true(back.u.layout.file_ino == (1ull << 40) + 5);
    assert_int_equal(back.u.layout.n_tensors, 700);
    free(buf);

    m.u.layout.n_tensors = 0;
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_OK);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LAYOUT, 0, buf, len, &back), PQ_ERR_PROTO);
    assert_detail_has("malformed OutputLayout message from rank 0", "no tensors");
    free(buf);

    Proteus__OutputLayout old = PROTEUS__OUTPUT_LAYOUT__INIT;
    old.schema = 2;
    old.n_tensors = 3;
    uint8_t raw[64];
    size_t n = proteus__output_layout__pack(&old, raw);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LAYOUT, 0, raw, n, &back), PQ_ERR_PROTO);
    assert_detail_has("OutputLayout message from rank 0 has schema version 2", NULL);

    pq_msg r = {.tag = PQ_TAG_RESULT};
    r.u.result = (pq_wire_result){.unit_id = 3, .rank = 1, .n_rows = 8, .code_bytes = 8 * 64, .n_scales = 8,
                                  .codes_in_file = true};
    assert_int_equal(pq_msg_encode(&r, &buf, &len), PQ_OK);
    assert_int_equal(pq_msg_decode(PQ_TAG_RESULT, 1, buf, len, &back), PQ_OK);
    assert_true(back.u.result.codes_in_file);
    free(buf);
    r.u.result.codes_in_file = false;
    assert_int_equal(pq_msg_encode(&r, &buf, &len), PQ_OK);
    assert_int_equal(pq_msg_decode(PQ_TAG_RESULT, 1, buf, len, &back), PQ_OK);
    assert_false(back.u.result.codes_in_file);
    free(buf);
}

/* HashLeaves: leaves survive a round trip; a leaf that is not 32 bytes, a
 * count mismatch or a foreign rank field is malformed, naming rank and type. */
static void hash_leaves(void **state)
{
    (void)state;
    pq_msg m = {.tag = PQ_TAG_LEAVES}, back;
    m.u.leaves.rank = 1;
    m.u.leaves.n = 2;
    m.u.leaves.chunk[0] = 4;
    m.u.leaves.chunk[1] = 9;
    for (int i = 0; i < 32; i++) {
        m.u.leaves.leaf[0][i] = (uint8_t)i;
        m.u.leaves.leaf[1][i] = (uint8_t)(255 - i);
    }
    uint8_t *buf;
    size_t len;
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_OK);
    assert_int_equal(pq_msg_decode(PQ_TAG_LEAVES, 1, buf, len, &back), PQ_OK);
    assert_int_equal(back.u.leaves.n, 2);
    assert_int_equal(back.u.leaves.chunk[1], 9);
    assert_memory_equal(back.u.leaves.leaf[0], m.u.leaves.leaf[0], 32);
    assert_memory_equal(back.u.leaves.leaf[1], m.u.leaves.leaf[1], 32);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LEAVES, 2, buf, len, &back), PQ_ERR_PROTO);
    assert_detail_has("HashLeaves message from rank 2", "another rank");
    free(buf);

    Proteus__HashLeaves h = PROTEUS__HASH_LEAVES__INIT;
    uint32_t chunks[2] = {0, 1};
    uint8_t bytes[33] = {0};
    ProtobufCBinaryData leaves[2] = {{32, bytes}, {31, bytes}};
    h.schema = PQ_WIRE_SCHEMA;
    h.rank = 3;
    h.n_chunks = h.n_leaves = 2;
    h.chunks = chunks;
    h.leaves = leaves;
    uint8_t out[256];
    size_t n = proteus__hash_leaves__pack(&h, out);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LEAVES, 3, out, n, &back), PQ_ERR_PROTO);
    assert_detail_has("malformed HashLeaves message from rank 3", "is 31 bytes");
    leaves[1].len = 33;
    n = proteus__hash_leaves__pack(&h, out);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LEAVES, 3, out, n, &back), PQ_ERR_PROTO);
    assert_detail_has("HashLeaves message from rank 3", "is 33 bytes");
    leaves[1].len = 32;
    h.n_chunks = 1;
    n = proteus__hash_leaves__pack(&h, out);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LEAVES, 3, out, n, &back), PQ_ERR_PROTO);
    assert_detail_has("HashLeaves message from rank 3", "counts differ");
    h.n_chunks = h.n_leaves = 0;
    n = proteus__hash_leaves__pack(&h, out);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_LEAVES, 3, out, n, &back), PQ_ERR_PROTO);
    assert_detail_has("HashLeaves message from rank 3", "no leaves");
}

static void garbage(void **state)
{
    (void)state;
    /* 0xff...: an invalid varint key; then a length-delimited field whose
     * length runs past the end */
    static const uint8_t junk1[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t junk2[] = {0x2a, 0x7f, 'a', 'b'};
    int tags[] = {PQ_TAG_RESULT, PQ_TAG_ERROR, PQ_TAG_DONE, PQ_TAG_SHUTDOWN, PQ_TAG_PLAN, PQ_TAG_LEAVES};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        pq_msg m;
        pq_err_clear();
        assert_int_equal(pq_msg_decode(tags[i], 5, junk1, sizeof junk1, &m), PQ_ERR_PROTO);
        assert_detail_has(pq_msg_name(tags[i]), "rank 5");
        pq_err_clear();
        assert_int_equal(pq_msg_decode(tags[i], 6, junk2, sizeof junk2, &m), PQ_ERR_PROTO);
        assert_detail_has(pq_msg_name(tags[i]), "rank 6");
    }
}

static void wrong_schema_and_values(void **state)
{
    (void)state;
    Proteus__Done d = PROTEUS__DONE__INIT;
    d.schema = 7;
    uint8_t buf[64];
    size_t n = proteus__done__pack(&d, buf);
    pq_msg m;
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_DONE, 1, buf, n, &m), PQ_ERR_PROTO);
    assert_detail_has("schema version 7", "Done message from rank 1");
    /* schema absent (proto3 default 0) is also wrong */
    d.schema = 0;
    n = proteus__done__pack(&d, buf);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_DONE, 1, buf, n, &m), PQ_ERR_PROTO);
    /* an Error whose status is not a pq_status */
    Proteus__Error e = PROTEUS__ERROR__INIT;
    e.schema = PQ_WIRE_SCHEMA;
    e.status = 999;
    e.detail = "x";
    n = proteus__error__pack(&e, buf);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_ERROR, 4, buf, n, &m), PQ_ERR_PROTO);
    assert_detail_has("Error", "rank 4");
    /* a UnitResult with a negative row count */
    Proteus__UnitResult r = PROTEUS__UNIT_RESULT__INIT;
    r.schema = PQ_WIRE_SCHEMA;
    r.rank = 2;
    r.n_rows = -4;
    n = proteus__unit_result__pack(&r, buf);
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_RESULT, 2, buf, n, &m), PQ_ERR_PROTO);
}

static void oversized_and_unknown(void **state)
{
    (void)state;
    size_t big = PQ_WIRE_MAX_MSG + 1;
    uint8_t *buf = calloc(1, big);
    pq_msg m;
    pq_err_clear();
    assert_int_equal(pq_msg_decode(PQ_TAG_ERROR, 2, buf, big, &m), PQ_ERR_PROTO);
    assert_detail_has("over the", "Error message from rank 2");
    pq_err_clear();
    assert_int_equal(pq_msg_decode(4242, 2, buf, 3, &m), PQ_ERR_PROTO);
    assert_detail_has("unexpected tag 4242", "rank 2");
    free(buf);
}

/* Through MPI: the singleton sends bytes to itself and receives them the way
 * rank 0 does (poll + recv), so the size check happens before any receive. */
/* left_queued: a rejection before the receive leaves the message queued. */
static pq_status self_send_recv(int tag, const void *bytes, int n, pq_msg *m, bool left_queued)
{
    MPI_Request req;
    MPI_Isend(bytes, n, MPI_BYTE, 0, tag, MPI_COMM_WORLD, &req);
    bool ready = false;
    MPI_Status s;
    for (int i = 0; i < 1000000 && !ready; i++) assert_int_equal(pq_msg_poll(MPI_COMM_WORLD, 0, tag, &ready, &s), PQ_OK);
    assert_true(ready);
    pq_status st = pq_msg_recv(MPI_COMM_WORLD, &s, m);
    if (st && left_queued) {
        /* the rejected message is still queued: take it off so the next case starts clean */
        uint8_t *sink = malloc((size_t)n + 1);
        MPI_Recv(sink, n, MPI_BYTE, 0, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        free(sink);
    }
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    return st;
}

static void over_mpi(void **state)
{
    (void)state;
    pq_msg m;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    pq_err_clear();
    assert_int_equal(self_send_recv(PQ_TAG_RESULT, junk, sizeof junk, &m, false), PQ_ERR_PROTO);
    assert_detail_has("UnitResult", "rank 0");

    int big = (int)PQ_WIRE_MAX_MSG * 4;
    uint8_t *buf = calloc(1, (size_t)big);
    pq_err_clear();
    assert_int_equal(self_send_recv(PQ_TAG_ERROR, buf, big, &m, true), PQ_ERR_PROTO);
    assert_detail_has("over the", "Error message from rank 0");
    free(buf);

    /* raw data where a control message is expected */
    pq_err_clear();
    assert_int_equal(self_send_recv(PQ_TAG_DATA, junk, sizeof junk, &m, true), PQ_ERR_PROTO);
    assert_detail_has("unexpected raw data", "rank 0");

    /* a valid Shutdown gets through */
    pq_msg sd = {.tag = PQ_TAG_SHUTDOWN};
    sd.u.shutdown.status = PQ_ERR_IO;
    sd.u.shutdown.stop = true;
    uint8_t *enc;
    size_t len;
    assert_int_equal(pq_msg_encode(&sd, &enc, &len), PQ_OK);
    assert_int_equal(self_send_recv(PQ_TAG_SHUTDOWN, enc, (int)len, &m, false), PQ_OK);
    assert_int_equal(m.tag, PQ_TAG_SHUTDOWN);
    assert_int_equal(m.u.shutdown.status, PQ_ERR_IO);
    assert_true(m.u.shutdown.stop);
    free(enc);

    /* raw data shorter than its header announced */
    MPI_Request req;
    float four[4] = {1, 2, 3, 4};
    float got[8];
    MPI_Isend(four, (int)sizeof four, MPI_BYTE, 0, PQ_TAG_DATA, MPI_COMM_WORLD, &req);
    pq_err_clear();
    assert_int_equal(pq_data_recv(MPI_COMM_WORLD, 0, got, sizeof got, "scales"), PQ_ERR_PROTO);
    assert_detail_has("16 bytes of scales", "announced 32");
    MPI_Recv(got, (int)sizeof got, MPI_BYTE, 0, PQ_TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
}

/* Every tag's name, and every encoded message carries the schema version
 * (read back with the generated unpacker, field by field). */
static void names_and_schema(void **state)
{
    (void)state;
    static const struct { int tag; const char *name; } names[] = {
        {PQ_TAG_PLAN, "Plan"}, {PQ_TAG_RESULT, "UnitResult"}, {PQ_TAG_DATA, "raw data"},
        {PQ_TAG_ERROR, "Error"}, {PQ_TAG_DONE, "Done"}, {PQ_TAG_SHUTDOWN, "Shutdown"},
        {PQ_TAG_LEAVES, "HashLeaves"}, {PQ_TAG_LAYOUT, "OutputLayout"}, {4242, "tag 4242"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_string_equal(pq_msg_name(names[i].tag), names[i].name);

    pq_msg m = {.tag = PQ_TAG_PLAN};
    m.u.plan = (pq_wire_plan){.plan_hash = 0x1234, .n_ranks = 3, .n_units = 9, .unit_bytes = 1 << 20};
    uint8_t *buf;
    size_t len;
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_OK);
    Proteus__Plan *p = proteus__plan__unpack(NULL, len, buf);
    assert_non_null(p);
    assert_int_equal(p->schema, PQ_WIRE_SCHEMA);
    assert_true(p->plan_hash == 0x1234 && p->n_ranks == 3 && p->unit_count == 9 && p->unit_bytes == 1 << 20);
    proteus__plan__free_unpacked(p, NULL);
    free(buf);

    m = (pq_msg){.tag = PQ_TAG_SHUTDOWN};
    m.u.shutdown = (pq_wire_shutdown){.status = PQ_ERR_IO, .stop = true};
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_OK);
    Proteus__Shutdown *sd = proteus__shutdown__unpack(NULL, len, buf);
    assert_non_null(sd);
    assert_int_equal(sd->schema, PQ_WIRE_SCHEMA);
    assert_true(sd->status == PQ_ERR_IO && sd->stop);
    proteus__shutdown__free_unpacked(sd, NULL);
    free(buf);

    m = (pq_msg){.tag = PQ_TAG_DATA};
    pq_err_clear();
    assert_int_equal(pq_msg_encode(&m, &buf, &len), PQ_ERR_INTERNAL);
    assert_detail_has("cannot encode a raw data message", NULL);
}

int main(void)
{
    MPI_Init(NULL, NULL);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip),
        cmocka_unit_test(hash_leaves),
        cmocka_unit_test(output_layout),
        cmocka_unit_test(garbage),
        cmocka_unit_test(wrong_schema_and_values),
        cmocka_unit_test(oversized_and_unknown),
        cmocka_unit_test(names_and_schema),
        cmocka_unit_test(over_mpi),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
