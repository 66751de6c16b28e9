/* SPDX-License-Identifier: Apache-2.0 */
/* msg.c - pack/send/probe/receive/unpack of the control messages between
 * ranks, and the raw bulk buffers that follow a UnitResult.
 *
 * Everything a message says is untrusted: sizes are checked before any
 * buffer is allocated or received, and every decoded value is range-checked
 * here so callers only see plain, valid structs. */
#include "proto/msg.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proteus.pb-c.h"

/* Field 1 of every message in proteus.proto: its schema version. */
static uint32_t *schema_of(ProtobufCMessage *pm)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(pm->descriptor, 1);
    assert(f && f->type == PROTOBUF_C_TYPE_UINT32 && !strcmp(f->name, "schema"));
    return (uint32_t *)((char *)pm + f->offset);
}

pq_status pq_mpi_check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return PQ_OK;
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
    return pq_err(PQ_ERR_MPI, "%s: %s", what, text);
}

/* A generated message struct with its descriptor and the given fields set
 * (the schema is set for all of them before packing). */
#define WIRE_MSG(type, desc, ...) ((type){.base = PROTOBUF_C_MESSAGE_INIT(&desc), __VA_ARGS__})

pq_status pq_msg_encode(const pq_msg *m, uint8_t **buf, size_t *len)
{
    ProtobufCMessage *pm = NULL;
    Proteus__Plan plan;
    Proteus__UnitResult res;
    Proteus__Error err;
    Proteus__Done done;
    Proteus__Shutdown sd;
    Proteus__HashLeaves hl;
    Proteus__OutputLayout lay;
    uint32_t chunks[PQ_WIRE_MAX_LEAVES];
    ProtobufCBinaryData leaves[PQ_WIRE_MAX_LEAVES];
    switch (m->tag) {
    case PQ_TAG_PLAN: {
        const pq_wire_plan *w = &m->u.plan;
        plan = WIRE_MSG(Proteus__Plan, proteus__plan__descriptor, .plan_hash = w->plan_hash,
                        .n_ranks = w->n_ranks, .unit_count = w->n_units, .unit_bytes = w->unit_bytes);
        pm = &plan.base;
        break;
    }
    case PQ_TAG_RESULT: {
        const pq_wire_result *r = &m->u.result;
        res = WIRE_MSG(Proteus__UnitResult, proteus__unit_result__descriptor, .unit_id = r->unit_id,
                       .rank = r->rank, .n_rows = r->n_rows, .code_bytes = r->code_bytes, .n_scales = r->n_scales,
                       .has_zero_point = r->has_zero_point, .n_nonfinite = r->n_nonfinite, .sum_sq = r->sum_sq,
                       .err_sq = r->err_sq, .max_abs_err = r->max_abs_err, .codes_in_file = r->codes_in_file);
        pm = &res.base;
        break;
    }
    case PQ_TAG_ERROR: {
        const pq_wire_error *e = &m->u.error;
        err = WIRE_MSG(Proteus__Error, proteus__error__descriptor, .rank = e->rank, .has_unit = e->unit_id >= 0,
                       .unit_id = e->unit_id >= 0 ? (uint32_t)e->unit_id : 0, .status = e->status,
                       .detail = (char *)e->detail);
        pm = &err.base;
        break;
    }
    case PQ_TAG_DONE: {
        const pq_wire_done *d = &m->u.done;
        done = WIRE_MSG(Proteus__Done, proteus__done__descriptor, .rank = d->rank, .units = d->units,
                        .hash_chunks = d->hash_chunks);
        pm = &done.base;
        break;
    }
    case PQ_TAG_LEAVES: {
        const pq_wire_leaves *l = &m->u.leaves;
        if (l->n < 1 || l->n > PQ_WIRE_MAX_LEAVES)
            return pq_err(PQ_ERR_INTERNAL, "cannot encode a HashLeaves message of %d leaves", l->n);
        for (int i = 0; i < l->n; i++) {
            chunks[i] = l->chunk[i];
            leaves[i] = (ProtobufCBinaryData){.len = PQ_WIRE_LEAF_BYTES, .data = (uint8_t *)l->leaf[i]};
        }
        hl = WIRE_MSG(Proteus__HashLeaves, proteus__hash_leaves__descriptor, .rank = l->rank,
                      .n_chunks = (size_t)l->n, .chunks = chunks, .n_leaves = (size_t)l->n, .leaves = leaves);
        pm = &hl.base;
        break;
    }
    case PQ_TAG_LAYOUT: {
        const pq_wire_layout *w = &m->u.layout;
        lay = WIRE_MSG(Proteus__OutputLayout, proteus__output_layout__descriptor, .file_dev = w->file_dev,
                       .file_ino = w->file_ino, .n_tensors = w->n_tensors);
        pm = &lay.base;
        break;
    }
    case PQ_TAG_SHUTDOWN:
        sd = WIRE_MSG(Proteus__Shutdown, proteus__shutdown__descriptor, .status = m->u.shutdown.status,
                      .stop = m->u.shutdown.stop);
        pm = &sd.base;
        break;
    default:
        return pq_err(PQ_ERR_INTERNAL, "cannot encode a %s message", pq_msg_name(m->tag));
    }
    *schema_of(pm) = PQ_WIRE_SCHEMA;
    size_t n = protobuf_c_message_get_packed_size(pm);
    /* One spare byte: a zero-length message still gets a valid pointer. */
    uint8_t *b = malloc(n + 1);
    if (!b) return pq_err(PQ_ERR_RESOURCE, "out of memory encoding a %s message", pq_msg_name(m->tag));
    protobuf_c_message_pack(pm, b);
    *buf = b;
    *len = n;
    return PQ_OK;
}

