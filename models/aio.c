/* aio.c - POSIX asynchronous I/O: aio_read and aio_write, completions as real-time signals.
 *
 * The model: the process hands each connection's read to the system with aio_read() and
 * goes on at once; a signal tells it later that the read is over and the data are in its
 * buffer. Neither phase blocks the process: it learns of the wait and of the copy only when
 * both are done. This is UNP's figure 6.5 (TLPI 63.1). Replies go out with aio_write().
 *
 * The system, in glibc, is not the kernel: POSIX AIO is a pool of helper threads, each of
 * which blocks in read() or write() on one socket for us (`threads` in STATS counts them).
 * Linux's own AIO (io_submit) blocks in the submitting call on a socket, so this is the POSIX
 * AIO there is. What follows from it:
 *  - glibc starts at most aio_threads helpers, 20 by default: 20 idle clients would hold all
 *    of them, and every other read would wait behind them (head-of-line starvation). So
 *    aio_init() asks for one helper per connection, and --max-conns is capped at
 *    AIO_MAX_HELPERS: a client the server has no helper for is refused, not starved.
 *  - aio_cancel() cannot stop a helper blocked in read(). Connections are closed between
 *    operations; at exit, shutdown() ends the reads still in flight, and their completions
 *    are taken before any buffer a helper could still write into is freed. A connection idle
 *    too long or too slow (conn.h) is ended the same way: conn_sweep(), once a second, queues
 *    its error reply, shutdown(SHUT_RD) ends its read, and the completion sends the reply.
 *
 * Notification: SIGEV_SIGNAL, a real-time signal with the connection's descriptor in
 * sival_int, taken with sigtimedwait() while blocked: one call, one finished operation, no
 * search. aio_suspend() would take the list of every outstanding aiocb on each call (O(n),
 * and worse in glibc), and aio_error() on each afterwards to find which one finished. Only
 * if the signal queue overflowed, and a completion's signal was lost, does a once-a-second
 * rescan ask aio_error() about them all (rescan_in_flight).
 *
 * Accepting: there is no aio_accept(). A non-blocking listening socket checked once per loop
 * would leave an idle server, asleep in sigwaitinfo(), deaf to a new client. So the
 * listening socket alone uses signal-driven I/O (UNP figure 6.4): F_SETSIG queues
 * ACCEPT_SIGNAL for each new connection, into the same sigwaitinfo().
 *
 * One operation at a time per connection: read, answer, write all (a short write submits
 * the rest), read again; the buffers must not move while a helper uses them (conn.h).
 *
 * Run:    build/aio -p 9000                then nc 127.0.0.1 9000 from several terminals
 * Watch:  in a reply, t_copy_begin = t_copy_end = 0 (the copy was the helper's read(), not
 *         ours) and t_arrive = 0 (read() brings no arrival stamp); t_wait is the aio_read
 *         submission, t_ready the sigwaitinfo() that returned its completion. In STATS:
 *         `threads`, and signals = completions + new connections.
 * --work: sigtimedwait() with a zero timeout, and a unit of work whenever nothing has
 *         finished: the process computes while the helpers wait and copy for it.
 * Timeouts: the wait is sigtimedwait(), sigwaitinfo() with a time limit, so that it ends in
 *         time for conn_sweep().
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_SIGNAL   (SIGRTMIN + 1) /* the lower number: sigwaitinfo takes it first */
#define AIO_SIGNAL      (SIGRTMIN + 2)
#define AIO_MAX_HELPERS 4096 /* helper threads, hence connections: see docs/models/aio.md */

enum { OP_NONE, OP_READ, OP_WRITE }; /* in c->watched: the operation in flight */

/* Indexed by descriptor: one aiocb per connection, and a way to find every connection with an
 * operation in flight when the server stops. */
struct slot {
    struct conn *c;
    struct aiocb cb;
};
static struct slot *slots;
static long in_flight;
static bool accept_failed; /* accept4() failed (e.g. EMFILE): clients may still be waiting */
static struct server_options opt;

static void close_connection(struct conn *c)
{
    slots[c->fd].c = NULL;
    conn_close(c);
}

/* Hand the operation to glibc: a helper thread does it, and AIO_SIGNAL says when it is over. */
static int submit(struct conn *c, int op, const void *buf, size_t len)
{
    struct aiocb *cb = &slots[c->fd].cb;
    *cb = (struct aiocb){.aio_fildes = c->fd, .aio_buf = (void *)buf, .aio_nbytes = len};
    cb->aio_sigevent.sigev_notify = SIGEV_SIGNAL;
    cb->aio_sigevent.sigev_signo = AIO_SIGNAL;
    cb->aio_sigevent.sigev_value.sival_int = c->fd; /* not c: a late signal may outlive it */
    int rc;
    if (op == OP_READ) {
        c->since = stamp_now(); /* t_wait: from now on the process is waiting for data */
        rc = aio_read(cb);
        stats_add(STAT_calls_aio_read, 1);
    } else {
        rc = aio_write(cb);
        stats_add(STAT_calls_aio_write, 1);
    }
    if (rc < 0) { /* EAGAIN: glibc could neither queue it nor start a helper for it */
        fprintf(stderr, "aio: %s: %s; closing the connection\n",
                op == OP_READ ? "aio_read" : "aio_write", strerror(errno));
        return -1;
    }
    c->watched = (uint32_t)op;
    in_flight++;
    return 0;
}

