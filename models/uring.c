/* uring.c - io_uring: submit operations, reap their completions, one thread.
 *
 * The model: the process does not ask whether a socket is ready. It asks the kernel to do the
 * whole operation (accept, recvmsg, send) by writing an entry into a submission queue shared
 * with the kernel, and later finds one entry per finished operation in a completion queue.
 * Neither phase of input is the process's: the kernel waits for the data and copies them into
 * our buffer before it posts the completion. The process sleeps only in io_uring_enter(),
 * which hands over the new submissions and waits for a completion, for all connections at
 * once. This is UNP's figure 6.5, asynchronous I/O.
 *
 * One operation at a time per connection: RECVMSG, answer, SEND until all is sent (a short
 * send is resubmitted for the rest), RECVMSG again. user_data tells the completions apart:
 * the connection's address, with the operation in its low bits. One multishot ACCEPT
 * accepts every connection: one submission, one completion per client.
 *
 * Run:    build/uring -p 9000           then nc 127.0.0.1 9000 from several terminals
 * Watch:  t_copy_begin and t_copy_end are 0 in every reply: the copy was not our call.
 *         t_wait is when the RECVMSG was queued, t_ready when its completion was reaped.
 *         In STATS, calls_io_uring_enter against requests: two per request with one client
 *         (the RECVMSG's completion, then the SEND's), far fewer under load, when one enter
 *         submits and reaps for many. calls_accept, calls_recvmsg and calls_send count the
 *         operations submitted (the kernel makes those calls). threads=1: no helper threads.
 * --work: io_uring_enter only submits, never waits; each time no completion is there, one
 *         unit of work.
 * Timeouts: the wait's timeout ends it in time for conn_sweep(), which once a second queues
 *         an error reply on each connection idle too long or too slow (conn.h); shutdown()
 *         then ends its RECVMSG in flight (res 0), and the SEND of the reply follows as after
 *         any end of file. The socket is closed only once the kernel is done with it.
 * Needs Linux 5.19 (multishot accept, cancel-any). Where io_uring is not available (old
 * kernel, kernel.io_uring_disabled, seccomp), it says so and exits 77 before listening.
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Submission queue entries, and completion queue entries (4 times as many: each connection has
 * one operation in flight, so at 10,000 connections one wake-up can reap thousands). Too small,
 * and the queues fill: sq_full, cq_overflow in STATS. About 320 KB of ring in all. */
#define RING_ENTRIES    4096
#define RING_CQ_ENTRIES (4 * RING_ENTRIES)

/* The operation, in the low bits of user_data (a struct conn is malloc'd: 16-byte aligned). */
enum op { OP_ACCEPT, OP_POLL_LISTENER, OP_RECV, OP_SEND, OP_CANCEL };
#define OP_MASK 7u

/* What an outstanding RECVMSG needs until it completes, one per descriptor number: the
 * kernel writes the arrival stamp into `control` when the data come, long after we submit. */
struct recv_args {
    struct msghdr msg;
    struct iovec iov;
    union {
        char space[STAMP_CONTROL_SIZE];
        struct cmsghdr align;
    } control;
};

static struct io_uring ring;
static struct recv_args *recv_args; /* indexed by fd */
static int listen_fd;
static unsigned in_flight; /* operations submitted whose last completion has not come yet */
static bool draining;      /* stopping: take completions, start nothing */
static struct server_options opt;

/* A free submission entry for this operation. If the queue is full, hand it to the kernel
 * first (one io_uring_enter), then take the entry freed. prep_*() leaves user_data alone. */
static struct io_uring_sqe *get_sqe(enum op op, struct conn *c)
{
    struct io_uring_sqe *sqe;
    while ((sqe = io_uring_get_sqe(&ring)) == NULL) {
        stats_add(STAT_sq_full, 1);
        int rc = io_uring_submit(&ring); /* never waits, so no EINTR */
        stats_add(STAT_calls_io_uring_enter, 1);
        if (rc < 0) {
            errno = -rc;
            die("io_uring_submit");
        }
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | op);
    in_flight++;
    return sqe;
}

static void submit_accept(void)
{
    io_uring_prep_multishot_accept(get_sqe(OP_ACCEPT, NULL), listen_fd, NULL, NULL, SOCK_CLOEXEC);
    stats_add(STAT_submissions, 1); /* an operation for the kernel, not a system call of ours */
}

