/* SPDX-License-Identifier: Apache-2.0 */
/* msg.c - pack/send/probe/receive/unpack of the control messages between
 * ranks, and the raw bulk buffers that follow a UnitResult.
 *
 * Everything a message says is untrusted: sizes are checked before any
 * buffer is allocated or received, and every decoded value is range-checked
 * here so callers only see plain, valid structs. */
#include "proto/msg.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proteus.pb-c.h"

const char *pq_msg_name(int tag)
{
    static _Thread_local char other[32];
    switch (tag) {
    case PQ_TAG_PLAN: return "Plan";
    case PQ_TAG_RESULT: return "UnitResult";
    case PQ_TAG_DATA: return "raw data";
    case PQ_TAG_ERROR: return "Error";
    case PQ_TAG_DONE: return "Done";
    case PQ_TAG_SHUTDOWN: return "Shutdown";
    case PQ_TAG_LEAVES: return "HashLeaves";
    case PQ_TAG_LAYOUT: return "OutputLayout";
    default:
        snprintf(other, sizeof other, "tag %d", tag);
        return other;
    }
}

pq_status pq_mpi_check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return PQ_OK;
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
    return pq_err(PQ_ERR_MPI, "%s: %s", what, text);
}

pq_status pq_msg_encode(const pq_msg *m, uint8_t **buf, size_t *len)
{
    ProtobufCMessage *pm = NULL;
    Proteus__Plan plan = PROTEUS__PLAN__INIT;
    Proteus__UnitResult res = PROTEUS__UNIT_RESULT__INIT;
    Proteus__Error err = PROTEUS__ERROR__INIT;
    Proteus__Done done = PROTEUS__DONE__INIT;
    Proteus__Shutdown sd = PROTEUS__SHUTDOWN__INIT;
    Proteus__HashLeaves hl = PROTEUS__HASH_LEAVES__INIT;
    Proteus__OutputLayout lay = PROTEUS__OUTPUT_LAYOUT__INIT;
    uint32_t chunks[PQ_WIRE_MAX_LEAVES];
    ProtobufCBinaryData leaves[PQ_WIRE_MAX_LEAVES];
    switch (m->tag) {
    case PQ_TAG_PLAN:
        plan.schema = PQ_WIRE_SCHEMA;
        plan.plan_hash = m->u.plan.plan_hash;
        plan.n_ranks = m->u.plan.n_ranks;
        plan.unit_count = m->u.plan.n_units;
        plan.unit_bytes = m->u.plan.unit_bytes;
        pm = &plan.base;
        break;
    case PQ_TAG_RESULT: {
        const pq_wire_result *r = &m->u.result;
        res.schema = PQ_WIRE_SCHEMA;
        res.unit_id = r->unit_id;
        res.rank = r->rank;
        res.n_rows = r->n_rows;
        res.code_bytes = r->code_bytes;
        res.n_scales = r->n_scales;
        res.has_zero_point = r->has_zero_point;
        res.n_nonfinite = r->n_nonfinite;
        res.sum_sq = r->sum_sq;
        res.err_sq = r->err_sq;
        res.max_abs_err = r->max_abs_err;
        res.codes_in_file = r->codes_in_file;
        pm = &res.base;
        break;
    }
    case PQ_TAG_ERROR:
        err.schema = PQ_WIRE_SCHEMA;
        err.rank = m->u.error.rank;
        err.has_unit = m->u.error.unit_id >= 0;
        err.unit_id = err.has_unit ? (uint32_t)m->u.error.unit_id : 0;
        err.status = m->u.error.status;
        err.detail = (char *)m->u.error.detail;
        pm = &err.base;
        break;
    case PQ_TAG_DONE:
        done.schema = PQ_WIRE_SCHEMA;
        done.rank = m->u.done.rank;
        done.units = m->u.done.units;
        done.hash_chunks = m->u.done.hash_chunks;
        pm = &done.base;
        break;
    case PQ_TAG_LEAVES: {
        const pq_wire_leaves *l = &m->u.leaves;
        if (l->n < 1 || l->n > PQ_WIRE_MAX_LEAVES)
            return pq_err(PQ_ERR_INTERNAL, "cannot encode a HashLeaves message of %d leaves", l->n);
        hl.schema = PQ_WIRE_SCHEMA;
        hl.rank = l->rank;
        for (int i = 0; i < l->n; i++) {
            chunks[i] = l->chunk[i];
            leaves[i].len = PQ_WIRE_LEAF_BYTES;
            leaves[i].data = (uint8_t *)l->leaf[i];
        }
        hl.n_chunks = hl.n_leaves = (size_t)l->n;
        hl.chunks = chunks;
        hl.leaves = leaves;
        pm = &hl.base;
        break;
    }
    case PQ_TAG_LAYOUT:
        lay.schema = PQ_WIRE_SCHEMA;
        lay.file_dev = m->u.layout.file_dev;
        lay.file_ino = m->u.layout.file_ino;
        lay.n_tensors = m->u.layout.n_tensors;
        pm = &lay.base;
        break;
    case PQ_TAG_SHUTDOWN:
        sd.schema = PQ_WIRE_SCHEMA;
        sd.status = m->u.shutdown.status;
        sd.stop = m->u.shutdown.stop;
        pm = &sd.base;
        break;
    default:
        return pq_err(PQ_ERR_INTERNAL, "cannot encode a %s message", pq_msg_name(m->tag));
    }
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

static pq_status check_schema(int tag, int source, uint32_t schema)
{
    if (schema == PQ_WIRE_SCHEMA) return PQ_OK;
    return pq_err(PQ_ERR_PROTO, "%s message from rank %d has schema version %u, expected %u "
                  "(mixed proteus versions?)", pq_msg_name(tag), source, schema, PQ_WIRE_SCHEMA);
}

pq_status pq_msg_decode(int tag, int source, const uint8_t *buf, size_t len, pq_msg *out)
{
    pq_status st = PQ_OK;
    memset(out, 0, sizeof *out);
    out->tag = tag;
    out->source = source;
    if (len > PQ_WIRE_MAX_MSG)
        return pq_err(PQ_ERR_PROTO, "%s message from rank %d is %zu bytes, over the %u-byte limit",
                      pq_msg_name(tag), source, len, PQ_WIRE_MAX_MSG);
    switch (tag) {
    case PQ_TAG_PLAN: {
        Proteus__Plan *p = proteus__plan__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            out->u.plan.plan_hash = p->plan_hash;
            out->u.plan.n_ranks = p->n_ranks;
            out->u.plan.n_units = p->unit_count;
            out->u.plan.unit_bytes = p->unit_bytes;
            if (p->n_ranks == 0 || p->unit_bytes <= 0) st = bad(tag, source, "zero ranks or unit size");
        }
        proteus__plan__free_unpacked(p, NULL);
        return st;
    }
    case PQ_TAG_RESULT: {
        Proteus__UnitResult *p = proteus__unit_result__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            pq_wire_result *r = &out->u.result;
            r->unit_id = p->unit_id;
            r->rank = p->rank;
            r->n_rows = p->n_rows;
            r->code_bytes = p->code_bytes;
            r->n_scales = p->n_scales;
            r->has_zero_point = p->has_zero_point;
            r->n_nonfinite = p->n_nonfinite;
            r->sum_sq = p->sum_sq;
            r->err_sq = p->err_sq;
            r->max_abs_err = p->max_abs_err;
            r->codes_in_file = p->codes_in_file;
            if (p->n_rows <= 0 || p->n_nonfinite < 0) st = bad(tag, source, "negative or zero row count");
            else if ((int)p->rank != source) st = bad(tag, source, "rank field names another rank");
        }
        proteus__unit_result__free_unpacked(p, NULL);
        return st;
    }
    case PQ_TAG_ERROR: {
        Proteus__Error *p = proteus__error__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            out->u.error.rank = p->rank;
            out->u.error.unit_id = p->has_unit ? (int32_t)p->unit_id : -1;
            out->u.error.status = p->status;
            snprintf(out->u.error.detail, sizeof out->u.error.detail, "%s", p->detail ? p->detail : "");
            if (p->status <= 0 || p->status >= PQ__ERR_COUNT) st = bad(tag, source, "status out of range");
            else if (p->has_unit && p->unit_id > INT32_MAX) st = bad(tag, source, "unit id out of range");
        }
        proteus__error__free_unpacked(p, NULL);
        return st;
    }
    case PQ_TAG_DONE: {
        Proteus__Done *p = proteus__done__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            out->u.done.rank = p->rank;
            out->u.done.units = p->units;
            out->u.done.hash_chunks = p->hash_chunks;
            if ((int)p->rank != source) st = bad(tag, source, "rank field names another rank");
        }
        proteus__done__free_unpacked(p, NULL);
        return st;
    }
    case PQ_TAG_LEAVES: {
        Proteus__HashLeaves *p = proteus__hash_leaves__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            pq_wire_leaves *l = &out->u.leaves;
            l->rank = p->rank;
            if ((int)p->rank != source) st = bad(tag, source, "rank field names another rank");
            else if (p->n_chunks != p->n_leaves) st = bad(tag, source, "chunk and leaf counts differ");
            else if (p->n_leaves < 1 || p->n_leaves > PQ_WIRE_MAX_LEAVES)
                st = bad(tag, source, "no leaves, or more than PQ_WIRE_MAX_LEAVES");
            for (size_t i = 0; !st && i < p->n_leaves; i++) {
                if (p->leaves[i].len != PQ_WIRE_LEAF_BYTES) {
                    char why[96];
                    snprintf(why, sizeof why, "leaf %zu (chunk %u) is %zu bytes, a SHA-256 is %d", i,
                             p->chunks[i], p->leaves[i].len, PQ_WIRE_LEAF_BYTES);
                    st = bad(tag, source, why);
                    break;
                }
                l->chunk[i] = p->chunks[i];
                memcpy(l->leaf[i], p->leaves[i].data, PQ_WIRE_LEAF_BYTES);
            }
            if (!st) l->n = (int)p->n_leaves;
        }
        proteus__hash_leaves__free_unpacked(p, NULL);
        return st;
    }
    case PQ_TAG_LAYOUT: {
        Proteus__OutputLayout *p = proteus__output_layout__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            out->u.layout.file_dev = p->file_dev;
            out->u.layout.file_ino = p->file_ino;
            out->u.layout.n_tensors = p->n_tensors;
            if (p->n_tensors == 0) st = bad(tag, source, "no tensors");
        }
        proteus__output_layout__free_unpacked(p, NULL);
        return st;
    }
    case PQ_TAG_SHUTDOWN: {
        Proteus__Shutdown *p = proteus__shutdown__unpack(NULL, len, buf);
        if (!p) return bad(tag, source, "not a valid protobuf encoding");
        if (!(st = check_schema(tag, source, p->schema))) {
            out->u.shutdown.status = p->status;
            out->u.shutdown.stop = p->stop;
            if (p->status < 0 || p->status >= PQ__ERR_COUNT) st = bad(tag, source, "status out of range");
        }
        proteus__shutdown__free_unpacked(p, NULL);
        return st;
    }
    default:
        return pq_err(PQ_ERR_PROTO, "unexpected %s message from rank %d", pq_msg_name(tag), source);
    }
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
        return pq_err(PQ_ERR_PROTO, "unexpected %s message from rank %d", pq_msg_name(tag), src);
    if ((st = pq_mpi_check(MPI_Get_count(probed, MPI_BYTE, &count), "sizing a message"))) return st;
    if (count < 0 || (unsigned)count > PQ_WIRE_MAX_MSG)
        return pq_err(PQ_ERR_PROTO, "%s message from rank %d is %d bytes, over the %u-byte limit",
                      pq_msg_name(tag), src, count, PQ_WIRE_MAX_MSG);
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
        st = pq_err(PQ_ERR_PROTO, "Plan message from rank %d is %llu bytes, over the %u-byte limit", root,
                    (unsigned long long)n, PQ_WIRE_MAX_MSG);
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