static pq_status bad(int tag, int source, const char *why)
{
    return pq_err(PQ_ERR_PROTO, "malformed %s message from rank %d: %s", pq_msg_name(tag), source, why);
}

static pq_status malformed(const pq_msg *out, const char *why) { return bad(out->tag, out->source, why); }

static pq_status oversized(int tag, int source, unsigned long long n)
{
    return pq_err(PQ_ERR_PROTO, "%s message from rank %d is %llu bytes, over the %u-byte limit", pq_msg_name(tag),
                  source, n, PQ_WIRE_MAX_MSG);
}

static pq_status unexpected(int tag, int source)
{
    return pq_err(PQ_ERR_PROTO, "unexpected %s message from rank %d", pq_msg_name(tag), source);
}

static pq_status check_schema(int tag, int source, uint32_t schema)
{
    if (schema == PQ_WIRE_SCHEMA) return PQ_OK;
    return pq_err(PQ_ERR_PROTO, "%s message from rank %d has schema version %u, expected %u "
                  "(mixed proteus versions?)", pq_msg_name(tag), source, schema, PQ_WIRE_SCHEMA);
}

/* A message's rank field must name the rank it came from. */
static pq_status check_rank(const pq_msg *out, uint32_t rank)
{
    return (int)rank == out->source ? PQ_OK : malformed(out, "rank field names another rank");
}

/* Copy a decoded message into out->u and range-check it. */
static pq_status from_plan(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__Plan *p = (const Proteus__Plan *)pm;
    out->u.plan = (pq_wire_plan){.plan_hash = p->plan_hash, .n_ranks = p->n_ranks, .n_units = p->unit_count,
                                 .unit_bytes = p->unit_bytes};
    if (p->n_ranks == 0 || p->unit_bytes <= 0) return malformed(out, "zero ranks or unit size");
    return PQ_OK;
}

