/* poll.c - I/O multiplexing with poll (ppoll), level-triggered, on non-blocking sockets.
 *
 * The model: one thread asks the kernel, in one call, to sleep until any of its sockets is
 * ready (ppoll), then reads only from the sockets it was told about. Phase 1, waiting
 * for data, blocks the process in ppoll for all connections at once; phase 2, copying,
 * happens in recv(), which never blocks because the socket is known to hold data. This is
 * UNP's figure 6.3, with poll. The interest set lives in the process: an array of pollfd,
 * rebuilt from the connections before every wait like select.c's bitmaps (so that a diff of
 * the two shows the mechanism and nothing else); ppoll writes its answer into revents and
 * leaves events alone. The kernel looks at every entry, and so does the loop: a wait costs
 * in proportion to the connections, idle or not (TLPI 63.2). Unlike an fd_set, the array
 * is as long as we make it: no descriptor is too high for it.
 *
 * Level-triggered: ppoll reports a socket for as long as it has unread data, so each
 * report is answered with ONE recv(); whatever is left is reported again next time. Output
 * is written at once; only what the kernel would not take waits for POLLOUT, which is
 * watched only while such output is pending (else it would be reported all the time).
 *
 * Run:    build/poll -p 9000            then nc 127.0.0.1 9000 from several terminals
 * Watch:  in a reply's stamps, t_ready (ppoll returned) comes before t_copy_begin. In
 *         STATS, calls_poll against requests shows how many requests one wake-up serves,
 *         and CPU per request how the cost of a wait grows with the connections.
 * --work: ppoll with a zero timeout, and a unit of work each time nothing is ready:
 *         the process computes while its data are on the way.
 * Timeouts: ppoll's timeout ends the sleep in time for conn_sweep(), which looks at every
 *         connection once a second and closes those idle too long or too slow (conn.h).
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>

static struct server_options opt;
static struct conn **conns;    /* by descriptor, up to the descriptor limit */
static int conns_end;          /* one past the highest descriptor in conns[] */
static struct pollfd *watched; /* events: what the next wait watches for; revents: found */
static nfds_t nfds;            /* entries in watched[] */

/* Watch for input while we want it, for output only while some is pending. */
static void watch(int fd, bool input, bool output)
{
    watched[nfds].fd = fd;
    watched[nfds].events = (input ? POLLIN : 0) | (output ? POLLOUT : 0);
    nfds++;
}

/* The interest set is the process's: rebuild it from the connections for every wait. */
static void watch_all(int listen_fd)
{
    nfds = 0;
    watch(listen_fd, true, false);
    while (conns_end > 0 && conns[conns_end - 1] == NULL)
        conns_end--; /* the highest ones have closed */
    for (int fd = 0; fd < conns_end; fd++)
        if (conns[fd] != NULL)
            watch(fd, conn_wants_input(conns[fd]), conn_has_output(conns[fd]));
}

static void accept_connections(int listen_fd)
{
    struct conn *c; /* accept4() until no client is left waiting (common/conn.c) */
    while ((c = conn_accept(listen_fd, &opt)) != NULL) {
        int fd = c->fd;
        conns[fd] = c; /* below the descriptor limit, so it fits */
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
        conn_flush(c); /* whatever the kernel takes now; POLLOUT brings us back for more */
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
    int listen_fd = server_start(argc, argv, "poll",
                                 "I/O multiplexing: poll, level-triggered, one thread", &opt);
    if (set_nonblocking(listen_fd) < 0)
        die("fcntl O_NONBLOCK");
    struct rlimit rl; /* as server_start() left it: every descriptor we get is below it */
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    conns = calloc(rl.rlim_cur, sizeof *conns);
    watched = calloc(rl.rlim_cur, sizeof *watched);
    if (conns == NULL || watched == NULL)
        die("calloc");

    /* The stop signals are blocked except inside ppoll, so one cannot slip in between the
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
        for (;;) { /* phase 1 */
            n = ppoll(watched, nfds, timeout, &during_wait);
            stats_add(STAT_calls_poll, 1);
            if (n != 0 || !opt.work || server_stopping() || conn_sweep_due(&opt))
                break;
            work_unit(); /* --work: nothing ready, so work */
        }
        uint64_t t_ready = stamp_now();
        if (n < 0) {
            if (errno == EINTR) {
                stats_add(STAT_eintr, 1);
                continue;
            }
            die("ppoll");
        }
        for (nfds_t i = 0; i < nfds; i++) {
            int fd = watched[i].fd;
            bool input = watched[i].revents & (POLLIN | POLLHUP | POLLERR);
            bool output = watched[i].revents & POLLOUT;
            if (!input && !output)
                continue;
            if (fd == listen_fd)
                accept_connections(listen_fd);
            else
                connection_ready(conns[fd], input, t_wait, t_ready);
        }
    }
    conn_close_all();
    return server_finish();
}
