/* libevent.c - a reference server on libevent 2.1 bufferevents (memcached, tmux, Tor...).
 *
 * Not a teaching model but a yardstick: the same protocol (common/conn.c) on a library real
 * servers use, written the way its bufferevents are meant to be used, so that models/epoll.c
 * can be compared with it for CPU per request. Underneath it is models/epoll.c again: one
 * thread, epoll_wait, non-blocking sockets. What libevent does for us:
 *   - the loop (event_base_loop): epoll_wait, then the callback of every event that fired.
 *   - accepting: an evconnlistener accept4()s every waiting client and hands us each socket.
 *   - reading: a bufferevent watches EPOLLIN while reading is enabled; when the socket is
 *     ready it asks the kernel how much is there (ioctl FIONREAD), readv()s that into its
 *     own input buffer, and only THEN calls our read callback. The data have been copied when
 *     we hear of them, so t_copy_begin/t_copy_end are 0, as for a completion, and t_ready is
 *     the moment our callback runs. We copy the bytes on into conn.c's buffer (evbuffer_remove;
 *     a server of libevent's own would parse in the evbuffer).
 *   - writing: bufferevent_write() copies the reply into its output buffer and turns EPOLLOUT
 *     on (epoll_ctl); the next turn of the loop writev()s it, turns EPOLLOUT off again
 *     (epoll_ctl) and calls our write callback once the buffer is empty. So a reply leaves one
 *     loop turn later than in models/epoll.c, which send()s at once.
 * What we still do ourselves: back-pressure (reading disabled while conn_wants_input() is
 * false or libevent holds CONN_OUTPUT_HIGH_WATER bytes for the peer), the timeout sweep (an
 * evtimer), and t_wait: we run the loop one turn at a time (EVLOOP_ONCE), stamping each turn.
 *
 * Run:    build/libevent -p 9000        then nc 127.0.0.1 9000
 * Stamps: t_wait (before each turn), t_ready (our read callback), t_reply (handed to
 *         bufferevent_write: the kernel gets it a turn later). t_arrive and the copy are 0.
 * STATS:  calls_recvmsg counts libevent's readv() calls (one per read callback), calls_send
 *         its writev()s that emptied the output (one per write callback), calls_accept the
 *         accepted sockets. Its ioctl(FIONREAD)s, epoll_ctl()s, epoll_wait()s and the
 *         accept4() that says EAGAIN are not ours to count (docs/models/libevent.md).
 * --work: the loop turns with EVLOOP_NONBLOCK (a zero timeout), and a turn in which no
 *         callback ran is followed by a unit of work.
 */
#include "../common/conn.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"
#include "../common/work.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static struct event_base *base;
static struct server_options opt;
static uint64_t t_wait; /* when this turn of the loop began */
static bool stopping;   /* SIGINT or SIGTERM came */
static bool busy;       /* a callback ran this turn (--work) */
static struct event *sweep_timer;

struct peer {
    struct conn *c;
    struct bufferevent *bev;
    size_t counted;           /* bytes of bev's output buffer counted in STATS buffer_bytes */
    struct peer *prev, *next; /* every open one, to free them all at the end */
};
static struct peer *peers;

/* STATS buffer_bytes counts what waits in libevent's output buffer, as in conn.c's own. */
static size_t count_queued(struct peer *p)
{
    size_t now = evbuffer_get_length(bufferevent_get_output(p->bev));
    if (now > p->counted)
        stats_gauge_add(STAT_buffer_bytes, STAT_buffer_bytes_peak, now - p->counted);
    else
        stats_sub(STAT_buffer_bytes, p->counted - now);
    p->counted = now;
    return now;
}

static void close_peer(struct peer *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        peers = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    conn_release(p->c);       /* after an error reply: shut down gracefully first */
    bufferevent_free(p->bev); /* BEV_OPT_CLOSE_ON_FREE: libevent close()s the socket */
    stats_sub(STAT_buffer_bytes, p->counted);
    free(p);
}

/* Move what libevent has read into conn.c's buffer, which answers every whole request. */
static void take_input(struct peer *p, const struct proto_stamps *st)
{
    struct evbuffer *in = bufferevent_get_input(p->bev);
    while (evbuffer_get_length(in) > 0 && conn_wants_input(p->c)) {
        size_t room;
        uint8_t *space = conn_in_space(p->c, &room);
        int n = evbuffer_remove(in, space, room);
        if (n <= 0)
            break;
        stats_add(STAT_bytes_in, (uint64_t)n);
        conn_received(p->c, (size_t)n, st);
    }
    if (p->c->closing) { /* after an error reply nothing more is read */
        stats_add(STAT_bytes_in, evbuffer_get_length(in));
        evbuffer_drain(in, evbuffer_get_length(in));
    }
}

