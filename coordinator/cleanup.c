/* SPDX-License-Identifier: Apache-2.0 */
/* cleanup.c - OUT.partial removed when rank 0 dies (cleanup.h). */
#include "coordinator/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PATH_MAX_BYTES 4000 /* a path and its command in one short message */
#define MAX_ARMED 4          /* files armed at once: an attempt's and the best one's (fallback) */

static char path_buf[MAX_ARMED][PATH_MAX_BYTES];
static atomic_int armed;     /* path_buf[0..armed) hold the files (handler fallback) */
static int watch_fd = -1;    /* rank 0's end of the socket to the watcher */

/* Only async-signal-safe calls. */
static void on_signal(int sig)
{
    int n = atomic_load_explicit(&armed, memory_order_acquire);
    for (int i = 0; i < n && i < MAX_ARMED; i++) unlink(path_buf[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void pq_cleanup_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* The watcher: lines "A<path>" (arm that file alone), "B<path>" (arm that
 * one too) and "X" (disarm) until rank 0's end of the socket closes; then
 * the armed files go. */
static _Noreturn void watch(int rd)
{
    static char buf[2 * PATH_MAX_BYTES], path[MAX_ARMED][PATH_MAX_BYTES];
    size_t have = 0;
    int on = 0;
    setpgid(0, 0);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    /* the socket to fd 3 first (it may have got 0-2 if those were closed),
     * then hold none of rank 0's descriptors: the launcher's output pipes
     * would otherwise stay open until the watcher ends */
    if (rd != 3) {
        dup2(rd, 3);
        rd = 3;
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    close_range(4, ~0u, 0);
    for (;;) {
        ssize_t n = read(rd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        have += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', have))) {
            *nl = '\0';
            if (buf[0] != 'B') on = 0;
            if ((buf[0] == 'A' || buf[0] == 'B') && on < MAX_ARMED) {
                size_t len = strnlen(buf + 1, sizeof path[0] - 1);
                memcpy(path[on], buf + 1, len);
                path[on++][len] = '\0';
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, have - used);
            have -= used;
        }
        if (have == sizeof buf) have = 0; /* no such line is ever sent */
    }
    for (int i = 0; i < on; i++) unlink(path[i]);
    _exit(0);
}

void pq_cleanup_start(void)
{
    int p[2];
    /* a socket pair rather than a pipe: send(MSG_NOSIGNAL) cannot raise
     * SIGPIPE in rank 0 if the watcher is gone */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) {
        pq_cleanup_handler();
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        watch(p[0]);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        pq_cleanup_handler();
        return;
    }
    watch_fd = p[1];
}

/* Arm path after the n files armed now (n 0: alone); NULL: disarm all. */
static void arm_at(int n, const char *path)
{
    char line[PATH_MAX_BYTES + 2];
    atomic_store_explicit(&armed, n, memory_order_release);
    bool fits = path && n < MAX_ARMED &&
                snprintf(path_buf[n], sizeof path_buf[n], "%s", path) < (int)sizeof path_buf[n];
    if (fits) atomic_store_explicit(&armed, n + 1, memory_order_release);
    if (watch_fd < 0 || (!fits && n)) return;
    int len = fits ? snprintf(line, sizeof line, "%c%s\n", n ? 'B' : 'A', path_buf[n])
                   : snprintf(line, sizeof line, "X\n");
    while (send(watch_fd, line, (size_t)len, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
}

void pq_cleanup_arm(const char *path)
{
    arm_at(0, path);
}

void pq_cleanup_arm_also(const char *path)
{
    if (path) arm_at(atomic_load_explicit(&armed, memory_order_acquire), path);
}
