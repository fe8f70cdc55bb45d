/* epoll_et.c - I/O multiplexing with epoll, edge-triggered, on non-blocking sockets.
 *
 * The model: one thread asks the kernel, in one call, to sleep until any of its sockets is
 * ready (epoll_wait), then reads only from the sockets it was told about. Phase 1, waiting
 * for data, blocks the process in epoll_wait for all connections at once; phase 2, copying,
 * happens in recv(), which never blocks: the socket is non-blocking, and says EAGAIN. This is
 * UNP's figure 6.3, with epoll instead of select: the interest set lives in the kernel, so a
 * wait costs the same whether 10 or 10,000 connections are idle.
 *
 * Edge-triggered (EPOLLET on every registration, the listener's too): epoll_wait reports a
 * socket once when something changes (data arrive, room to send appears), not for as long
 * as the state lasts. So each report is answered with all the I/O there is: accept, send
 * and recv each until EAGAIN; stop early and the rest waits for an edge that may never come.
 * One early stop is forced: over the output high-water mark conn_wants_input() says stop
 * reading, and the bytes left in the socket bring no new report. So connection_ready()
 * sends before it reads: the EPOLLOUT report that drains the output also resumes reading.
 * EPOLLOUT is watched only while output is pending, as in epoll.c, so that the diff shows
 * the edge-triggered rules and nothing else. Registered once with EPOLLIN it would not spin
 * (edge-triggered) and would save two epoll_ctl() calls per full send buffer, but then the
 * resume above would be all that keeps a connection from starving; here the EPOLL_CTL_MOD
 * that drops EPOLLOUT also re-checks the socket (pitfall b). EPOLLIN stays watched for good:
 * epoll.c drops it under back-pressure only because, level-triggered, it would spin.
 *
 * Run:    build/epoll_et -p 9000           then nc 127.0.0.1 9000 from several terminals
 * Watch:  in a reply's stamps, t_ready (epoll_wait returned) comes before t_copy_begin:
 *         the process learns of the data first and copies it second, and the notification
 *         delay (t_ready - t_arrive) is visible. In STATS, against requests: eagain and
 *         calls_recvmsg, one recvmsg more per report than epoll (the one that says EAGAIN),
 *         and calls_epoll_wait, how many requests one wake-up serves under load.
 * --work: epoll_wait with a zero timeout, and a unit of work each time nothing is ready:
 *         the process computes while its data are on the way.
 * Timeouts: epoll_wait's timeout ends the sleep in time for conn_sweep(), which looks at every
 *         connection once a second and closes those idle too long or too slow (conn.h).
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAX_EVENTS 256

static int epfd;
static struct server_options opt;

/* Watch for input always (an edge per arrival), for output only while some is pending. */
static void watch(struct conn *c)
{
    uint32_t want = EPOLLIN | EPOLLET | (conn_has_output(c) ? EPOLLOUT : 0);
    if (want == c->watched)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    int rc = epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    stats_add(STAT_calls_epoll_ctl, 1);
    if (rc < 0) { /* cannot happen for a socket in the set; if it does, lose only this one */
        fprintf(stderr, "epoll: epoll_ctl MOD: %s; closing the connection\n", strerror(errno));
        conn_close(c);
        return;
    }
    c->watched = want;
}

static void accept_connections(int listen_fd)
{
    struct conn *c; /* accept4() until no client is left waiting (common/conn.c) */
    while ((c = conn_accept(listen_fd, &opt)) != NULL) {
        int fd = c->fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        int rc = epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev); /* reports data already there too */
        stats_add(STAT_calls_epoll_ctl, 1);
        if (rc < 0) { /* e.g. ENOSPC: max_user_watches reached */
            fprintf(stderr, "epoll: epoll_ctl ADD: %s\n", strerror(errno));
            conn_refuse(c, "server cannot watch this connection (epoll_ctl failed)");
            continue;
        }
        c->watched = EPOLLIN | EPOLLET;
    }
    if (errno != EAGAIN) { /* an accept failed (e.g. EMFILE) before the queue was empty */
        /* We stopped before EAGAIN, so clients still waiting would bring no new edge. The
         * MOD re-checks the listener and reports it again if one is waiting (pitfall c). */
        struct epoll_event again = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &again) < 0)
            die("epoll_ctl MOD");
        stats_add(STAT_calls_epoll_ctl, 1);
    }
}