static void submit_recv(struct conn *c)
{
    struct recv_args *a = &recv_args[c->fd];
    size_t room;
    a->iov.iov_base = conn_in_space(c, &room); /* stays put until the completion */
    a->iov.iov_len = room;
    a->msg = (struct msghdr){.msg_iov = &a->iov,
                             .msg_iovlen = 1,
                             .msg_control = a->control.space,
                             .msg_controllen = sizeof a->control.space};
    if (stamp_enabled())
        io_uring_prep_recvmsg(get_sqe(OP_RECV, c), c->fd, &a->msg, 0);
    else /* --no-stamps: no arrival stamp to collect, so the plain RECV, which costs less */
        io_uring_prep_recv(get_sqe(OP_RECV, c), c->fd, a->iov.iov_base, room, 0);
    stats_add(STAT_submissions, 1);
    c->since = stamp_now(); /* t_wait: we asked for data now; the kernel waits for us */
}

static void submit_send(struct conn *c)
{
    size_t len;
    const uint8_t *out = conn_output(c, &len); /* stamps t_reply; stays put until sent */
    io_uring_prep_send(get_sqe(OP_SEND, c), c->fd, out, len, MSG_NOSIGNAL);
    stats_add(STAT_submissions, 1);
}

/* The connection's one operation has completed: start the next, or close it. */
static void next_op(struct conn *c)
{
    if (!c->broken && conn_has_output(c))
        submit_send(c); /* the replies, or the rest of a short send */
    else if (conn_done(c))
        conn_close(c); /* nothing of this connection is left in the kernel */
    else
        submit_recv(c);
}

/* conn_sweep(): c is past --idle-timeout or --frame-timeout. Its RECVMSG is in flight (a
 * connection with output to send is not timed), and its buffer and socket stay the kernel's
 * until that completes: after queuing the error reply, shutdown() makes it complete at once,
 * with 0 as at end of file, and received() goes on to SEND the reply and close. */
static void time_out(struct conn *c, uint64_t now)
{
    if (!conn_timed_out(c, now))
        return;
    if (shutdown(c->fd, SHUT_RD) < 0 && errno != ENOTCONN) /* ENOTCONN: reset, recv ends too */
        fprintf(stderr, "fd %d: shutdown: %s\n", c->fd, strerror(errno));
}

static void accepted(int res, unsigned flags)
{
    bool ended = !(flags & IORING_CQE_F_MORE); /* the multishot ACCEPT is no longer armed */
    if (res >= 0) {
        if (conn_admit(res, &opt))
            submit_recv(conn_open(res, &opt));
    } else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN) {
        conn_accept_failed(listen_fd, -res); /* EMFILE: refuses a waiting client, if any */
        if (ended) { /* an accept fails for want of a descriptor before it looks for a client:
                        wait for one to knock rather than fail again at once */
            io_uring_prep_poll_add(get_sqe(OP_POLL_LISTENER, NULL), listen_fd, POLLIN);
            stats_add(STAT_submissions, 1);
            return;
        }
    }
    if (ended)
        submit_accept(); /* it ended after an error, or when the completion queue was full */
}

static void received(struct conn *c, int res)
{
    if (res > 0) {
        struct proto_stamps st = {.wait = c->since, .ready = stamp_now()}; /* copy: 0 */
        if (stamp_enabled()) /* the kernel filled in msg_controllen and the control message */
            st.arrive = stamp_arrival(&recv_args[c->fd].msg);
        stats_add(STAT_bytes_in, (uint64_t)res);
        conn_received(c, (size_t)res, &st);
    } else if (res == -ENOBUFS) {
        stats_add(STAT_enobufs, 1); /* only with provided buffers, which we do not use */
    } else if (res == -EAGAIN || res == -EINTR) {
        stats_add(res == -EAGAIN ? STAT_eagain : STAT_eintr, 1); /* then simply again */
    } else {
        conn_read_ended(c, res < 0 ? -1 : 0, -res); /* end of file: replies still go */
    }
    next_op(c);
}

static void sent(struct conn *c, int res)
{
    if (res >= 0) {
        conn_output_sent(c, (size_t)res); /* a short send leaves the rest queued */
    } else if (res == -EAGAIN || res == -EINTR) {
        stats_add(res == -EAGAIN ? STAT_eagain : STAT_eintr, 1);
    } else {
        c->broken = true;
        stats_add(STAT_errors_reset, 1);
        fprintf(stderr, "fd %d: send: %s; closing the connection\n", c->fd, strerror(-res));
    }
    next_op(c);
}

/* Take every completion in the queue. Reading the queue is no system call. */
static void reap(void)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    io_uring_for_each_cqe(&ring, head, cqe)
    {
        struct io_uring_cqe done = *cqe;
        io_uring_cqe_seen(&ring, cqe); /* free its slot before handling it */
        stats_add(STAT_completions, 1);
        if (!(done.flags & IORING_CQE_F_MORE))
            in_flight--; /* the kernel is done with this operation and its buffers */
        struct conn *c = (struct conn *)(uintptr_t)(done.user_data & ~(uint64_t)OP_MASK);
        enum op op = done.user_data & OP_MASK;
        if (draining) {
            if (op == OP_ACCEPT && done.res >= 0)
                close(done.res); /* accepted just before the cancel */
        } else if (op == OP_ACCEPT) {
            accepted(done.res, done.flags);
        } else if (op == OP_POLL_LISTENER) {
            submit_accept(); /* a client is waiting: descriptors may have been freed since */
        } else if (op == OP_RECV) {
            received(c, done.res);
        } else if (op == OP_SEND) {
            sent(c, done.res);
        }
    }
    /* More completions than the queue holds: the kernel keeps them (NODROP) and moves them
     * in at the next io_uring_enter. Counted each time it is found so. */
    if (io_uring_cq_has_overflow(&ring))
        stats_add(STAT_cq_overflow, 1);
}

