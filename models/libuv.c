/* libuv.c - a reference server on libuv 1.x: what production code (Node.js, for one) builds on.
 *
 * Not a teaching model but a yardstick: the same protocol (common/conn.c) on the library many
 * real servers use, written the way libuv is meant to be used, so that models/epoll.c can be
 * compared with it for CPU per request. Underneath it is models/epoll.c again: one thread,
 * epoll_wait, non-blocking sockets. What libuv does for us:
 *   - the loop (uv_run): epoll_wait, then a callback per ready handle. Each turn runs timers,
 *     idle and prepare handles, waits, then check handles; uv_prepare_t is our hook just
 *     before it waits (t_wait).
 *   - reading: uv_read_start() keeps EPOLLIN watched; when a socket is ready libuv calls our
 *     alloc_cb for a buffer, read()s into it and calls read_cb. We hand out conn_in_space(),
 *     so the bytes land where the parser looks, with no copy. (read(), not recvmsg(): the
 *     kernel's arrival stamp never reaches us, and t_arrive is 0.)
 *   - writing: uv_try_write() write()s now if nothing is queued; uv_write() queues the rest
 *     and finishes it on EPOLLOUT, calling write_cb. Its bytes must stay put until then, and
 *     conn.c's output buffer moves, so the rest is copied into the write request: the copy
 *     happens only when the socket is full.
 *   - the epoll_ctl calls: libuv changes the interest set lazily, just before it waits.
 * What we still do ourselves: accepting (uv_listen()'s EMFILE trick closes the waiting
 * clients without a word, and our protocol owes them a reason, so a uv_poll_t watches the
 * listening socket and conn_accept() runs the usual accept4() loop), back-pressure (stop
 * reading while conn_wants_input() is false or libuv holds CONN_OUTPUT_HIGH_WATER bytes),
 * and the timeout sweep, from a uv_timer_t.
 *
 * Run:    build/libuv -p 9000           then nc 127.0.0.1 9000
 * Stamps: t_wait (prepare handle), t_ready = t_copy_begin (alloc_cb: libuv is about to read),
 *         t_copy_end (read_cb), t_reply (just before uv_try_write). t_arrive is 0.
 * STATS:  calls_recvmsg counts libuv's read() calls (one per read_cb, EAGAIN included),
 *         calls_send our uv_try_write() calls (each one write()), calls_accept our accept4()s.
 *         libuv's epoll_wait, epoll_ctl and its write() for uv_write() are not ours to
 *         count (docs/models/libuv.md has them from strace).
 * --work: a uv_idle_t: while one is active the loop polls without sleeping, and calls it
 *         every turn for a unit of work.
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

static uv_loop_t loop;
static struct server_options opt;
static int listen_fd;
static uint64_t t_wait; /* when this turn of the loop began to wait */