/* After every event: hand replies to libevent, close when done, read only while we want. */
static void after_io(struct peer *p)
{
    struct conn *c = p->c;
    if (!c->broken && conn_has_output(c)) {
        size_t len;
        const uint8_t *out = conn_output(c, &len); /* stamps t_reply */
        if (bufferevent_write(p->bev, out, len) < 0)
            die("bufferevent_write"); /* only out of memory */
        conn_output_sent(c, len);
        conn_output_trim(c); /* a big reply: libevent has its copy now */
    }
    size_t queued = count_queued(p);
    if (conn_done(c) && (c->broken || queued == 0)) {
        close_peer(p);
        return;
    }
    bool want = conn_wants_input(c) && queued < CONN_OUTPUT_HIGH_WATER;
    bool reading = bufferevent_get_enabled(p->bev) & EV_READ;
    if (want && !reading) {
        if (bufferevent_enable(p->bev, EV_READ) < 0)
            die("bufferevent_enable");
        if (evbuffer_get_length(bufferevent_get_input(p->bev)) > 0) { /* read before we stopped */
            struct proto_stamps st = {.wait = t_wait, .ready = stamp_now()};
            take_input(p, &st);
            after_io(p);
        }
    } else if (!want && reading) {
        bufferevent_disable(p->bev, EV_READ);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct peer *p = arg;
    struct proto_stamps st = {.wait = t_wait, .ready = stamp_now()}; /* already copied */
    stats_add(STAT_calls_recvmsg, 1);
    busy = true;
    take_input(p, &st);
    after_io(p);
}

/* The output buffer is empty: the last writev() took all of it. */
static void on_written(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct peer *p = arg;
    stats_add(STAT_calls_send, 1);
    busy = true;
    conn_output_sent(p->c, 0); /* all sent now: an idle time may begin */
    after_io(p);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct peer *p = arg;
    int err = EVUTIL_SOCKET_ERROR();
    busy = true;
    if (what & BEV_EVENT_EOF)
        conn_read_ended(p->c, 0, 0); /* replies still go */
    else if ((what & BEV_EVENT_ERROR) && (what & BEV_EVENT_WRITING))
        conn_write_failed(p->c, err);
    else if (what & BEV_EVENT_ERROR)
        conn_read_ended(p->c, -1, err);
    after_io(p);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l, (void)sa, (void)salen, (void)arg;
    stats_add(STAT_calls_accept, 1);
    busy = true;
    if (!conn_admit(fd, &opt)) /* --max-conns: told so and closed */
        return;
    struct conn *c = conn_open(fd, &opt);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        conn_refuse(c, "server cannot watch this connection (bufferevent_socket_new failed)");
        return;
    }
    struct peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        die("calloc");
    *p = (struct peer){.c = c, .bev = bev, .next = peers};
    if (peers != NULL)
        peers->prev = p;
    peers = p;
    c->model_data = p;
    bufferevent_setcb(p->bev, on_read, on_written, on_event, p);
    after_io(p); /* enables reading */
}

/* accept4() failed for a reason other than EAGAIN, EINTR, ECONNABORTED: e.g. EMFILE. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    conn_accept_failed(evconnlistener_get_fd(l), EVUTIL_SOCKET_ERROR());
}

static void time_out(struct conn *c, uint64_t now)
{
    struct peer *p = c->model_data;
    if (evbuffer_get_length(bufferevent_get_output(p->bev)) > 0)
        return; /* replies still going out: the server is busy with it, as in conn.c */
    if (conn_timed_out(c, now)) /* the error reply is queued: send it, close */
        after_io(p);
}

static void arm_sweep(void)
{
    struct timespec ts;
    if (conn_sweep_timeout(&opt, &ts) == NULL)
        return; /* no timeouts */
    struct timeval tv = {.tv_sec = ts.tv_sec, .tv_usec = (ts.tv_nsec + 999) / 1000};
    if (evtimer_add(sweep_timer, &tv) < 0)
        die("evtimer_add");
}

static void on_sweep_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    conn_sweep(&opt, time_out);
    arm_sweep();
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what, (void)arg;
    stopping = true;
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    int listen_fd = server_start(argc, argv, "libevent",
                                 "reference: libevent 2.1 bufferevents, one thread", &opt);
    /* libevent reads with readv(): no arrival stamp can reach us, so the kernel need not take
     * them. */
    int off = 0;
    if (setsockopt(listen_fd, SOL_SOCKET, SO_TIMESTAMPNS, &off, sizeof off) < 0)
        die("setsockopt SO_TIMESTAMPNS");
    if (set_nonblocking(listen_fd) < 0) /* the listener's accept4() loop ends at EAGAIN */
        die("fcntl O_NONBLOCK");
    base = event_base_new();
    if (base == NULL)
        die("event_base_new");
    struct evconnlistener *listener =
        evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                           0 /* listening already */, listen_fd);
    if (listener == NULL)
        die("evconnlistener_new");
    evconnlistener_set_error_cb(listener, on_accept_error);
    sweep_timer = evtimer_new(base, on_sweep_timer, NULL);
    /* The stop signals through the loop: libevent's handler writes to a socketpair it watches. */
    struct event *sigint = evsignal_new(base, SIGINT, on_stop_signal, NULL);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_stop_signal, NULL);
    if (sweep_timer == NULL || sigint == NULL || sigterm == NULL ||
        evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0)
        die("evsignal_add");
    arm_sweep();

    while (!stopping) {
        t_wait = stamp_now();
        busy = false;
        if (event_base_loop(base, opt.work ? EVLOOP_NONBLOCK : EVLOOP_ONCE) < 0)
            die("event_base_loop");
        if (opt.work && !busy && !stopping)
            work_unit(); /* nothing was ready: compute while the data are on the way */
    }
    while (peers != NULL)
        close_peer(peers);
    event_free(sigint);
    event_free(sigterm);
    event_free(sweep_timer);
    evconnlistener_free(listener);
    event_base_free(base);
    return server_finish();
}