static pq_status from_result(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__UnitResult *p = (const Proteus__UnitResult *)pm;
    out->u.result = (pq_wire_result){.unit_id = p->unit_id, .rank = p->rank, .n_rows = p->n_rows,
                                     .code_bytes = p->code_bytes, .n_scales = p->n_scales,
                                     .has_zero_point = p->has_zero_point, .n_nonfinite = p->n_nonfinite,
                                     .sum_sq = p->sum_sq, .err_sq = p->err_sq, .max_abs_err = p->max_abs_err,
                                     .codes_in_file = p->codes_in_file};
    if (p->n_rows <= 0 || p->n_nonfinite < 0) return malformed(out, "negative or zero row count");
    return check_rank(out, p->rank);
}

static pq_status from_error(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__Error *p = (const Proteus__Error *)pm;
    out->u.error.rank = p->rank;
    out->u.error.unit_id = p->has_unit ? (int32_t)p->unit_id : -1;
    out->u.error.status = p->status;
    snprintf(out->u.error.detail, sizeof out->u.error.detail, "%s", p->detail ? p->detail : "");
    if (p->status <= 0 || p->status >= PQ__ERR_COUNT) return malformed(out, "status out of range");
    if (p->has_unit && p->unit_id > INT32_MAX) return malformed(out, "unit id out of range");
    return PQ_OK;
}

static pq_status from_done(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__Done *p = (const Proteus__Done *)pm;
    out->u.done = (pq_wire_done){.rank = p->rank, .units = p->units, .hash_chunks = p->hash_chunks};
    return check_rank(out, p->rank);
}

static pq_status from_leaves(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__HashLeaves *p = (const Proteus__HashLeaves *)pm;
    pq_wire_leaves *l = &out->u.leaves;
    l->rank = p->rank;
    pq_status st = check_rank(out, p->rank);
    if (st) return st;
    if (p->n_chunks != p->n_leaves) return malformed(out, "chunk and leaf counts differ");
    if (p->n_leaves < 1 || p->n_leaves > PQ_WIRE_MAX_LEAVES)
        return malformed(out, "no leaves, or more than PQ_WIRE_MAX_LEAVES");
    for (size_t i = 0; i < p->n_leaves; i++) {
        if (p->leaves[i].len != PQ_WIRE_LEAF_BYTES) {
            char why[96];
            snprintf(why, sizeof why, "leaf %zu (chunk %u) is %zu bytes, a SHA-256 is %d", i, p->chunks[i],
                     p->leaves[i].len, PQ_WIRE_LEAF_BYTES);
            return malformed(out, why);
        }
        l->chunk[i] = p->chunks[i];
        memcpy(l->leaf[i], p->leaves[i].data, PQ_WIRE_LEAF_BYTES);
    }
    l->n = (int)p->n_leaves;
    return PQ_OK;
}

static pq_status from_layout(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__OutputLayout *p = (const Proteus__OutputLayout *)pm;
    out->u.layout = (pq_wire_layout){.file_dev = p->file_dev, .file_ino = p->file_ino, .n_tensors = p->n_tensors};
    return p->n_tensors == 0 ? malformed(out, "no tensors") : PQ_OK;
}

static pq_status from_shutdown(const ProtobufCMessage *pm, pq_msg *out)
{
    const Proteus__Shutdown *p = (const Proteus__Shutdown *)pm;
    out->u.shutdown = (pq_wire_shutdown){.status = p->status, .stop = p->stop};
    if (p->status < 0 || p->status >= PQ__ERR_COUNT) return malformed(out, "status out of range");
    return PQ_OK;
}

/* Every control message a rank receives: its schema and its copy into pq_msg. */
static const struct decoder {
    int tag;
    const ProtobufCMessageDescriptor *desc;
    pq_status (*copy)(const ProtobufCMessage *pm, pq_msg *out);
} decoders[] = {
    {PQ_TAG_PLAN, &proteus__plan__descriptor, from_plan},
    {PQ_TAG_RESULT, &proteus__unit_result__descriptor, from_result},
    {PQ_TAG_ERROR, &proteus__error__descriptor, from_error},
    {PQ_TAG_DONE, &proteus__done__descriptor, from_done},
    {PQ_TAG_LEAVES, &proteus__hash_leaves__descriptor, from_leaves},
    {PQ_TAG_LAYOUT, &proteus__output_layout__descriptor, from_layout},
    {PQ_TAG_SHUTDOWN, &proteus__shutdown__descriptor, from_shutdown},
};

