/* conn.c - per-connection buffers, request handling and partial writes (see conn.h). */
#include "conn.h"
#include "stamp.h"
#include "server.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_READ_CHUNK 16384u /* room offered to a read when no bigger frame is pending */
#define STATS_TEXT_MAX  4096u

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn *open_conns; /* a list of every open connection */

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL)
        die("realloc");
    return q;
}

/* Count connection buffer memory growing (or, freed, shrinking) from `from` to `to` bytes:
 * STATS buffer_bytes is the sum over every connection now, buffer_bytes_peak its maximum. */
static void count_buffer_bytes(size_t from, size_t to)
{
    if (to > from)
        stats_gauge_add(STAT_buffer_bytes, STAT_buffer_bytes_peak, to - from);
    else if (from > to)
        stats_sub(STAT_buffer_bytes, from - to);
}

/* Make room for `want` more bytes after b->end, moving live bytes to the front first. */
static void buffer_reserve(struct conn_buffer *b, size_t want)
{
    if (b->start > 0 && (b->start == b->end || b->cap - b->end < want)) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end < want) {
        size_t cap = b->cap ? b->cap : CONN_READ_CHUNK;
        while (cap - b->end < want)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        count_buffer_bytes(b->cap, cap);
        b->cap = cap;
    }
}

static uint8_t *buffer_append(struct conn_buffer *b, size_t n)
{
    buffer_reserve(b, n);
    uint8_t *p = b->data + b->end;
    b->end += n;
    return p;
}

static size_t buffer_used(const struct conn_buffer *b)
{
    return b->end - b->start;
}

/* Queue a frame reply. Its t_reply field is stamped in conn_flush(), just before the send. */
static void queue_reply(struct conn *c, uint8_t type, uint8_t status, uint32_t seq,
                        const struct proto_stamps *st, const void *payload, size_t len)
{
    uint64_t offset = c->out_sent + buffer_used(&c->out);
    uint8_t *p = buffer_append(&c->out, PROTO_REPLY_PREFIX_SIZE + len);
    proto_write_reply_prefix(p, type, status, seq, (uint32_t)len, st);
    if (len > 0)
        memcpy(p + PROTO_REPLY_PREFIX_SIZE, payload, len);
    if (!stamp_enabled())
        return; /* --no-stamps: t_reply stays 0 */
    if (c->n_unstamped == c->cap_unstamped) {
        size_t old = c->cap_unstamped * sizeof *c->unstamped;
        c->cap_unstamped = c->cap_unstamped ? 2 * c->cap_unstamped : 16;
        c->unstamped = xrealloc(c->unstamped, c->cap_unstamped * sizeof *c->unstamped);
        count_buffer_bytes(old, c->cap_unstamped * sizeof *c->unstamped);
    }
    c->unstamped[c->n_unstamped++] = offset + PROTO_REPLY_STAMP_OFFSET;
}

/* close() with unread input sends a reset, which can destroy a reply the peer has not read
 * yet. So: say we are done (FIN after the reply), discard what already arrived, close. */
static void shut_down_gracefully(int fd)
{
    if (shutdown(fd, SHUT_WR) == 0) {
        char sink[4096];
        for (int i = 0; i < 64; i++) {
            ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (n <= 0 && !(n < 0 && errno == EINTR))
                break;
        }
    }
}

static void close_gracefully(int fd)
{
    shut_down_gracefully(fd);
    close(fd);
}

/* Tell a peer we will not serve it (status SERVER_FULL, with the reason), and close. */
static void refuse_socket(int fd, const char *reason)
{
    size_t len = strlen(reason);
    uint8_t reply[PROTO_REPLY_PREFIX_SIZE + 128];
    if (len > sizeof reply - PROTO_REPLY_PREFIX_SIZE)
        len = sizeof reply - PROTO_REPLY_PREFIX_SIZE;
    struct proto_stamps none = {0};
    none.reply = stamp_now();
    proto_write_reply_prefix(reply, 0, PROTO_ERR_SERVER_FULL, 0, (uint32_t)len, &none);
    memcpy(reply + PROTO_REPLY_PREFIX_SIZE, reason, len);
    /* Best effort on a new socket: a short reply fits any send buffer. */
    ssize_t n = send(fd, reply, PROTO_REPLY_PREFIX_SIZE + len, MSG_NOSIGNAL | MSG_DONTWAIT);
    stats_add(STAT_calls_send, 1);
    if (n > 0)
        stats_add(STAT_bytes_out, (uint64_t)n);
    close_gracefully(fd);
    stats_add(STAT_connections_refused, 1);
}

