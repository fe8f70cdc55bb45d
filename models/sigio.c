/* sigio.c - signal-driven I/O: the kernel queues a real-time signal per socket event.
 *
 * The model: every socket, the listening one too, is O_NONBLOCK | O_ASYNC, owned by this
 * process (F_SETOWN) with F_SETSIG = SIGRTMIN. Whenever one becomes readable or writable the
 * kernel queues a SIGRTMIN carrying that socket's descriptor (si_fd) and poll bits (si_band).
 * The process keeps the signals blocked and takes them one at a time with sigwaitinfo(), so
 * there is no handler and no race: phase 1, waiting for data, is spent asleep in
 * sigwaitinfo(); phase 2, copying, in recvmsg(), which never blocks. This is UNP's figure
 * 6.4 (TLPI 63.3), with the signal taken synchronously instead of by a handler.
 *
 * TCP raises the signal for many conditions (a connection, every arriving segment, the peer's
 * FIN, an error, room to send again), so a signal only says "look at this socket". Each one
 * is answered by reading until EAGAIN, then sending; a signal for data already read costs one
 * EAGAIN. Output the kernel would not take waits for a POLL_OUT signal, which comes only after
 * a send() failed with EAGAIN. Events before O_ASYNC was set raised no signal, so a new
 * socket is checked once with poll(). If the signal queue (RLIMIT_SIGPENDING) is full, the
 * kernel drops the real-time signal and sends a plain SIGIO, with no descriptor: then one
 * poll() over every socket finds what was lost.
 *
 * Run:    build/sigio -p 9000          then nc 127.0.0.1 9000 from several terminals
 *         (ulimit -i 16; exec build/sigio -p 9000) lets the signal queue overflow under load
 * Watch:  in STATS, signals against requests (a signal per event, not per request), eagain
 *         (reads that found the socket empty), and signal_overflows with calls_poll (rescans).
 *         As with epoll, t_ready comes before t_copy_begin: told first, copied second. But one
 *         sigwaitinfo() brings one event: no batching, so calls_sigwaitinfo stays at one per
 *         request under load.
 * --work: sigtimedwait() with a zero timeout, and a unit of work each time no signal is
 *         pending (that sigtimedwait() fails with EAGAIN: counted in eagain).
 * Timeouts: the wait is sigtimedwait(), sigwaitinfo() with a time limit: it ends in time for
 *         conn_sweep(), which looks at every connection once a second and closes those idle
 *         too long or too slow (conn.h). No signal says that a peer has been silent.
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static struct server_options opt;
static int listen_fd;
static int io_signal;       /* SIGRTMIN: queued once per event, each with its descriptor */
static struct conn **by_fd; /* the open connections, indexed by descriptor (si_fd) */
static int by_fd_size;
static struct pollfd *scan; /* rescan(): one entry per open connection */
static bool accept_failed;  /* accept4() failed (e.g. EMFILE): clients may still be waiting */

/* Have the kernel queue io_signal, carrying fd, to this process whenever fd is ready. */
static int enable_signals(int fd)
{
    if (fcntl(fd, F_SETOWN, getpid()) < 0 || fcntl(fd, F_SETSIG, io_signal) < 0)
        return -1;
    return fcntl(fd, F_SETFL, O_NONBLOCK | O_ASYNC); /* last: owner and signal are set */
}

static void close_connection(struct conn *c)
{
    by_fd[c->fd] = NULL; /* signals still queued for this descriptor will find nobody */
    conn_close(c);
}

/* One recvmsg(), stamped with the wait that led here; true if the socket was empty. */
static bool read_once(struct conn *c, uint64_t t_wait, uint64_t t_ready)
{
    size_t room;
    uint8_t *space = conn_in_space(c, &room);
    struct proto_stamps st = {.wait = t_wait, .ready = t_ready};
    st.copy_begin = stamp_now();
    ssize_t n = stamp_recv(c->fd, space, room, 0, &st.arrive); /* never blocks */
    st.copy_end = stamp_now();
    if (n > 0)
        conn_received(c, (size_t)n, &st);
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return true; /* all read; or a signal for data an earlier read took */
    else if (!(n < 0 && errno == EINTR))
        conn_read_ended(c, n, errno); /* peer closed (replies still go) or error */
    return false;
}

/* Read until the socket is empty, then send the replies. Afterwards new data will raise a new
 * signal, and output the kernel would not take will raise POLL_OUT: nothing is left behind
 * that no signal will bring us back for. Reading before sending also means no read here can
 * find the client's next request, sent in answer to our reply after this signal was taken. */
static void serve(struct conn *c, uint64_t t_wait, uint64_t t_ready)
{
    bool empty = false;
    for (;;) {
        while (!empty && conn_wants_input(c))
            empty = read_once(c, t_wait, t_ready);
        if (conn_done(c) || !conn_has_output(c) || conn_flush(c) != 1)
            break; /* nothing to send, or the send buffer is full: POLL_OUT brings us back */
        if (empty || !conn_wants_input(c))
            break;
        /* reading stopped at the output high-water mark, and the output is gone: read on */
    }
    if (conn_done(c))
        close_connection(c);
}

/* conn_sweep(): c is past --idle-timeout or --frame-timeout. */
static void time_out(struct conn *c, uint64_t now)
{
    if (conn_timed_out(c, now)) /* the error reply is queued: send it, close */
        serve(c, 0, 0);
}