static const struct decoder *decoder_of(int tag)
{
    for (size_t i = 0; i < sizeof decoders / sizeof decoders[0]; i++)
        if (decoders[i].tag == tag) return &decoders[i];
    return NULL;
}

const char *pq_msg_name(int tag)
{
    static _Thread_local char other[32];
    const struct decoder *d = decoder_of(tag);
    if (d) return d->desc->short_name;
    if (tag == PQ_TAG_DATA) return "raw data";
    snprintf(other, sizeof other, "tag %d", tag);
    return other;
}

pq_status pq_msg_decode(int tag, int source, const uint8_t *buf, size_t len, pq_msg *out)
{
    memset(out, 0, sizeof *out);
    out->tag = tag;
    out->source = source;
    if (len > PQ_WIRE_MAX_MSG) return oversized(tag, source, len);
    const struct decoder *d = decoder_of(tag);
    if (!d) return unexpected(tag, source);
    ProtobufCMessage *pm = protobuf_c_message_unpack(d->desc, NULL, len, buf);
    if (!pm) return bad(tag, source, "not a valid protobuf encoding");
    pq_status st = check_schema(tag, source, *schema_of(pm));
    if (!st) st = d->copy(pm, out);
    protobuf_c_message_free_unpacked(pm, NULL);
    return st;
}

pq_status pq_msg_send(MPI_Comm comm, int dest, const pq_msg *m)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    pq_status st = pq_msg_encode(m, &buf, &len);
    if (st) return st;
    char what[64];
    snprintf(what, sizeof what, "sending %s to rank %d", pq_msg_name(m->tag), dest);
    st = pq_mpi_check(MPI_Send(buf, (int)len, MPI_BYTE, dest, m->tag, comm), what);
    free(buf);
    return st;
}

pq_status pq_msg_poll(MPI_Comm comm, int source, int tag, bool *ready, MPI_Status *s)
{
    int flag = 0;
    pq_status st = pq_mpi_check(MPI_Iprobe(source, tag, comm, &flag, s), "probing for messages");
    *ready = !st && flag;
    return st;
}

pq_status pq_msg_recv(MPI_Comm comm, const MPI_Status *probed, pq_msg *out)
{
    int tag = probed->MPI_TAG, src = probed->MPI_SOURCE, count = 0;
    pq_status st;
    if (tag == PQ_TAG_DATA || tag == PQ_TAG_PLAN || tag < PQ_TAG_PLAN || tag >= PQ_TAG_END_)
        return unexpected(tag, src);
    if ((st = pq_mpi_check(MPI_Get_count(probed, MPI_BYTE, &count), "sizing a message"))) return st;
    if (count < 0) return bad(tag, src, "negative byte count");
    if ((unsigned)count > PQ_WIRE_MAX_MSG) return oversized(tag, src, (unsigned)count);
    uint8_t *buf = malloc((size_t)count + 1);
    if (!buf) return pq_err(PQ_ERR_RESOURCE, "out of memory receiving a message");
    char what[64];
    snprintf(what, sizeof what, "receiving %s from rank %d", pq_msg_name(tag), src);
    if (!(st = pq_mpi_check(MPI_Recv(buf, count, MPI_BYTE, src, tag, comm, MPI_STATUS_IGNORE), what)))
        st = pq_msg_decode(tag, src, buf, (size_t)count, out);
    free(buf);
    return st;
}

