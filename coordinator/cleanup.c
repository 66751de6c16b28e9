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

static char path_buf[PATH_MAX_BYTES];
static atomic_int armed;     /* path_buf holds the file (handler fallback) */
static int watch_fd = -1;    /* rank 0's end of the socket to the watcher */

/* Only async-signal-safe calls. */
static void on_signal(int sig)
{
    if (atomic_load_explicit(&armed, memory_order_acquire)) unlink(path_buf);
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

/* The watcher: lines "A<path>" (arm) and "X" (disarm) until rank 0's end of
 * the socket closes; then the armed file goes. */
static _Noreturn void watch(int rd)
{
    static char buf[2 * PATH_MAX_BYTES], path[PATH_MAX_BYTES];
    size_t have = 0;
    bool on = false;
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
            on = buf[0] == 'A';
            if (on) {
                size_t len = strnlen(buf + 1, sizeof path - 1);
                memcpy(path, buf + 1, len);
                path[len] = '\0';
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, have - used);
            have -= used;
        }
        if (have == sizeof buf) have = 0; /* no such line is ever sent */
    }
    if (on) unlink(path);
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

void pq_cleanup_arm(const char *path)
{
    char line[PATH_MAX_BYTES + 2];
    atomic_store_explicit(&armed, 0, memory_order_release);
    bool fits = path && snprintf(path_buf, sizeof path_buf, "%s", path) < (int)sizeof path_buf;
    if (fits) atomic_store_explicit(&armed, 1, memory_order_release);
    if (watch_fd < 0) return;
    int n = fits ? snprintf(line, sizeof line, "A%s\n", path_buf) : snprintf(line, sizeof line, "X\n");
    while (send(watch_fd, line, (size_t)n, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
}