static void accept_connections(uint64_t t_wait)
{
    struct conn *c; /* accept4() until no client is left waiting (common/conn.c) */
    while ((c = conn_accept(listen_fd, &opt)) != NULL) { /* one signal, several clients */
        int fd = c->fd;                                  /* fd < RLIMIT_NOFILE = by_fd_size */
        if (enable_signals(fd) < 0) { /* O_ASYNC is not inherited from listen_fd */
            fprintf(stderr, "sigio: fcntl: %s\n", strerror(errno));
            conn_refuse(c, "server cannot get signals for this connection (fcntl failed)");
            continue;
        }
        by_fd[fd] = c;
        /* Data that came before O_ASYNC raised no signal, and never will: look for it. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 0);
        stats_add(STAT_calls_poll, 1);
        if (n != 0) /* data, end of file or an error (or poll failed: read to find out) */
            serve(c, t_wait, stamp_now());
    }
    /* conn_accept() returned NULL: no client left (EAGAIN), or accept4() failed and may have
     * left clients waiting whose signals were taken already. No new signal will come for
     * them, so main() tries again at each wake-up until an accept4() finds none. */
    accept_failed = errno != EAGAIN;
}

/* Take every client waiting now, for clients no signal will announce: those that came before
 * O_ASYNC was set on the listening socket, or whose signal was lost to a full queue. Each
 * round accepts them all, or (out of descriptors) refuses at least one. */
static void accept_all_waiting(uint64_t t_wait)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    for (int round = 0; round < SOMAXCONN; round++) {
        int n = poll(&p, 1, 0);
        stats_add(STAT_calls_poll, 1);
        if (n == 0)
            return;
        accept_connections(t_wait);
    }
}

/* Plain SIGIO: the signal queue was full, events were lost, and we do not know whose. As TLPI
 * 63.3.2 advises, fall back to I/O multiplexing for one round: one poll() over every socket. */
static void rescan(uint64_t t_wait)
{
    accept_all_waiting(t_wait);
    nfds_t n = 0;
    for (int fd = 0; fd < by_fd_size; fd++)
        if (by_fd[fd] != NULL)
            scan[n++] = (struct pollfd){
                .fd = fd, .events = POLLIN | (conn_has_output(by_fd[fd]) ? POLLOUT : 0)};
    int ready = poll(scan, n, 0);
    stats_add(STAT_calls_poll, 1);
    uint64_t t_ready = stamp_now();
    for (nfds_t i = 0; i < n; i++)
        if (ready < 0 || scan[i].revents != 0) /* (poll failed: look at every one) */
            serve(by_fd[scan[i].fd], t_wait, t_ready);
}

int main(int argc, char **argv)
{
    listen_fd = server_start(argc, argv, "sigio",
                             "signal-driven I/O: a real-time signal per socket event", &opt);
    io_signal = SIGRTMIN;

    /* Block what we wait for before anything can raise it: then the signals queue up until
     * sigwaitinfo() takes them, and no handler ever runs. The stop signals are taken the
     * same way (server_start's handlers never run), so a stop cannot slip in between a check
     * and the wait: it is simply the next signal taken. */
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, io_signal);
    sigaddset(&waited, SIGIO);
    sigaddset(&waited, SIGINT);
    sigaddset(&waited, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &waited, NULL) < 0)
        die("sigprocmask");

    struct rlimit rl; /* server_start raised it: no descriptor can be this high */
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    by_fd_size = (int)rl.rlim_cur;
    by_fd = calloc((size_t)by_fd_size, sizeof *by_fd);
    scan = calloc((size_t)by_fd_size, sizeof *scan);
    if (by_fd == NULL || scan == NULL)
        die("calloc");
    if (enable_signals(listen_fd) < 0)
        die("fcntl F_SETOWN/F_SETSIG/O_ASYNC");
    accept_all_waiting(stamp_now()); /* clients that came before O_ASYNC */

    const struct timespec zero = {0, 0}, one_second = {1, 0};
    struct timespec until_sweep;
    for (;;) {
        conn_sweep(&opt, time_out); /* if one is due */
        if (accept_failed)
            accept_connections(stamp_now());
        siginfo_t si;
        uint64_t t_wait = stamp_now();
        const struct timespec *timeout = opt.work ? &zero : conn_sweep_timeout(&opt, &until_sweep);
        if (accept_failed && timeout == NULL) /* wake up to try accept4() again */
            timeout = &one_second;
        int sig = sigtimedwait(&waited, &si, timeout); /* phase 1: asleep until an event */
        stats_add(STAT_calls_sigwaitinfo, 1);
        while (sig < 0 && errno == EAGAIN && opt.work && !conn_sweep_due(&opt)) { /* --work */
            stats_add(STAT_eagain, 1);
            work_unit();
            sig = sigtimedwait(&waited, &si, &zero);
            stats_add(STAT_calls_sigwaitinfo, 1);
        }
        uint64_t t_ready = stamp_now();
        if (sig < 0) {
            if (errno == EAGAIN) { /* no signal in time: a sweep is due */
                stats_add(STAT_eagain, 1);
                continue;
            }
            if (errno == EINTR) { /* a signal we do not wait for, e.g. SIGCONT */
                stats_add(STAT_eintr, 1);
                continue;
            }
            die("sigtimedwait");
        }
        if (sig == SIGINT || sig == SIGTERM)
            break;
        stats_add(STAT_signals, 1);
        if (sig == SIGIO) { /* si_code SI_KERNEL, no si_fd: the queue overflowed */
            stats_add(STAT_signal_overflows, 1);
            rescan(t_wait);
        } else if (si.si_fd == listen_fd) {
            accept_connections(t_wait);
        } else if (si.si_fd >= 0 && si.si_fd < by_fd_size && by_fd[si.si_fd] != NULL) {
            serve(by_fd[si.si_fd], t_wait, t_ready); /* POLL_IN, POLL_OUT, POLL_ERR: look */
        } /* else: a signal for a connection closed since it was queued */
    }
    conn_close_all();
    return server_finish();
}
