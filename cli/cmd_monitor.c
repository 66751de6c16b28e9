/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_monitor.c - `proteus monitor ENDPOINT`: subscribe to the progress
 * events of a quantize, embed or score run and show them (the same bar or
 * lines as the run, or JSON); the events are checked and decoded by
 * cli/monitor_event.h. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pq_clock.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/monitor_event.h"
#include "cli/options.h"
#include "pq_config.h"
#include "base/pq_err.h"
#include "proto/pq_wire.h"
#include "proteus.pb-c.h"

#if PQ_HAVE_ZMQ
#include "coordinator/zmq_dl.h"
#endif

typedef struct monitor_opts {
    const char *endpoint;
    bool json;
    double timeout; /* 0: none */
} monitor_opts;

static const pq_cli_opt k_opts[] = {
    {.name = "json", .kind = PQ_CLI_FLAG, .offset = offsetof(monitor_opts, json),
     .help = "one JSON object per event line instead of the progress view"},
    {.name = "timeout", .kind = PQ_CLI_F64, .offset = offsetof(monitor_opts, timeout), .lo = 0,
     .flags = PQ_CLI_LO_OPEN, .meta = "S", .help = "give up after S seconds without the final event (exit 11)"},
    {0},
};

static const pq_cli_cmd k_cmd = {
    .name = "monitor",
    .usage = "usage: proteus monitor ENDPOINT [--json] [--timeout S]",
    .about = "Watch the progress events of a run started with --monitor ENDPOINT:\n"
             "  proteus quantize   one event per unit (its tensor and SQNR);\n"
             "  proteus embed      one event per chunk of sequences (its rank, residues);\n"
             "  proteus score      the same as embed.\n"
             "ENDPOINT is e.g. tcp://127.0.0.1:5555, ipc:///tmp/run.sock, or tcp://HOST:PORT\n"
             "of a remote run started with --monitor-allow-remote. Shows the run's progress\n"
             "bar (one line per 5% when not on a terminal), then exits 0 when the run\n"
             "finishes, or with the run's error status when it fails. Start it before the\n"
             "run to see every event. An event that cannot be decoded (not a ProgressEvent,\n"
             "another Proteus version's schema, an unknown kind) is reported once with its\n"
             "cause and skipped; the count of skipped events is printed at the end.",
    .opts = k_opts,
    .operand = "ENDPOINT",
    .operand_offset = offsetof(monitor_opts, endpoint),
    .operand_error = "expected one ENDPOINT (tcp://HOST:PORT)",
};

static void print_json(const Proteus__ProgressEvent *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(e->kind));
    json_object_set_new(o, "phase", json_string(e->phase));
    json_object_set_new(o, "units_done", json_integer(e->units_done));
    json_object_set_new(o, "units_total", json_integer(e->units_total));
    json_object_set_new(o, "bytes_done", json_integer((json_int_t)e->bytes_done));
    json_object_set_new(o, "bytes_total", json_integer((json_int_t)e->bytes_total));
    json_object_set_new(o, "elapsed_s", json_real(e->elapsed_s));
    json_object_set_new(o, "n_ranks", json_integer(e->n_ranks));
    if (e->unit_id >= 0) {
        json_object_set_new(o, "unit_id", json_integer(e->unit_id));
        json_object_set_new(o, "rank", json_integer(e->rank));
    }
    if (e->tensor && *e->tensor) json_object_set_new(o, "tensor", json_string(e->tensor));
    /* JSON has no NaN/Inf: leave the field out (NaN) or use null (exact). */
    if (isfinite(e->sqnr_db)) json_object_set_new(o, "sqnr_db", json_real(e->sqnr_db));
    else if (isinf(e->sqnr_db)) json_object_set_new(o, "sqnr_db", json_null());
    json_object_set_new(o, "finished", json_boolean(e->finished));
    if (e->status) json_object_set_new(o, "status", json_integer(e->status));
    if (e->error && *e->error) json_object_set_new(o, "error", json_string(e->error));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

/* embed's and score's events (phase "infer"): units are chunks, bytes residues. */
static void show_infer(pq_cli_progress *p, const Proteus__ProgressEvent *e, bool fin)
{
    double frac = e->bytes_total ? (double)e->bytes_done / (double)e->bytes_total : 1.0;
    double rate = e->elapsed_s > 0 ? (double)e->bytes_done / e->elapsed_s : 0;
    double eta = frac > 0 ? e->elapsed_s * (1 - frac) / frac : 0;
    int pct = (int)floor(frac * 100.0 + 1e-9);
    if (fin) {
        if (p->is_tty) fputc('\n', p->out);
        printf("finished: %u chunks (%llu residues) on %u ranks, %.2f s\n", e->units_total,
               (unsigned long long)e->bytes_total, e->n_ranks, e->elapsed_s);
    } else if (p->is_tty) {
        char bar[41];
        for (int i = 0; i < 40; i++) bar[i] = i < (int)(frac * 40) ? '#' : '.';
        bar[40] = '\0';
        fprintf(p->out, "\r[%s] %3d%% %u/%u chunks %.0f residues/s ETA %.0fs ", bar, pct, e->units_done,
                e->units_total, rate, eta);
    } else if (pct / 5 > p->last_pct / 5 || p->last_pct < 0) {
        fprintf(p->out, "progress: %3d%% %u/%u chunks, %llu/%llu residues, %.0f residues/s, ETA %.0fs\n", pct,
                e->units_done, e->units_total, (unsigned long long)e->bytes_done,
                (unsigned long long)e->bytes_total, rate, eta);
        p->last_pct = pct;
    }
    fflush(p->out);
    fflush(stdout);
}