bool conn_admit(int fd, const struct server_options *opt)
{
    if ((long)stats_get(STAT_connections_open) < opt->max_conns)
        return true;
    refuse_socket(fd, "too many connections (--max-conns)");
    return false;
}

static int spare_fd = -1; /* kept for conn_accept_failed(): see conn.h */

void conn_reserve_spare(void)
{
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (spare_fd < 0)
        die("open /dev/null");
}

void conn_accept_failed(int listen_fd, int err)
{
    static uint64_t last_log_ns, unlogged;
    stats_add(STAT_errors_accept, 1);
    if ((err == EMFILE || err == ENFILE) && spare_fd >= 0) {
        /* Linux fails accept() for want of a descriptor before it looks for a connection, so
         * one may not be waiting: wait for one, on a blocking listener at most a second, after
         * which the model's accept() tries again (descriptors may have been freed by then). */
        int flags = fcntl(listen_fd, F_GETFL);
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        if (poll(&p, 1, flags >= 0 && (flags & O_NONBLOCK) ? 0 : 1000) == 1) {
            close(spare_fd);
            int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            stats_add(STAT_calls_accept, 1);
            if (fd >= 0)
                refuse_socket(fd, "server out of file descriptors");
            spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
    }
    uint64_t now = stamp_clock();
    if (now - last_log_ns < 1000000000u) {
        unlogged++;
        return;
    }
    fprintf(stderr, "accept: %s (%llu more since the last message)\n", strerror(err),
            (unsigned long long)unlogged);
    last_log_ns = now;
    unlogged = 0;
}

struct conn *conn_accept(int listen_fd, const struct server_options *opt)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        stats_add(STAT_calls_accept, 1);
        if (fd >= 0) {
            if (conn_admit(fd, opt))
                return conn_open(fd, opt);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            stats_add(STAT_eagain, 1);
            errno = EAGAIN;
            return NULL;
        }
        if (err == EINTR)
            stats_add(STAT_eintr, 1);
        if (err == EINTR || err == ECONNABORTED)
            continue;
        conn_accept_failed(listen_fd, err); /* e.g. EMFILE: keep serving the others */
        errno = err;
        return NULL;
    }
}

struct conn *conn_open(int fd, const struct server_options *opt)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        die("calloc");
    c->fd = fd;
    c->opt = opt;
    c->last_active = stamp_clock_coarse(); /* the idle timeout counts from here */
    proto_parser_init(&c->parser, opt->max_frame);
    pthread_mutex_lock(&open_lock);
    c->next = open_conns;
    if (open_conns != NULL)
        open_conns->prev = c;
    open_conns = c;
    pthread_mutex_unlock(&open_lock);
    stats_add(STAT_connections, 1);
    stats_add(STAT_connections_open, 1);
    return c;
}

uint8_t *conn_in_space(struct conn *c, size_t *room)
{
    size_t have = buffer_used(&c->in);
    size_t want = CONN_READ_CHUNK;
    if (c->in_need > have && c->in_need - have > want)
        want = c->in_need - have; /* a big frame: let one read take all of it that is there */
    buffer_reserve(&c->in, want);
    *room = c->in.cap - c->in.end;
    return c->in.data + c->in.end;
}

static void log_error(const struct conn *c, const char *reason)
{
    fprintf(stderr, "fd %d: %s; closing the connection\n", c->fd, reason);
}

static void answer_error(struct conn *c, const struct proto_event *ev,
                         const struct proto_stamps *st)
{
    log_error(c, ev->reason);
    if (c->parser.mode == PROTO_MODE_LINE) {
        size_t len = strlen(ev->reason); /* "ERR line too long\n", "ERR zero byte in a line\n" */
        uint8_t *p = buffer_append(&c->out, 4 + len + 1);
        memcpy(p, "ERR ", 4);
        memcpy(p + 4, ev->reason, len);
        p[4 + len] = '\n';
        stats_add(ev->status == PROTO_ERR_BAD_MAGIC ? STAT_errors_line_zero_byte
                                                    : STAT_errors_line_too_long,
                  1);
    } else {
        queue_reply(c, ev->header.type, (uint8_t)ev->status, ev->header.seq, st, ev->reason,
                    strlen(ev->reason));
        stats_add(ev->status == PROTO_ERR_BAD_MAGIC      ? STAT_errors_bad_magic
                  : ev->status == PROTO_ERR_UNKNOWN_TYPE ? STAT_errors_unknown_type
                                                         : STAT_errors_too_large,
                  1);
    }
    c->closing = true;
    c->in.start = c->in.end = 0; /* nothing after a malformed request can be trusted */
}

