/* nonblock.c - non-blocking I/O with busy polling: ask every socket, again and again.
 *
 * The model: every socket is O_NONBLOCK, the listening one included, and one thread sweeps
 * over all of them without ever sleeping: accept4() until EAGAIN, then for each connection a
 * recv() that either copies what is there or fails at once with EAGAIN ("not yet"), and a
 * send() of any pending output. No select, poll or epoll, no sleep: the process learns that
 * data arrived only when a recv() succeeds. Phase 1, waiting for data, does not block the
 * process, it spins: the wait is a stream of failed recv() calls. Phase 2, copying, happens
 * in the recv() that succeeds. This is UNP's figure 6.2 ("polling"), and it burns a CPU.
 *
 * Run:    build/nonblock -p 9000        then nc 127.0.0.1 9000, and top: 100% CPU, idle or not
 * Watch:  in STATS, busy_polls (sweeps) and eagain grow by hundreds of thousands a second
 *         with no client at all, and ctx_voluntary stays 0. loadgen's "us CPU per request"
 *         is the whole time between requests at light load, and "eagain N per request" is
 *         the price of each; idle connections make every sweep longer (one recv() each), so
 *         EAGAINs per request and the wait for the sweep to come round both grow. In a reply,
 *         t_ready equals t_copy_end (told by the recv that succeeded), and t_wait is the first
 *         recv() that failed since the previous data.
 * --work: one work_unit() per sweep that found nothing to do: the process computes between
 *         its polls, each unit delays the next look at the sockets, and with many idle
 *         connections the sweeps leave little time for work (epoll's --work asks about all
 *         sockets in one call, and computes while the kernel says nothing is ready).
 * Timeouts: once a second conn_sweep() queues an error reply on each connection idle too
 *         long or too slow (conn.h); the next sweep of ours sends it and closes the connection.
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

static struct server_options opt;
static struct conn **conns; /* every open connection, swept in turn */
static size_t n_conns, cap_conns;

/* Returns true if some connection came (or was refused). */
static bool accept_connections(int listen_fd)
{
    bool found = false;
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); /* never blocks */
        stats_add(STAT_calls_accept, 1);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                stats_add(STAT_eagain, 1); /* nobody waiting: the usual answer */
                return found;
            }
            if (errno == EINTR) {
                stats_add(STAT_eintr, 1);
                continue;
            }
            if (errno == ECONNABORTED)
                continue;
            conn_accept_failed(listen_fd, errno); /* e.g. EMFILE: asked again next sweep */
            return found;
        }
        found = true;
        if (!conn_admit(fd, &opt))
            continue;
        if (n_conns == cap_conns) {
            cap_conns = cap_conns ? 2 * cap_conns : 64;
            conns = realloc(conns, cap_conns * sizeof *conns);
            if (conns == NULL)
                die("realloc");
        }
        conns[n_conns++] = conn_open(fd, &opt);
    }
}

/* conn_sweep(): c is past --idle-timeout or --frame-timeout. Queue the error reply; the next
 * poll_connection() sends it, and the loop then closes c. */
static void time_out(struct conn *c, uint64_t now)
{
    conn_timed_out(c, now);
}

/* One look at one connection. Returns true if it did something (data, end, output sent). */
static bool poll_connection(struct conn *c)
{
    bool found = false;
    if (conn_wants_input(c)) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        struct proto_stamps st = {0};
        st.copy_begin = stamp_now();
        ssize_t n = stamp_recv(c->fd, space, room, 0, &st.arrive); /* never blocks */
        st.copy_end = stamp_now();
        if (n > 0) {
            st.wait = c->since != 0 ? c->since : st.copy_begin; /* first "not yet", if any */
            st.ready = st.copy_end; /* we learn the data are there only now */
            c->since = 0;
            conn_received(c, (size_t)n, &st);
            found = true;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->since == 0)
                c->since = st.copy_begin; /* the wait for the next data starts here */
        } else if (!(n < 0 && errno == EINTR)) {
            conn_read_ended(c, n, errno); /* peer closed (replies still go) or error */
            found = true;
        }
    }
    if (!conn_done(c) && conn_has_output(c) && conn_flush(c) != 0) /* 0: EAGAIN, try later */
        found = true;
    return found;
}

int main(int argc, char **argv)
{
    int listen_fd = server_start(argc, argv, "nonblock",
                                 "non-blocking I/O, busy polling: one thread, never sleeps", &opt);
    if (set_nonblocking(listen_fd) < 0)
        die("fcntl O_NONBLOCK");

    /* The stop signals stay unblocked: there is no blocking call for them to interrupt, and
     * the loop looks at server_stopping() on every sweep. */
    while (!server_stopping()) {
        conn_sweep(&opt, time_out); /* if one is due */
        stats_add(STAT_busy_polls, 1);
        bool found = accept_connections(listen_fd);
        for (size_t i = 0; i < n_conns;) {
            struct conn *c = conns[i];
            if (poll_connection(c))
                found = true;
            if (conn_done(c)) {
                conn_close(c);
                conns[i] = conns[--n_conns]; /* the last one moves here, and is looked at next */
            } else {
                i++;
            }
        }
        if (opt.work && !found)
            work_unit(); /* nothing to do this sweep: compute, then look again */
    }
    conn_close_all();
    free(conns);
    return server_finish();
}