struct write_req { /* the part of a reply the socket would not take at once */
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

static void die_uv(const char *what, int err)
{
    fprintf(stderr, "libuv: %s: %s\n", what, uv_strerror(err));
    exit(1);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* The connection is done: free it (after an error reply, shutting down gracefully); libuv
 * closes the socket and cancels any write still queued. */
static void close_conn(struct conn *c)
{
    uv_tcp_t *tcp = c->model_data;
    tcp->data = NULL; /* write_cb of a cancelled write must not look for c */
    conn_release(c);
    uv_close((uv_handle_t *)tcp, free_handle);
}

static void on_written(uv_write_t *req, int status);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* After every event: send what is queued, close when done, read only while we want input. */
static void after_io(struct conn *c)
{
    uv_stream_t *s = c->model_data;
    if (!c->broken && conn_has_output(c)) {
        size_t len;
        const uint8_t *out = conn_output(c, &len); /* stamps t_reply */
        uv_buf_t buf = uv_buf_init((char *)out, (unsigned)len);
        int n = 0;
        if (s->write_queue_size == 0) {   /* else it must queue behind them */
            n = uv_try_write(s, &buf, 1); /* one write(), now */
            stats_add(STAT_calls_send, 1);
            if (n == UV_EAGAIN) {
                stats_add(STAT_eagain, 1);
                n = 0;
            }
        }
        if (n < 0) {
            conn_write_failed(c, -n);
        } else if ((size_t)n < len) { /* the socket is full: libuv sends the rest later */
            size_t rest = len - (size_t)n;
            struct write_req *wr = malloc(sizeof *wr + rest);
            if (wr == NULL)
                die("malloc");
            wr->len = rest;
            memcpy(wr->data, out + n, rest);
            stats_gauge_add(STAT_buffer_bytes, STAT_buffer_bytes_peak, sizeof *wr + rest);
            buf = uv_buf_init((char *)wr->data, (unsigned)rest);
            int rc = uv_write(&wr->req, s, &buf, 1, on_written);
            if (rc < 0) { /* the stream is already failing: no callback will come */
                stats_sub(STAT_buffer_bytes, sizeof *wr + rest);
                free(wr);
                conn_write_failed(c, -rc);
            }
        }
        if (!c->broken) {
            conn_output_sent(c, len); /* sent, or copied for libuv: out of conn.c's buffer */
            conn_output_trim(c);      /* a big reply: its rest has a copy of its own now */
        }
    }
    if (conn_done(c) && (c->broken || s->write_queue_size == 0)) {
        close_conn(c);
        return;
    }
    bool want = conn_wants_input(c) && s->write_queue_size < CONN_OUTPUT_HIGH_WATER;
    if (want && !c->watched) {
        int rc = uv_read_start(s, on_alloc, on_read);
        if (rc < 0) {
            conn_read_ended(c, -1, -rc);
            close_conn(c);
            return;
        }
    } else if (!want && c->watched) {
        uv_read_stop(s);
    }
    c->watched = want;
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    uv_stream_t *s = req->handle;
    struct conn *c = s->data; /* NULL: closed, the write cancelled */
    stats_sub(STAT_buffer_bytes, sizeof *wr + wr->len);
    free(wr);
    if (c == NULL)
        return;
    if (status < 0)
        conn_write_failed(c, -status);
    else if (s->write_queue_size == 0)
        conn_output_sent(c, 0); /* all sent now: an idle time may begin */
    after_io(c);                /* room again: maybe read again, or close */
}

/* libuv is about to read(): give it the space the parser reads from. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested; /* 64 KiB, libuv's guess; conn.c knows better what the next read needs */
    struct conn *c = h->data;
    size_t room;
    uint8_t *space = conn_in_space(c, &room);
    c->since = stamp_now(); /* t_ready = t_copy_begin: the first moment we hear of the data */
    *buf = uv_buf_init((char *)space, (unsigned)(room < UINT32_MAX ? room : UINT32_MAX));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf; /* it is conn_in_space(), which conn_received() knows */
    struct conn *c = s->data;
    struct proto_stamps st = {.wait = t_wait, .ready = c->since, .copy_begin = c->since};
    st.copy_end = stamp_now();
    stats_add(STAT_calls_recvmsg, 1);
    if (n == 0) { /* read() said EAGAIN */
        stats_add(STAT_eagain, 1);
        return;
    }
    if (n > 0) {
        stats_add(STAT_bytes_in, (uint64_t)n);
        conn_received(c, (size_t)n, &st);
    } else {
        conn_read_ended(c, n == UV_EOF ? 0 : -1, (int)-n); /* libuv has stopped reading */
        c->watched = false;
    }
    after_io(c);
}

static void on_listener_ready(uv_poll_t *p, int status, int events)
{
    (void)p, (void)status, (void)events;
    struct conn *c; /* accept4() until no client is left waiting (common/conn.c) */
    while ((c = conn_accept(listen_fd, &opt)) != NULL) {
        uv_tcp_t *tcp = malloc(sizeof *tcp);
        if (tcp == NULL)
            die("malloc");
        int rc = uv_tcp_init(&loop, tcp);
        if (rc < 0)
            die_uv("uv_tcp_init", rc); /* only fails for a bad address family */
        rc = uv_tcp_open(tcp, c->fd);  /* from now on libuv owns the socket */
        if (rc < 0) {
            fprintf(stderr, "libuv: uv_tcp_open: %s\n", uv_strerror(rc));
            uv_close((uv_handle_t *)tcp, free_handle); /* (it has no socket to close) */
            conn_refuse(c, "server cannot watch this connection (uv_tcp_open failed)");
            continue;
        }
        tcp->data = c;
        c->model_data = tcp;
        after_io(c); /* starts reading */
    }
}

static void time_out(struct conn *c, uint64_t now)
{
    if (((uv_stream_t *)c->model_data)->write_queue_size > 0)
        return; /* replies still going out: the server is busy with it, as in conn.c */
    if (conn_timed_out(c, now)) /* the error reply is queued: send it, close */
        after_io(c);
}

static void on_sweep_timer(uv_timer_t *t)
{
    conn_sweep(&opt, time_out);
    uv_timer_start(t, on_sweep_timer, (uint64_t)conn_sweep_wait_ms(&opt, -1), 0);
}

static void on_prepare(uv_prepare_t *p)
{
    (void)p;
    t_wait = stamp_now();
}

static void on_idle(uv_idle_t *i)
{
    (void)i;
    work_unit();
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    uv_stop(sig->loop);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h->data != NULL)
        close_conn(h->data);
    else
        uv_close(h, NULL); /* the static handles below */
}