static void answer_frame(struct conn *c, const struct proto_event *ev,
                         const struct proto_stamps *st)
{
    const struct proto_header *h = &ev->header;
    if (h->type == PROTO_ECHO) {
        queue_reply(c, h->type, PROTO_OK, h->seq, st, ev->data, ev->data_len);
        stats_add(STAT_requests, 1);
        stats_add(STAT_frames, 1);
        return;
    }
    stats_add(STAT_stats_requests, 1);
    if (h->type == PROTO_STATS_RESET) {
        stats_reset();
        queue_reply(c, h->type, PROTO_OK, h->seq, st, NULL, 0);
    } else {
        char text[STATS_TEXT_MAX];
        size_t len = stats_format(text, sizeof text, '\n');
        queue_reply(c, h->type, PROTO_OK, h->seq, st, text, len);
    }
}

static void answer_line(struct conn *c, const struct proto_event *ev)
{
    uint8_t *p = buffer_append(&c->out, ev->data_len + 1);
    proto_upper_line(p, ev->data, ev->data_len);
    p[ev->data_len] = '\n';
    stats_add(STAT_requests, 1);
    stats_add(STAT_lines, 1);
}

void conn_received(struct conn *c, size_t n, const struct proto_stamps *st)
{
    size_t had = buffer_used(&c->in), start = c->in.start; /* for the timeouts, below */
    c->in.end += n;
    while (!c->closing) {
        struct proto_event ev;
        enum proto_result r =
            proto_parse(&c->parser, c->in.data + c->in.start, buffer_used(&c->in), &ev);
        if (r == PROTO_NEED_MORE) {
            c->in_need = ev.need;
            break;
        }
        if (r == PROTO_ERROR) {
            answer_error(c, &ev, st);
            break;
        }
        if (r == PROTO_FRAME)
            answer_frame(c, &ev, st);
        else
            answer_line(c, &ev);
        c->in.start += ev.consumed;
    }
    /* Timeouts: bytes came now; what is left is a request begun now, unless it was begun
     * before this read and is still the same one (nothing was answered). The read's own stamp
     * if it has one, else the cheap clock (--no-stamps, or a model without copy stamps). */
    c->last_active = st->copy_end ? st->copy_end : st->ready ? st->ready : stamp_clock_coarse();
    if (had == 0 || c->in.start != start)
        c->request_begun = c->last_active;
    if (c->in.start == c->in.end)
        c->in.start = c->in.end = 0;
}

void conn_read_ended(struct conn *c, ssize_t n, int err)
{
    if (n == 0) {
        c->eof = true;
        if (buffer_used(&c->in) > 0) {
            stats_add(STAT_errors_truncated, 1);
            log_error(c, "peer closed in the middle of a request");
        }
    } else {
        c->broken = true;
        stats_add(STAT_errors_reset, 1);
        fprintf(stderr, "fd %d: recv: %s; closing the connection\n", c->fd, strerror(err));
    }
}

bool conn_has_output(const struct conn *c)
{
    return buffer_used(&c->out) > 0;
}

bool conn_wants_input(const struct conn *c)
{
    return !c->closing && !c->eof && !c->broken && buffer_used(&c->out) < CONN_OUTPUT_HIGH_WATER;
}

bool conn_done(const struct conn *c)
{
    return c->broken || ((c->closing || c->eof) && !conn_has_output(c));
}

static void stamp_replies(struct conn *c)
{
    if (c->n_unstamped == 0)
        return; /* (always so with --no-stamps) */
    uint64_t now = stamp_now();
    for (size_t i = 0; i < c->n_unstamped; i++)
        proto_put_u64(c->out.data + c->out.start + (c->unstamped[i] - c->out_sent), now);
    c->n_unstamped = 0;
}

const uint8_t *conn_output(struct conn *c, size_t *len)
{
    stamp_replies(c);
    *len = buffer_used(&c->out);
    return c->out.data + c->out.start;
}

void conn_output_sent(struct conn *c, size_t n)
{
    stats_add(STAT_bytes_out, (uint64_t)n);
    c->out.start += n;
    c->out_sent += (uint64_t)n;
    if (c->out.start == c->out.end) {
        c->out.start = c->out.end = 0;
        c->last_active = stamp_clock_coarse(); /* all sent: an idle time may begin */
    }
}

