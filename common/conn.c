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
    if (c->n_unstamped == c->cap_unstamped) {
        c->cap_unstamped = c->cap_unstamped ? 2 * c->cap_unstamped : 16;
        c->unstamped = xrealloc(c->unstamped, c->cap_unstamped * sizeof *c->unstamped);
    }
    c->unstamped[c->n_unstamped++] = offset + PROTO_REPLY_STAMP_OFFSET;
}

/* close() with unread input sends a reset, which can destroy a reply the peer has not read
 * yet. So: say we are done (FIN after the reply), discard what already arrived, close. */
static void close_gracefully(int fd)
{
    if (shutdown(fd, SHUT_WR) == 0) {
        char sink[4096];
        for (int i = 0; i < 64; i++) {
            ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (n <= 0 && !(n < 0 && errno == EINTR))
                break;
        }
    }
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
    uint64_t now = stamp_now();
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
        static const char msg[] = "ERR line too long\n";
        memcpy(buffer_append(&c->out, sizeof msg - 1), msg, sizeof msg - 1);
        stats_add(STAT_errors_line_too_long, 1);
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
        return;
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
    if (c->out.start == c->out.end)
        c->out.start = c->out.end = 0;
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