/* LAB 4 BEGIN: connection_ready(): send, then read until EAGAIN (no report comes twice) */
/* Whatever the report says (EPOLLIN, EPOLLOUT, EPOLLHUP...), it will not be repeated: send
 * until EAGAIN, read until EAGAIN, sending each read's replies before the next read. */
static void connection_ready(struct conn *c, uint64_t t_wait, uint64_t t_ready)
{
    bool can_send = true; /* until a send() says EAGAIN: then an EPOLLOUT edge will come */
    for (;;) {
        if (can_send && !conn_done(c) && conn_has_output(c))
            can_send = conn_flush(c) == 1; /* after back-pressure, this lets us read again */
        if (!conn_wants_input(c))
            break; /* bytes left unread now bring no edge: the EPOLLOUT edge brings us back */
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        struct proto_stamps st = {.wait = t_wait, .ready = t_ready};
        st.copy_begin = stamp_now();
        ssize_t n = stamp_recv(c->fd, space, room, 0, &st.arrive); /* never blocks */
        st.copy_end = stamp_now();
        if (n > 0) {
            if (st.arrive > t_ready) /* came after the report (pitfall e): this recv found it */
                st.wait = st.ready = st.copy_begin;
            conn_received(c, (size_t)n, &st);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break; /* drained: only now will new data make a new edge */
        else if (!(n < 0 && errno == EINTR))
            conn_read_ended(c, n, errno); /* peer closed (replies still go) or error */
    }
    if (conn_done(c))
        conn_close(c); /* close() also takes the socket out of the epoll set */
    else
        watch(c);
}
/* LAB 4 END */

/* conn_sweep(): c is past --idle-timeout or --frame-timeout. */
static void time_out(struct conn *c, uint64_t now)
{
    if (conn_timed_out(c, now)) /* the error reply is queued: send it, close */
        connection_ready(c, 0, 0);
}

int main(int argc, char **argv)
{
    int listen_fd = server_start(argc, argv, "epoll_et",
                                 "I/O multiplexing: epoll, edge-triggered, one thread", &opt);
    if (set_nonblocking(listen_fd) < 0)
        die("fcntl O_NONBLOCK");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL}; /* the listener */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
        die("epoll_ctl ADD");

    /* The stop signals are blocked except inside epoll_pwait, so one cannot slip in between
     * the check of server_stopping() and the wait, leaving us asleep. (With --work the waits
     * never sleep, and a zero-timeout epoll_pwait() does not deliver a pending signal, so
     * then they stay unblocked.) */
    sigset_t during_wait;
    if (sigprocmask(opt.work ? SIG_UNBLOCK : SIG_BLOCK, server_stop_signals(), &during_wait) < 0)
        die("sigprocmask");

    struct epoll_event events[MAX_EVENTS];
    while (!server_stopping()) {
        conn_sweep(&opt, time_out); /* if one is due */
        uint64_t t_wait = stamp_now();
        int timeout = conn_sweep_wait_ms(&opt, opt.work ? 0 : -1); /* until the next sweep */
        int n = epoll_pwait(epfd, events, MAX_EVENTS, timeout, &during_wait); /* phase 1 */
        stats_add(STAT_calls_epoll_wait, 1);
        while (n == 0 && opt.work && !server_stopping() && !conn_sweep_due(&opt)) { /* --work */
            work_unit();
            n = epoll_pwait(epfd, events, MAX_EVENTS, 0, &during_wait);
            stats_add(STAT_calls_epoll_wait, 1);
        }
        uint64_t t_ready = stamp_now();
        if (n < 0) {
            if (errno == EINTR) {
                stats_add(STAT_eintr, 1);
                continue;
            }
            die("epoll_pwait");
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                accept_connections(listen_fd);
            else
                connection_ready(events[i].data.ptr, t_wait, t_ready);
        }
    }
    conn_close_all();
    return server_finish();
}