int conn_flush(struct conn *c)
{
    stamp_replies(c);
    while (buffer_used(&c->out) > 0) {
        ssize_t n = send(c->fd, c->out.data + c->out.start, buffer_used(&c->out), MSG_NOSIGNAL);
        stats_add(STAT_calls_send, 1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                stats_add(STAT_eagain, 1);
                return 0;
            }
            if (errno == EINTR) {
                stats_add(STAT_eintr, 1);
                if (server_stopping())
                    return -1;
                continue;
            }
            int err = errno;
            c->broken = true;
            stats_add(STAT_errors_reset, 1);
            fprintf(stderr, "fd %d: send: %s; closing the connection\n", c->fd, strerror(err));
            errno = err;
            return -1;
        }
        stats_add(STAT_bytes_out, (uint64_t)n);
        c->out.start += (size_t)n; /* a short write: the rest goes in the next call */
        c->out_sent += (uint64_t)n;
    }
    c->out.start = c->out.end = 0;
    c->last_active = stamp_clock_coarse(); /* all sent: an idle time may begin */
    return 1;
}

/* Take c off the list of open connections and free it. */
static void conn_free(struct conn *c)
{
    pthread_mutex_lock(&open_lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        open_conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&open_lock);
    count_buffer_bytes(c->in.cap + c->out.cap + c->cap_unstamped * sizeof *c->unstamped, 0);
    free(c->in.data);
    free(c->out.data);
    free(c->unstamped);
    free(c);
}

void conn_close(struct conn *c)
{
    if (c->closing && !c->broken)
        close_gracefully(c->fd);
    else
        close(c->fd);
    conn_free(c);
    stats_sub(STAT_connections_open, 1);
}

void conn_forget(struct conn *c)
{
    close(c->fd);
    conn_free(c);
}

void conn_close_all(void)
{
    while (open_conns != NULL)
        conn_close(open_conns);
}

void conn_refuse(struct conn *c, const char *reason)
{
    struct proto_stamps none = {0};
    log_error(c, reason);
    queue_reply(c, 0, PROTO_ERR_SERVER_FULL, 0, &none, reason, strlen(reason));
    c->closing = true;
    conn_flush(c);
    conn_close(c);
    stats_add(STAT_connections_refused, 1);
}

/* ---- Timeouts (conn.h) ---- */

/* When c's time is up, or 0: no deadline applies now. */
static uint64_t deadline(const struct conn *c)
{
    if (!conn_wants_input(c) || conn_has_output(c))
        return 0; /* the server is busy with it (or done): it does not wait for the peer */
    if (buffer_used(&c->in) > 0)
        return c->opt->frame_timeout_ns ? c->request_begun + c->opt->frame_timeout_ns : 0;
    return c->opt->idle_timeout_ns ? c->last_active + c->opt->idle_timeout_ns : 0;
}

uint64_t conn_time_left(const struct conn *c, uint64_t now)
{
    uint64_t end = deadline(c);
    if (end == 0)
        return UINT64_MAX;
    return end > now ? end - now : 0;
}

/* Log "fd N: WHAT; closing the connection", but at most one line a second: thousands of
 * connections may time out at once. Threads share it, hence the lock. */
static void log_timeout(const struct conn *c, const char *what)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t last_log_ns, unlogged;
    uint64_t now = stamp_clock(), more = 0;
    bool log = false;
    pthread_mutex_lock(&lock);
    if (last_log_ns == 0 || now - last_log_ns >= 1000000000u) {
        log = true;
        more = unlogged;
        last_log_ns = now;
        unlogged = 0;
    } else {
        unlogged++;
    }
    pthread_mutex_unlock(&lock);
    if (!log)
        return;
    if (more > 0)
        fprintf(stderr, "fd %d: %s; closing the connection (%llu more since the last message)\n",
                c->fd, what, (unsigned long long)more);
    else
        fprintf(stderr, "fd %d: %s; closing the connection\n", c->fd, what);
}

bool conn_timed_out(struct conn *c, uint64_t now)
{
    uint64_t end = deadline(c);
    if (end == 0 || now < end)
        return false;
    /* Bytes already waiting in the socket: the server is behind (busy with many others), not
     * the peer. They will be read, and the deadline looked at again after that. */
    int unread = 0;
    if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0)
        return false;
    char what[96], reason[128];
    if (buffer_used(&c->in) == 0)
        snprintf(what, sizeof what, "idle for %g s (--idle-timeout)",
                 (double)c->opt->idle_timeout_ns / 1e9);
    else
        snprintf(what, sizeof what, "%s not complete within %g s (--frame-timeout)",
                 c->parser.mode == PROTO_MODE_LINE ? "line" : "frame",
                 (double)c->opt->frame_timeout_ns / 1e9);
    log_timeout(c, what);
    if (c->parser.mode == PROTO_MODE_LINE) {
        int len = snprintf(reason, sizeof reason, "ERR %s: closing\n", what);
        memcpy(buffer_append(&c->out, (size_t)len), reason, (size_t)len);
    } else { /* frame mode, or nothing received yet: a frame, as for status SERVER_FULL */
        struct proto_stamps none = {0};
        int len = snprintf(reason, sizeof reason, "%s: closing", what);
        queue_reply(c, 0, PROTO_ERR_TIMEOUT, 0, &none, reason, (size_t)len);
    }
    stats_add(STAT_errors_timeout, 1);
    c->closing = true;
    c->in.start = c->in.end = 0; /* the incomplete request is dropped */
    return true;
}

