/* SPDX-License-Identifier: Apache-2.0 */
/* monitor.c - ZeroMQ PUB side of the progress monitor (stub without ZeroMQ). */
#include "coordinator/monitor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "pq_config.h"
#include "proteus.pb-c.h"
#include "proto/pq_wire.h"

#if PQ_HAVE_ZMQ
#include "coordinator/zmq_dl.h"
#endif

pq_status pq_monitor_check_endpoint(const char *ep, bool allow_remote)
{
    if (!strncmp(ep, "ipc://", 6)) return PQ_OK;
    if (strncmp(ep, "tcp://", 6))
        return pq_err(PQ_ERR_CONFIG, "--monitor %s: only tcp://HOST:PORT and ipc://PATH are supported", ep);
    const char *host = ep + 6, *colon = strrchr(host, ':');
    if (!colon || colon == host || !colon[1])
        return pq_err(PQ_ERR_CONFIG, "--monitor %s: expected tcp://HOST:PORT", ep);
    char h[256];
    size_t n = (size_t)(colon - host);
    if (n >= sizeof h) return pq_err(PQ_ERR_CONFIG, "--monitor %s: host name too long", ep);
    memcpy(h, host, n);
    h[n] = '\0';
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        memmove(h, h + 1, n - 2);
        h[n - 2] = '\0';
    }
    struct in_addr a4;
    struct in6_addr a6;
    bool loop = !strcmp(h, "localhost") ||
                (inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                (inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
    if (loop || allow_remote) return PQ_OK;
    return pq_err(PQ_ERR_CONFIG, "--monitor %s: not a loopback address; progress would be visible to "
                  "other machines (add --monitor-allow-remote if that is intended)", ep);
}

#if PQ_HAVE_ZMQ

struct pq_monitor {
    const pq_zmq *z;
    void *ctx, *sock;
    bool warned;
};

static void warn_once(pq_monitor *m, const char *what)
{
    if (m->warned) return;
    m->warned = true;
    PQ_LOG_WARN("monitor: %s: %s (the run continues without it)", what, m->z->strerror(m->z->errno_()));
}

pq_monitor *pq_monitor_open(const char *endpoint, double wait_s)
{
    const pq_zmq *z = pq_zmq_load();
    if (!z) {
        PQ_LOG_WARN("monitor: %s: %s (the run continues without it)", endpoint, pq_err_detail());
        pq_err_clear();
        return NULL;
    }
    pq_monitor *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->z = z;
    int linger = 1000, one = 1;
    if (!(m->ctx = z->ctx_new())) { warn_once(m, "cannot create a ZeroMQ context"); goto fail; }
    /* XPUB: a PUB that also reports subscriptions, so we can wait for one. */
    if (!(m->sock = z->socket(m->ctx, ZMQ_XPUB))) { warn_once(m, "cannot create a socket"); goto fail; }
    z->setsockopt(m->sock, ZMQ_LINGER, &linger, sizeof linger);
    z->setsockopt(m->sock, ZMQ_XPUB_VERBOSE, &one, sizeof one);
    if (z->bind(m->sock, endpoint) != 0) {
        char what[300];
        snprintf(what, sizeof what, "cannot bind %s", endpoint);
        warn_once(m, what);
        goto fail;
    }
    if (wait_s > 0) {
        zmq_pollitem_t it = {.socket = m->sock, .events = ZMQ_POLLIN};
        if (z->poll(&it, 1, (long)(wait_s * 1000)) > 0) {
            char sub[256];
            z->recv(m->sock, sub, sizeof sub, ZMQ_DONTWAIT);
            /* The subscription reached us; give the pipe a moment so the
             * first event is not dropped. */
            struct timespec nap = {0, 20000000};
            nanosleep(&nap, NULL);
        }
    }
    return m;
fail:
    if (m->sock) z->close(m->sock);
    if (m->ctx) z->ctx_term(m->ctx);
    free(m);
    return NULL;
}

void pq_monitor_publish(pq_monitor *m, const char *kind, const pq_progress *ev, int unit_id, int rank,
                        int n_ranks, pq_status status, const char *error)
{
    if (!m) return;
    Proteus__ProgressEvent e = PROTEUS__PROGRESS_EVENT__INIT;
    e.schema = PQ_WIRE_SCHEMA;
    e.kind = (char *)kind;
    e.phase = (char *)(ev && ev->phase ? ev->phase : kind);
    if (ev) {
        e.units_done = (uint32_t)ev->units_done;
        e.units_total = (uint32_t)ev->units_total;
        e.bytes_done = (uint64_t)ev->bytes_done;
        e.bytes_total = (uint64_t)ev->bytes_total;
        e.elapsed_s = ev->elapsed_s;
        e.tensor = (char *)(ev->tensor ? ev->tensor : "");
        e.sqnr_db = ev->sqnr_db;
    }
    e.unit_id = unit_id;
    e.rank = rank < 0 ? 0 : (uint32_t)rank;
    e.n_ranks = (uint32_t)n_ranks;
    e.finished = !strcmp(kind, "finished") || !strcmp(kind, "error");
    e.status = (int32_t)status;
    e.error = (char *)(error ? error : "");
    size_t n = proteus__progress_event__get_packed_size(&e);
    uint8_t *buf = malloc(n + 1);
    if (!buf) return;
    proteus__progress_event__pack(&e, buf);
    /* Drain subscription notices so they never pile up. */
    char sub[256];
    while (m->z->recv(m->sock, sub, sizeof sub, ZMQ_DONTWAIT) >= 0) {}
    if (m->z->send(m->sock, buf, n, ZMQ_DONTWAIT) < 0 && m->z->errno_() != EAGAIN) warn_once(m, "send failed");
    free(buf);
}

void pq_monitor_close(pq_monitor *m)
{
    if (!m) return;
    m->z->close(m->sock);
    m->z->ctx_term(m->ctx);
    free(m);
}

#else /* !PQ_HAVE_ZMQ */

struct pq_monitor { int unused; };

pq_monitor *pq_monitor_open(const char *endpoint, double wait_s)
{
    (void)wait_s;
    PQ_LOG_WARN("monitor: %s: this build has no ZeroMQ (the run continues without it)", endpoint);
    return NULL;
}

void pq_monitor_publish(pq_monitor *m, const char *kind, const pq_progress *ev, int unit_id, int rank,
                        int n_ranks, pq_status status, const char *error)
{
    (void)m; (void)kind; (void)ev; (void)unit_id; (void)rank; (void)n_ranks; (void)status; (void)error;
}

void pq_monitor_close(pq_monitor *m) { (void)m; }

#endif