pq_status pq_msg_bcast_plan(MPI_Comm comm, int root, pq_msg *m)
{
    int rank;
    pq_status st = pq_mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    if (st) return st;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rank == root) {
        m->tag = PQ_TAG_PLAN;
        if ((st = pq_msg_encode(m, &buf, &len))) len = 0; /* others see an empty plan and fail */
    }
    uint64_t n = len;
    if ((st = pq_mpi_check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm), "broadcasting the plan size")))
        goto cleanup;
    if (n > PQ_WIRE_MAX_MSG) {
        st = oversized(PQ_TAG_PLAN, root, n);
        goto cleanup;
    }
    if (rank != root && !(buf = malloc(n + 1))) {
        st = pq_err(PQ_ERR_RESOURCE, "out of memory receiving the plan");
        goto cleanup;
    }
    if ((st = pq_mpi_check(MPI_Bcast(buf, (int)n, MPI_BYTE, root, comm), "broadcasting the plan")))
        goto cleanup;
    if (rank != root) st = pq_msg_decode(PQ_TAG_PLAN, root, buf, n, m);
cleanup:
    free(buf);
    return st;
}

pq_status pq_data_isend(MPI_Comm comm, int dest, const void *buf, size_t n, pq_data_reqs *r)
{
    const char *p = buf;
    do {
        size_t c = n < PQ_WIRE_CHUNK ? n : PQ_WIRE_CHUNK;
        if (r->n == (int)(sizeof r->req / sizeof r->req[0]))
            return pq_err(PQ_ERR_RESOURCE, "unit result too large to send (%zu bytes left)", n);
        pq_status st = pq_mpi_check(MPI_Isend(p, (int)c, MPI_BYTE, dest, PQ_TAG_DATA, comm, &r->req[r->n]),
                                    "sending a unit result");
        if (st) return st;
        r->n++;
        p += c;
        n -= c;
    } while (n > 0);
    return PQ_OK;
}

pq_status pq_data_wait(pq_data_reqs *r)
{
    const struct timespec nap = {0, 200000};
    for (;;) {
        int done = 0;
        pq_status st = pq_mpi_check(MPI_Testall(r->n, r->req, &done, MPI_STATUSES_IGNORE),
                                    "sending a unit result");
        if (st || done) { r->n = 0; return st; }
        nanosleep(&nap, NULL);
    }
}

pq_status pq_data_test(pq_data_reqs *r, bool *done)
{
    int flag = 0;
    pq_status st = pq_mpi_check(MPI_Testall(r->n, r->req, &flag, MPI_STATUSES_IGNORE), "sending a unit result");
    *done = !st && flag;
    if (*done) r->n = 0;
    return st;
}

pq_status pq_data_recv(MPI_Comm comm, int source, void *buf, size_t n, const char *what)
{
    char *p = buf;
    do {
        size_t c = n < PQ_WIRE_CHUNK ? n : PQ_WIRE_CHUNK;
        MPI_Status s;
        int count = 0;
        char ctx[128];
        snprintf(ctx, sizeof ctx, "receiving %s from rank %d", what, source);
        pq_status st = pq_mpi_check(MPI_Probe(source, MPI_ANY_TAG, comm, &s), ctx);
        if (!st) st = pq_mpi_check(MPI_Get_count(&s, MPI_BYTE, &count), ctx);
        if (st) return st;
        if (s.MPI_TAG != PQ_TAG_DATA)
            return pq_err(PQ_ERR_PROTO, "unexpected %s message from rank %d while %s was announced",
                          pq_msg_name(s.MPI_TAG), source, what);
        if (count < 0 || (size_t)count != c)
            return pq_err(PQ_ERR_PROTO, "rank %d sent %d bytes of %s, its UnitResult announced %zu",
                          source, count, what, c);
        if ((st = pq_mpi_check(MPI_Recv(p, (int)c, MPI_BYTE, source, PQ_TAG_DATA, comm, MPI_STATUS_IGNORE),
                               ctx)))
            return st;
        p += c;
        n -= c;
    } while (n > 0);
    return PQ_OK;
}
