/* select.c - I/O multiplexing with select (pselect), level-triggered, on non-blocking sockets.
 *
 * The model: one thread asks the kernel, in one call, to sleep until any of its sockets is
 * ready (pselect), then reads only from the sockets it was told about. Phase 1, waiting
 * for data, blocks the process in pselect for all connections at once; phase 2, copying,
 * happens in recv(), which never blocks because the socket is known to hold data. This is
 * UNP's figure 6.3. The interest set lives in the process: two bitmaps (fd_set), rebuilt
 * from the connections before every wait and handed over as copies, since pselect writes
 * its answer into them. The kernel looks at every descriptor up to the highest, and so does
 * the loop: a wait costs in proportion to the connections, idle or not (TLPI 63.2). An
 * fd_set has FD_SETSIZE (1024) bits and FD_SET() does not check: a connection whose
 * descriptor would not fit is refused, never watched.
 *
 * Level-triggered: pselect reports a socket for as long as it has unread data, so each
 * report is answered with ONE recv(); whatever is left is reported again next time. Output
 * is written at once; only what the kernel would not take waits for writability, which is
 * watched only while such output is pending (else it would be reported all the time).
 *
 * Run:    build/select -p 9000          then nc 127.0.0.1 9000 from several terminals
 * Watch:  in a reply's stamps, t_ready (pselect returned) comes before t_copy_begin. In
 *         STATS, calls_select against requests shows how many requests one wake-up serves,
 *         and connections_refused_fd_setsize how many clients found no bit left for them.
 * --work: pselect with a zero timeout, and a unit of work each time nothing is ready:
 *         the process computes while its data are on the way.
 * Timeouts: pselect's timeout ends the sleep in time for conn_sweep(), which looks at every
 *         connection once a second and closes those idle too long or too slow (conn.h).
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/select.h>
#include <sys/socket.h>

static struct server_options opt;
static struct conn *conns[FD_SETSIZE]; /* by descriptor; select cannot watch one above */
static int conns_end;                  /* one past the highest descriptor in conns[] */
/* LAB 2 BEGIN: the fd_sets, nfds, and watch_all(listen_fd), which fills them before each wait */
static fd_set want_in, want_out;   /* what the next wait watches for */
static fd_set ready_in, ready_out; /* what it found: pselect writes into these copies */
static int nfds;                   /* one past the highest descriptor watched */

/* Watch for input while we want it, for output only while some is pending. */
static void watch(int fd, bool input, bool output)
{
    if (input)
        FD_SET(fd, &want_in);
    if (output)
        FD_SET(fd, &want_out);
    if (fd >= nfds)
        nfds = fd + 1;
}

/* The interest set is the process's: rebuild it from the connections for every wait. */
static void watch_all(int listen_fd)
{
    FD_ZERO(&want_in);
    FD_ZERO(&want_out);
    nfds = 0;
    watch(listen_fd, true, false);
    while (conns_end > 0 && conns[conns_end - 1] == NULL)
        conns_end--; /* the highest ones have closed */
    for (int fd = 0; fd < conns_end; fd++)
        if (conns[fd] != NULL)
            watch(fd, conn_wants_input(conns[fd]), conn_has_output(conns[fd]));
}
/* LAB 2 END */

static void accept_connections(int listen_fd)
{
    struct conn *c; /* accept4() until no client is left waiting (common/conn.c) */
    while ((c = conn_accept(listen_fd, &opt)) != NULL) {
        int fd = c->fd;
        if (fd >= FD_SETSIZE) { /* FD_SET() would write past the end of the fd_set */
            conn_refuse(c, "fd >= FD_SETSIZE: select cannot watch it");
            stats_add(STAT_connections_refused_fd_setsize, 1);
            continue;
        }
        conns[fd] = c;
        if (fd >= conns_end)
            conns_end = fd + 1;
    }
}

static void connection_ready(struct conn *c, bool input, uint64_t t_wait, uint64_t t_ready)
{
    if (input && conn_wants_input(c)) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        struct proto_stamps st = {.wait = t_wait, .ready = t_ready};
        st.copy_begin = stamp_now();
        ssize_t n = stamp_recv(c->fd, space, room, 0, &st.arrive); /* never blocks */
        st.copy_end = stamp_now();
        if (n > 0)
            conn_received(c, (size_t)n, &st);
        else if (!(n < 0 && (errno == EAGAIN || errno == EINTR)))
            conn_read_ended(c, n, errno); /* peer closed (replies still go) or error */
    }
    if (!conn_done(c) && conn_has_output(c))
        conn_flush(c); /* whatever the kernel takes now; writability brings us back for more */
    if (conn_done(c)) {
        conns[c->fd] = NULL; /* the next watch_all() leaves it out */
        conn_close(c);
    }
}

/* conn_sweep(): c is past --idle-timeout or --frame-timeout. */
static void time_out(struct conn *c, uint64_t now)
{
    if (conn_timed_out(c, now)) /* the error reply is queued: send it, close */
        connection_ready(c, false, 0, 0);
}

int main(int argc, char **argv)
{
    int listen_fd = server_start(argc, argv, "select",
                                 "I/O multiplexing: select, level-triggered, one thread", &opt);
    if (set_nonblocking(listen_fd) < 0)
        die("fcntl O_NONBLOCK");

    /* The stop signals are blocked except inside pselect, so one cannot slip in between the
     * check of server_stopping() and the wait, leaving us asleep. (With --work the waits
     * never sleep, so there is no such gap: then they stay unblocked, and a stop is seen at
     * once, even in the middle of a work_unit().) */
    sigset_t during_wait;
    if (sigprocmask(opt.work ? SIG_UNBLOCK : SIG_BLOCK, server_stop_signals(), &during_wait) < 0)
        die("sigprocmask");

    static const struct timespec zero; /* --work: look, do not wait */
    struct timespec until_sweep;
    while (!server_stopping()) {
        conn_sweep(&opt, time_out); /* if one is due: before watch_all(), which skips the closed */
        const struct timespec *timeout = opt.work ? &zero : conn_sweep_timeout(&opt, &until_sweep);
        watch_all(listen_fd);
        uint64_t t_wait = stamp_now();
        int n;
        /* LAB 2 BEGIN: phase 1: n = pselect() on copies of the fd_sets (and --work) */
        for (;;) { /* phase 1 */
            ready_in = want_in;
            ready_out = want_out;
            n = pselect(nfds, &ready_in, &ready_out, NULL, timeout, &during_wait);
            stats_add(STAT_calls_select, 1);
            if (n != 0 || !opt.work || server_stopping() || conn_sweep_due(&opt))
                break;
            work_unit(); /* --work: nothing ready, so work */
        }
        /* LAB 2 END */
        uint64_t t_ready = stamp_now();
        if (n < 0) {
            if (errno == EINTR) {
                stats_add(STAT_eintr, 1);
                continue;
            }
            die("pselect");
        }
        /* LAB 2 BEGIN: serve every descriptor pselect reported (FD_ISSET) */
        for (int fd = 0; fd < nfds; fd++) {
            bool input = FD_ISSET(fd, &ready_in), output = FD_ISSET(fd, &ready_out);
            if (!input && !output)
                continue;
            if (fd == listen_fd)
                accept_connections(listen_fd);
            else
                connection_ready(conns[fd], input, t_wait, t_ready);
        }
        /* LAB 2 END */
    }
    conn_close_all();
    return server_finish();
}