/* Between operations: send what is queued, else read more, else we are done. */
static void next_operation(struct conn *c)
{
    int rc = 0;
    if (!conn_done(c) && conn_has_output(c)) {
        size_t len;
        const uint8_t *out = conn_output(c, &len); /* t_reply is stamped here */
        rc = submit(c, OP_WRITE, out, len);
    } else if (!conn_done(c) && conn_wants_input(c)) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        rc = submit(c, OP_READ, space, room);
    } else {
        close_connection(c);
    }
    if (rc < 0)
        close_connection(c);
}

/* AIO_SIGNAL named this connection, or the rescan asks: is its operation over? */
static void completed(struct conn *c, uint64_t t_ready)
{
    if (c->watched == OP_NONE)
        return; /* a signal for an operation the rescan took already */
    struct aiocb *cb = &slots[c->fd].cb;
    int err = aio_error(cb); /* set by the helper before it sent the signal */
    stats_add(STAT_calls_aio_error, 1);
    if (err == EINPROGRESS)
        return;
    ssize_t n = aio_return(cb);
    stats_add(STAT_completions, 1);
    in_flight--;
    int op = (int)c->watched;
    c->watched = OP_NONE;
    if (op == OP_READ) {
        if (n > 0) {
            stats_add(STAT_bytes_in, (uint64_t)n);
            /* the copy was the helper's read(): no copy stamps, no arrival stamp */
            struct proto_stamps st = {.wait = c->since, .ready = t_ready};
            conn_received(c, (size_t)n, &st);
        } else {
            conn_read_ended(c, n, err); /* end of file (replies still go) or error */
        }
    } else if (n < 0) {
        c->broken = true; /* nothing more can be sent */
        stats_add(STAT_errors_reset, 1);
        fprintf(stderr, "fd %d: aio_write: %s; closing the connection\n", c->fd, strerror(err));
    } else {
        conn_output_sent(c, (size_t)n); /* a short write leaves the rest for the next one */
    }
    next_operation(c);
}

/* glibc's helper sends the completion signal with sigqueue(). When the real-time signal queue
 * is full (RLIMIT_SIGPENDING) that fails, the signal is lost, and nothing else would ever say
 * that the operation is over. So once a second ask aio_error() about every operation in
 * flight: a lost completion costs a second, not the connection. */
static void rescan_in_flight(long n_slots)
{
    uint64_t now = stamp_now();
    for (long fd = 0; fd < n_slots && in_flight > 0; fd++)
        if (slots[fd].c != NULL && slots[fd].c->watched != OP_NONE)
            completed(slots[fd].c, now);
}

/* conn_sweep(): c is past --idle-timeout or --frame-timeout. Its aio_read is in flight (a
 * connection with output to send is not timed). If that read is over, its signal is queued
 * behind others: we are late, not the peer, and the next sweep looks again. Else queue the
 * error reply; aio_cancel() cannot stop the helper's read(), but shutdown() ends it (it
 * returns 0), and completed() sends the reply and closes, as after any end of file. */
static void time_out(struct conn *c, uint64_t now)
{
    stats_add(STAT_calls_aio_error, 1);
    if (aio_error(&slots[c->fd].cb) != EINPROGRESS || !conn_timed_out(c, now))
        return;
    if (shutdown(c->fd, SHUT_RD) < 0 && errno != ENOTCONN) /* ENOTCONN: reset, read ends too */
        fprintf(stderr, "fd %d: shutdown: %s\n", c->fd, strerror(errno));
}

static void accept_connections(int listen_fd)
{
    for (;;) { /* one signal may stand for several connections, or for none left */
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC); /* blocking: helpers read() it */
        stats_add(STAT_calls_accept, 1);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                stats_add(STAT_eagain, 1);
                accept_failed = false;
                return;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* e.g. EMFILE: it refuses one waiting client. The signal came once for all of
             * them (it is no level-triggered report), so go on while it refuses. */
            uint64_t refused = stats_get(STAT_connections_refused);
            conn_accept_failed(listen_fd, errno);
            if (stats_get(STAT_connections_refused) > refused)
                continue;
            /* It took no client: those left raise no new signal, so main() tries again at
             * each wake-up until an accept4() finds none. */
            accept_failed = true;
            return;
        }
        if (!conn_admit(fd, &opt))
            continue;
        struct conn *c = conn_open(fd, &opt);
        slots[fd].c = c;
        next_operation(c); /* the first aio_read */
    }
}

/* Stopping: end every read or write still in flight (aio_cancel cannot), and take its
 * completion, so that no helper is left writing into a buffer conn_close() frees. */
