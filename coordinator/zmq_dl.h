/* SPDX-License-Identifier: Apache-2.0 */
/* zmq_dl.h - the ZeroMQ calls of the monitor, from libzmq loaded on first
 * use (pq_dl.h): only --monitor and `proteus monitor` need it, and linked it
 * would load libzmq and its ten libraries (libstdc++, sodium, pgm, norm,
 * Kerberos) into every rank of every run. */
#ifndef PQ_ZMQ_DL_H
#define PQ_ZMQ_DL_H

#include <zmq.h>

#include "base/pq_err.h"

typedef struct pq_zmq {
    __typeof__(zmq_ctx_new) *ctx_new;
    __typeof__(zmq_ctx_term) *ctx_term;
    __typeof__(zmq_socket) *socket;
    __typeof__(zmq_close) *close;
    __typeof__(zmq_setsockopt) *setsockopt;
    __typeof__(zmq_bind) *bind;
    __typeof__(zmq_connect) *connect;
    __typeof__(zmq_send) *send;
    __typeof__(zmq_recv) *recv;
    __typeof__(zmq_poll) *poll;
    __typeof__(zmq_errno) *errno_;
    __typeof__(zmq_strerror) *strerror;
} pq_zmq;

/* The loaded library's calls, or NULL with PQ_ERR_ZMQ recorded (pq_err)
 * when libzmq (meson option zmq_soname) cannot be loaded. */
const pq_zmq *pq_zmq_load(void);

#endif