static _Noreturn void unavailable(const char *why, const char *hint)
{
    fprintf(stderr, "uring: io_uring is not available here: %s%s\n", why, hint);
    exit(77); /* the tests report the model as SKIPPED */
}

int main(int argc, char **argv)
{
    /* The ring first: without io_uring the server must exit before it says it listens. */
    struct io_uring_params params = {.flags = IORING_SETUP_CQSIZE, .cq_entries = RING_CQ_ENTRIES};
    int err = -io_uring_queue_init_params(RING_ENTRIES, &ring, &params);
    if (err > 0) /* ENOSYS: no io_uring; EPERM: disabled by sysctl or seccomp */
        unavailable(strerror(err), err == EPERM ? " (kernel.io_uring_disabled or seccomp)" : "");
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    if (probe == NULL || !io_uring_opcode_supported(probe, IORING_OP_SOCKET))
        unavailable("Linux older than 5.19", " (no multishot accept)"); /* as OP_SOCKET */
    io_uring_free_probe(probe);

    listen_fd = server_start(argc, argv, "uring",
                             "io_uring: submissions and completions, one thread", &opt);
    if (set_nonblocking(listen_fd) < 0) /* so conn_accept_failed() never waits in poll() */
        die("fcntl O_NONBLOCK");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    recv_args = calloc(rl.rlim_cur, sizeof *recv_args); /* every fd is below rlim_cur */
    if (recv_args == NULL)
        die("calloc");
    submit_accept();

    /* As in epoll, the stop signals are unblocked only inside the wait (io_uring_enter's
     * sigmask), so none can slip in between server_stopping() and the sleep. The timeout only
     * makes liburing enter once: without one, after an enter that submitted and then was
     * interrupted (it returns the number submitted, not EINTR), liburing 2.3 enters again and
     * sleeps on, the signal already handled. --work never sleeps: they stay unblocked. */
    sigset_t during_wait;
    if (sigprocmask(opt.work ? SIG_UNBLOCK : SIG_BLOCK, server_stop_signals(), &during_wait) < 0)
        die("sigprocmask");

    while (!server_stopping()) {
        conn_sweep(&opt, time_out);                    /* if one is due */
        int wait_ms = conn_sweep_wait_ms(&opt, 60000); /* a minute at most (above), or less */
        struct __kernel_timespec long_wait = {.tv_sec = wait_ms / 1000,
                                              .tv_nsec = wait_ms % 1000 * 1000000ll};
        bool enter = opt.work ? io_uring_sq_ready(&ring) > 0 || io_uring_cq_has_overflow(&ring)
                              : io_uring_cq_ready(&ring) == 0;
        if (enter) { /* one io_uring_enter: submit what is queued; unless --work, sleep too */
            struct io_uring_cqe *cqe;
            int rc = opt.work ? io_uring_submit(&ring)
                              : io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &long_wait,
                                                                 &during_wait);
            stats_add(STAT_calls_io_uring_enter, 1);
            if (rc == -EINTR) {
                stats_add(STAT_eintr, 1);
            } else if (rc < 0 && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN) {
                errno = -rc;
                die("io_uring_enter");
            }
        }
        if (opt.work && io_uring_cq_ready(&ring) == 0)
            work_unit(); /* nothing completed: compute while the kernel works for us */
        else
            reap();
    }

    /* Stopping. The kernel may still write into our buffers for every operation in flight:
     * cancel them all and wait for their last completions (at most a second each) before
     * anything is freed. io_uring_queue_exit() would cancel them too, but not wait. */
    draining = true;
    io_uring_prep_cancel64(get_sqe(OP_CANCEL, NULL), 0, IORING_ASYNC_CANCEL_ANY);
    while (in_flight > 0) {
        struct __kernel_timespec second = {.tv_sec = 1};
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &second, NULL);
        stats_add(STAT_calls_io_uring_enter, 1);
        if (rc < 0 && rc != -EINTR)
            break; /* -ETIME: leave the rest to io_uring_queue_exit() */
        reap();
    }
    io_uring_queue_exit(&ring);
    conn_close_all();
    free(recv_args);
    return server_finish();
}