int pq_cmd_monitor(int argc, char **argv)
{
    monitor_opts o = {0};
    int prc = pq_cli_parse(&k_cmd, argc, argv, &o);
    if (prc != PQ_CLI_RUN) return prc;
    const char *ep = o.endpoint;
    int json = o.json;
    double timeout = o.timeout;
#if PQ_HAVE_ZMQ
    const pq_zmq *z = pq_zmq_load();
    if (!z) return pq_cli_fail(pq_err_last());
    int rc = pq_status_exit_code(PQ_ERR_ZMQ);
    long skipped = 0;
    void *ctx = z->ctx_new(), *sock = ctx ? z->socket(ctx, ZMQ_SUB) : NULL;
    int zero = 0;
    if (!sock || z->setsockopt(sock, ZMQ_SUBSCRIBE, "", 0) || z->setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero) ||
        z->connect(sock, ep)) {
        fprintf(stderr, "proteus: ZeroMQ error: cannot subscribe to %s: %s\n", ep, z->strerror(z->errno_()));
        goto cleanup;
    }
    pq_cli_progress view;
    pq_cli_progress_init(&view, stderr, 0);
    double deadline = timeout > 0 ? pq_now_s() + timeout : 0;
    uint8_t buf[PQ_WIRE_MAX_MSG];
    for (;;) {
        long wait_ms = 500;
        if (deadline) {
            double left = deadline - pq_now_s();
            if (left <= 0) {
                fprintf(stderr, "proteus: ZeroMQ error: no final event from %s within %.0f s\n", ep, timeout);
                goto cleanup;
            }
            if (left * 1000 < wait_ms) wait_ms = (long)(left * 1000) + 1;
        }
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (z->poll(&it, 1, wait_ms) <= 0) continue;
        int n = z->recv(sock, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0) continue;
        Proteus__ProgressEvent *e = NULL;
        /* n is the message's whole size, even when it was cut to fit buf */
        if (pq_monitor_event_decode(buf, (size_t)n, &e) != PQ_OK) {
            if (!skipped++) fprintf(stderr, "proteus monitor: skipping a malformed event from %s: %s\n", ep,
                                    pq_err_detail());
            pq_err_clear();
            continue;
        }
        int is_err = !strcmp(e->kind, "error"), is_fin = !strcmp(e->kind, "finished");
        if (json) {
            print_json(e);
        } else if (is_err) {
            fprintf(stderr, "\nproteus monitor: run failed: %s\n", e->error);
        } else if (e->phase && !strcmp(e->phase, "infer")) {
            if (!strcmp(e->kind, "unit") || is_fin) show_infer(&view, e, is_fin);
        } else if (!strcmp(e->kind, "unit") || is_fin) {
            pq_progress ev = {
                .phase = is_fin ? "done" : "quantize", .units_done = (int)e->units_done,
                .units_total = (int)e->units_total, .bytes_done = (double)e->bytes_done,
                .bytes_total = (double)e->bytes_total, .elapsed_s = e->elapsed_s,
                .tensor = e->tensor && *e->tensor ? e->tensor : NULL, .sqnr_db = e->sqnr_db,
            };
            pq_cli_progress_cb(&view, &ev);
            if (is_fin) printf("finished: %u units on %u ranks, mean SQNR %.2f dB, %.2f s\n", e->units_total,
                               e->n_ranks, e->sqnr_db, e->elapsed_s);
        }
        int status = e->status;
        proteus__progress_event__free_unpacked(e, NULL);
        if (is_fin) { rc = 0; break; }
        if (is_err) {
            rc = status > 0 && status < PQ__ERR_COUNT ? pq_status_exit_code((pq_status)status) : 1;
            break;
        }
    }
cleanup:
    if (skipped > 1) fprintf(stderr, "proteus monitor: %ld malformed events skipped\n", skipped);
    if (sock) z->close(sock);
    if (ctx) z->ctx_term(ctx);
    return rc;
#else
    (void)json; (void)timeout; (void)print_json; (void)show_infer;
    fprintf(stderr, "proteus: hardware error: %s: this build has no ZeroMQ (meson -Dzmq=enabled)\n", ep);
    return pq_status_exit_code(PQ_ERR_HARDWARE);
#endif
}
