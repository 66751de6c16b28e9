/* SPDX-License-Identifier: Apache-2.0 */
/* stop.c - a stop signal as a flag (stop.h). */
#include "worker/stop.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_sig; /* written by the handler only */

static void on_stop(int sig)
{
    if (!stop_sig) stop_sig = sig;
}

void pq_stop_catch(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int pq_stop_signal(void) { return stop_sig; }

pq_status pq_stop_check(void)
{
    int sig = stop_sig;
    if (!sig) return PQ_OK;
    return pq_err(PQ_ERR_INTERRUPTED, "stopped by %s; the units done are in the journal: run the same command "
                  "with --resume to go on", sig == SIGUSR1 ? "SIGUSR1 (time limit near)" : "SIGTERM");
}
