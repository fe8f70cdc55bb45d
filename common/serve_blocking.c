/* serve_blocking.c - the blocking per-connection loop (see serve_blocking.h).
 *
 * recv() here does both phases of input at once: the process sleeps inside it until data
 * arrive (wait-data) and the kernel copies them before it returns (copy-data). The process
 * only learns the data were there when the call returns, so t_ready = t_copy_end, and the
 * copy stamps bracket the whole call: from outside it, waking up and copying look the same.
 *
 * Timeouts: a blocked recv() would wait for a silent peer forever, so SO_RCVTIMEO limits it
 * to the time the connection has left (--idle-timeout, or --frame-timeout in the middle of a
 * request, conn_time_left()); a recv() that waited that long fails with EAGAIN. The time left
 * is looked at before every recv(), so that a trickle of bytes cannot outlast it either.
 */
#include "serve_blocking.h"
#include "server.h"
#include "stamp.h"
#include "stats.h"
#include "work.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* Before each recv(): true if c's time is up, its error reply queued (conn_timed_out()).
 * Else let the recv() wait no longer than the time left, rounded up to a multiple of the
 * timeouts' resolution so that it seldom changes: setsockopt() is called only when it does,
 * once per connection and twice per request that takes more than one recv(). *set_us: the
 * timeout now set, in microseconds (0: none). */
static bool time_is_up(struct conn *c, long long *set_us)
{
    uint64_t now = stamp_clock(), left = conn_time_left(c, now);
    if (left == 0 && conn_timed_out(c, now))
        return true; /* the wait ran out, or bytes trickled in past the deadline */
    uint64_t step = conn_timeout_resolution(c->opt);
    long long us = left == UINT64_MAX ? 0 : (long long)((left / step + 1) * step / 1000u);
    if (us == *set_us)
        return false;
    struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        fprintf(stderr, "fd %d: setsockopt SO_RCVTIMEO: %s\n", c->fd, strerror(errno));
    else /* (it cannot fail on a socket; if it did, this recv() would wait unlimited) */
        *set_us = us;
    return false;
}

void serve_blocking(struct conn *c)
{
    long long timeout_us = -1; /* the socket's SO_RCVTIMEO (-1: not set yet: the listening
                                * socket's may be inherited, see server_accept_wakes_each_second) */
    /* server_stopping(): SIGTERM under steady load usually lands between calls, not in one */
    while (!conn_done(c) && !server_stopping()) {
        if (time_is_up(c, &timeout_us)) {
            conn_flush(c); /* the error reply; then conn_done() */
            continue;
        }
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        struct proto_stamps st = {0};
        st.wait = st.copy_begin = stamp_now();
        ssize_t n;
        do
            n = stamp_recv(c->fd, space, room, 0, &st.arrive); /* blocks: wait, then copy */
        while (n < 0 && errno == EINTR && !server_stopping());
        st.ready = st.copy_end = stamp_now();
        if (n < 0 && errno == EINTR) /* only when the server is stopping */
            break;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue; /* SO_RCVTIMEO ran out: time_is_up() will say so */
        if (n <= 0) {
            conn_read_ended(c, n, errno); /* every reply is sent already: conn_done() */
            continue;
        }
        conn_received(c, (size_t)n, &st);
        if (conn_flush(c) < 0) /* blocks until every reply byte is handed to the kernel */
            break;
        stats_account_cpu(); /* a forked server's child adds its CPU time (else: nothing) */
        if (c->opt->work)
            work_unit(); /* between calls is the only time a blocking server has for it */
    }
    conn_close(c);
}