static bool end_operations_in_flight(const sigset_t *aio_signal, long n_slots)
{
    for (long fd = 0; fd < n_slots; fd++)
        if (slots[fd].c != NULL && slots[fd].c->watched != OP_NONE)
            shutdown((int)fd, SHUT_RDWR); /* the helper's read() returns 0, write() fails */
    const struct timespec patience = {.tv_sec = 2};
    siginfo_t si;
    while (in_flight > 0 && sigtimedwait(aio_signal, &si, &patience) == AIO_SIGNAL) {
        struct conn *c = slots[si.si_value.sival_int].c;
        if (si.si_code != SI_ASYNCIO || c == NULL || c->watched == OP_NONE)
            continue;
        stats_add(STAT_calls_aio_error, 1);
        if (aio_error(&slots[c->fd].cb) != EINPROGRESS) {
            c->watched = OP_NONE;
            in_flight--;
        }
    }
    return in_flight == 0;
}

int main(int argc, char **argv)
{
    int listen_fd = server_start(
        argc, argv, "aio", "asynchronous I/O: POSIX aio_read/aio_write, signal completions", &opt);
    if (opt.max_conns > AIO_MAX_HELPERS) /* past one helper per connection, reads would starve */
        opt.max_conns = AIO_MAX_HELPERS;
    struct aioinit init = {.aio_threads = (int)opt.max_conns, .aio_num = (int)opt.max_conns};
    aio_init(&init); /* before the first request, or glibc ignores it */

    long n_slots = sysconf(_SC_OPEN_MAX); /* every descriptor the process can have */
    slots = n_slots > 0 ? calloc((size_t)n_slots, sizeof *slots) : NULL;
    if (slots == NULL)
        die("calloc");

    /* Every signal we wait for stays blocked, so it is queued until sigwaitinfo() takes it
     * (glibc's helper threads block all signals). SIGIO: the real-time queue overflowed. */
    sigset_t waited, aio_signal;
    sigemptyset(&waited);
    sigaddset(&waited, ACCEPT_SIGNAL);
    sigaddset(&waited, AIO_SIGNAL);
    sigaddset(&waited, SIGIO);
    sigaddset(&waited, SIGINT);
    sigaddset(&waited, SIGTERM);
    sigemptyset(&aio_signal);
    sigaddset(&aio_signal, AIO_SIGNAL);
    if (sigprocmask(SIG_BLOCK, &waited, NULL) < 0)
        die("sigprocmask");
    int flags = fcntl(listen_fd, F_GETFL);
    if (flags < 0 || fcntl(listen_fd, F_SETOWN, getpid()) < 0 ||
        fcntl(listen_fd, F_SETSIG, ACCEPT_SIGNAL) < 0 ||
        fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK | O_ASYNC) < 0)
        die("fcntl");
    accept_connections(listen_fd); /* any that came before O_ASYNC was set */

    const struct timespec zero = {0}, one_second = {1, 0};
    struct timespec until_sweep;
    uint64_t next_rescan = 0;
    for (;;) {
        conn_sweep(&opt, time_out); /* if one is due */
        if (stamp_clock() >= next_rescan) {
            rescan_in_flight(n_slots);
            next_rescan = stamp_clock() + 1000000000u;
        }
        if (accept_failed)
            accept_connections(listen_fd);
        siginfo_t si;
        const struct timespec *timeout = opt.work ? &zero : conn_sweep_timeout(&opt, &until_sweep);
        if ((accept_failed || in_flight > 0) && timeout == NULL) /* accept4() again, rescan */
            timeout = &one_second;
        int sig = sigtimedwait(&waited, &si, timeout);
        stats_add(STAT_calls_sigwaitinfo, 1);
        uint64_t t_ready = stamp_now();
        if (sig < 0) {
            if (errno == EAGAIN) { /* nothing has finished: --work, so work; or a sweep is due */
                stats_add(STAT_eagain, 1);
                if (opt.work)
                    work_unit();
                continue;
            }
            if (errno == EINTR) {
                stats_add(STAT_eintr, 1);
                continue;
            }
            die("sigtimedwait");
        }
        if (sig == SIGINT || sig == SIGTERM)
            break;
        stats_add(STAT_signals, 1);
        if (sig == AIO_SIGNAL) {
            struct conn *c = slots[si.si_value.sival_int].c;
            if (si.si_code == SI_ASYNCIO && c != NULL) /* from glibc, not someone's kill() */
                completed(c, t_ready);
        } else {
            if (sig == SIGIO)
                stats_add(STAT_signal_overflows, 1);
            accept_connections(listen_fd);
        }
    }
    if (end_operations_in_flight(&aio_signal, n_slots))
        conn_close_all();
    else /* a helper may still use its buffer: leave the memory alone, exit() ends them all */
        fprintf(stderr, "aio: %ld operations did not end; not freeing their buffers\n", in_flight);
    return server_finish();
}