int main(int argc, char **argv)
{
    listen_fd =
        server_start(argc, argv, "libuv",
                     "reference: libuv 1.x (uv_read_start, uv_try_write), one thread", &opt);
    /* libuv reads with read(): no arrival stamp can reach us, so the kernel need not take them. */
    int off = 0;
    if (setsockopt(listen_fd, SOL_SOCKET, SO_TIMESTAMPNS, &off, sizeof off) < 0)
        die("setsockopt SO_TIMESTAMPNS");
    if (set_nonblocking(listen_fd) < 0)
        die("fcntl O_NONBLOCK");
    int rc = uv_loop_init(&loop);
    if (rc < 0)
        die_uv("uv_loop_init", rc);

    static uv_poll_t listener;
    static uv_timer_t sweep;
    static uv_prepare_t prepare;
    static uv_idle_t idle;
    static uv_signal_t sigint, sigterm;
    if ((rc = uv_poll_init(&loop, &listener, listen_fd)) < 0 ||
        (rc = uv_poll_start(&listener, UV_READABLE, on_listener_ready)) < 0)
        die_uv("uv_poll_start", rc);
    if ((rc = uv_prepare_init(&loop, &prepare)) < 0 ||
        (rc = uv_prepare_start(&prepare, on_prepare)) < 0)
        die_uv("uv_prepare_start", rc);
    if ((rc = uv_timer_init(&loop, &sweep)) < 0)
        die_uv("uv_timer_init", rc);
    if (conn_timeout_resolution(&opt) != 0)
        uv_timer_start(&sweep, on_sweep_timer, (uint64_t)conn_sweep_wait_ms(&opt, -1), 0);
    if ((rc = uv_idle_init(&loop, &idle)) < 0)
        die_uv("uv_idle_init", rc);
    if (opt.work && (rc = uv_idle_start(&idle, on_idle)) < 0)
        die_uv("uv_idle_start", rc);
    /* The stop signals through the loop: libuv's handler writes to a pipe the loop watches. */
    if ((rc = uv_signal_init(&loop, &sigint)) < 0 ||
        (rc = uv_signal_start(&sigint, on_stop_signal, SIGINT)) < 0 ||
        (rc = uv_signal_init(&loop, &sigterm)) < 0 ||
        (rc = uv_signal_start(&sigterm, on_stop_signal, SIGTERM)) < 0)
        die_uv("uv_signal_start", rc);

    uv_run(&loop, UV_RUN_DEFAULT); /* until uv_stop() */

    uv_walk(&loop, close_any, NULL); /* close every handle, connections first-class */
    uv_run(&loop, UV_RUN_DEFAULT);   /* ...and let their close callbacks run */
    if ((rc = uv_loop_close(&loop)) < 0)
        die_uv("uv_loop_close", rc);
    return server_finish();
}
