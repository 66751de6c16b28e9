/* SPDX-License-Identifier: Apache-2.0 */
/* zmq_dl.c - see zmq_dl.h. */
#include "coordinator/zmq_dl.h"

#include "pq_config.h"
#include "base/pq_dl.h"

static pq_zmq z;

static const pq_dl_sym syms[] = {
    {"zmq_ctx_new", (void **)&z.ctx_new, false},       {"zmq_ctx_term", (void **)&z.ctx_term, false},
    {"zmq_socket", (void **)&z.socket, false},         {"zmq_close", (void **)&z.close, false},
    {"zmq_setsockopt", (void **)&z.setsockopt, false}, {"zmq_bind", (void **)&z.bind, false},
    {"zmq_connect", (void **)&z.connect, false},       {"zmq_send", (void **)&z.send, false},
    {"zmq_recv", (void **)&z.recv, false},             {"zmq_poll", (void **)&z.poll, false},
    {"zmq_errno", (void **)&z.errno_, false},          {"zmq_strerror", (void **)&z.strerror, false},
};

static pq_dl_lib lib = {.soname = PQ_ZMQ_SONAME, .package = "libzmq5", .kind = PQ_ERR_ZMQ, .syms = syms,
                        .n_syms = (int)(sizeof syms / sizeof syms[0])};

const pq_zmq *pq_zmq_load(void)
{
    return pq_dl_load(&lib) ? NULL : &z;
}