uint64_t conn_timeout_resolution(const struct server_options *opt)
{
    uint64_t shortest = opt->idle_timeout_ns;
    if (shortest == 0 || (opt->frame_timeout_ns != 0 && opt->frame_timeout_ns < shortest))
        shortest = opt->frame_timeout_ns;
    if (shortest == 0)
        return 0;
    uint64_t interval = shortest / 4 < 1000000000u ? shortest / 4 : 1000000000u;
    return interval > 1000000u ? interval : 1000000u; /* 1 ms at least */
}

static uint64_t next_sweep_ns; /* when conn_sweep() looks next (0: at once) */
static uint64_t sweep_clock;   /* conn_sweep()'s reading of the clock, for the wait after it */

/* Nanoseconds from now until the next sweep is due (0: now), UINT64_MAX if none ever is. */
static uint64_t until_sweep(const struct server_options *opt, uint64_t now)
{
    if (conn_timeout_resolution(opt) == 0)
        return UINT64_MAX;
    return next_sweep_ns > now ? next_sweep_ns - now : 0;
}

/* The time for the wait that follows conn_sweep(): its reading, taken a moment ago (one clock
 * read per turn of the loop, not two), else a new one. */
static uint64_t wait_clock(void)
{
    uint64_t now = sweep_clock ? sweep_clock : stamp_clock();
    sweep_clock = 0;
    return now;
}

int conn_sweep_wait_ms(const struct server_options *opt, int wait_ms)
{
    uint64_t left = until_sweep(opt, wait_clock());
    if (left == UINT64_MAX)
        return wait_ms;
    uint64_t ms = (left + 999999u) / 1000000u; /* rounded up: wake at or after the time */
    return wait_ms >= 0 && (uint64_t)wait_ms < ms ? wait_ms : (int)ms;
}

const struct timespec *conn_sweep_timeout(const struct server_options *opt, struct timespec *ts)
{
    uint64_t left = until_sweep(opt, wait_clock());
    if (left == UINT64_MAX)
        return NULL;
    ts->tv_sec = (time_t)(left / 1000000000u);
    ts->tv_nsec = (long)(left % 1000000000u);
    return ts;
}

bool conn_sweep_due(const struct server_options *opt)
{
    return conn_timeout_resolution(opt) != 0 && until_sweep(opt, stamp_clock()) == 0;
}

void conn_sweep(const struct server_options *opt, void (*time_out)(struct conn *c, uint64_t now))
{
    if (conn_timeout_resolution(opt) == 0)
        return;
    uint64_t now = sweep_clock = stamp_clock();
    if (until_sweep(opt, now) != 0)
        return;
    next_sweep_ns = now + conn_timeout_resolution(opt);
    for (struct conn *c = open_conns, *next; c != NULL; c = next) {
        next = c->next; /* time_out() may close c */
        if (conn_time_left(c, now) == 0)
            time_out(c, now);
    }
}

/* ---- For models whose library owns the socket (models/libevent.c, models/libuv.c) ---- */

void conn_release(struct conn *c)
{
    if (c->closing && !c->broken)
        shut_down_gracefully(c->fd); /* as conn_close(), but the library will close() it */
    conn_free(c);
    stats_sub(STAT_connections_open, 1);
}

void conn_output_trim(struct conn *c)
{
    if (buffer_used(&c->out) > 0 || c->out.cap <= CONN_READ_CHUNK)
        return;
    count_buffer_bytes(c->out.cap, 0);
    free(c->out.data);
    c->out.data = NULL;
    c->out.start = c->out.end = c->out.cap = 0;
}

void conn_write_failed(struct conn *c, int err)
{
    c->broken = true;
    stats_add(STAT_errors_reset, 1);
    fprintf(stderr, "fd %d: send: %s; closing the connection\n", c->fd, strerror(err));
}
