/* test_hostile.c - hostile clients against every model (docs/robustness.md): requests cut
 * off, garbage, zero bytes and endless lines, resets, a client that never reads, 2000 clients
 * sending 1 MiB at once, peers that vanish before their reply (SIGPIPE), bursts that overflow
 * the real-time signal queue, SIGTERM under load. Each attack must leave every other
 * connection served and be counted; each test runs once per model of tests/models.list.
 *
 * (Bad magic, unknown type, len above --max-frame and len 0xFFFFFFFF are in test_servers.c,
 * malformed_requests; a 4097-byte line in line_mode.) */
#include "helpers.h"

#include "../common/conn.h"
#include "../common/stats.h"
#include "suites.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

Suite *hostile_suite(void);

static const struct test_model *models;

#define KIB 1024u
#define MIB (1024u * 1024u)

/* ---- the memory bound of one connection (docs/robustness.md, "Memory") ------------------- */

/* conn.c's buffers start at 16 KiB and double. */
static size_t doubled_from_16k(size_t need)
{
    size_t cap = 16 * KIB;
    while (cap < need)
        cap *= 2;
    return cap;
}

/* The most conn.c allocates for one connection of ECHO frames or lines, with --max-frame F:
 *   input:  a read is offered max(16 KiB, what the incomplete frame still lacks), so the input
 *           buffer never needs more than F + 12 + 16 KiB;
 *   output: reading stops once CONN_OUTPUT_HIGH_WATER bytes are queued, so before a read less
 *           than that is queued, and one read of `in` bytes adds at most 5 * in (a 12-byte
 *           empty ECHO gets a 60-byte reply);
 *   t_reply offsets: 8 bytes for each reply one read queued, at most in / 12 of them.
 * A STATS request is the exception: up to 60 + 4096 bytes of reply for 12 bytes of request,
 * so a read of STATS requests can add up to 346 * in (docs/robustness.md). */
static size_t conn_bound(uint32_t max_frame)
{
    size_t in = doubled_from_16k((size_t)max_frame + PROTO_HEADER_SIZE + 16 * KIB);
    size_t out = doubled_from_16k(CONN_OUTPUT_HIGH_WATER + 5 * in);
    size_t offsets = 16;
    while (offsets < in / PROTO_HEADER_SIZE)
        offsets *= 2;
    return in + out + offsets * sizeof(uint64_t);
}

START_TEST(buffer_bytes_counted)
{
    /* conn.c alone, on a socket pair: every allocation is counted, and every byte given back. */
    stats_init("unit");
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int big = 8 * (int)MIB;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct server_options opt = {.max_frame = PROTO_DEFAULT_MAX_FRAME, .max_conns = 10};
    struct conn *c = conn_open(sv[0], &opt);
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes), 0);
    size_t len = MIB, total = PROTO_HEADER_SIZE + len, fed = 0;
    uint8_t *frame = test_random_bytes(total, 3);
    proto_write_request_header(frame, PROTO_ECHO, 1, (uint32_t)len);
    struct proto_stamps st = {1, 1, 1, 1, 1, 0};
    while (fed < total) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        size_t n = total - fed < room ? total - fed : room;
        memcpy(space, frame + fed, n);
        conn_received(c, n, &st);
        fed += n;
    }
    /* input: 16 KiB, then room for the whole 1 MiB frame (2 MiB); output: one 1 MiB reply
     * (2 MiB); 16 t_reply offsets */
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes), 2 * MIB + 2 * MIB + 16 * 8);
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes_peak), stats_get(STAT_buffer_bytes));
    ck_assert_uint_le(stats_get(STAT_buffer_bytes), conn_bound(PROTO_DEFAULT_MAX_FRAME));
    stats_reset(); /* a gauge and its peak survive a reset */
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes), 4 * MIB + 128);
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes_peak), 4 * MIB + 128);
    conn_close(c);
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes), 0);
    ck_assert_uint_eq(stats_get(STAT_buffer_bytes_peak), 4 * MIB + 128);
    char text[4096];
    stats_format(text, sizeof text, '\n');
    ck_assert_int_eq(stats_value(text, "buffer_bytes"), 0);
    ck_assert_int_eq(stats_value(text, "buffer_bytes_peak"), 4 * MIB + 128);
    ck_assert_int_gt(stats_value(text, "rss_peak_kb"), 0);
    free(frame);
    close(sv[1]);
}
END_TEST

/* ---- small tools ------------------------------------------------------------------------- */

/* A measured figure, for the record (make check's output): flushed at once, so that it is
 * printed even if the test fails right after it. */
#define note(...) (printf("hostile: " __VA_ARGS__), fflush(stdout))

static void raise_descriptor_limit(void)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void set_nonblocking_fd(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    ck_assert_int_ge(flags, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

/* Send, ignoring failure: for a peer that may have closed already (its error reply is what
 * the test reads). */
static void send_unchecked(int fd, const void *buf, size_t len)
{
    (void)!send(fd, buf, len, MSG_NOSIGNAL);
}

/* Read everything until the server closes; returns the length (NUL-terminated in buf). */
static size_t read_until_closed(int fd, char *buf, size_t size)
{
    size_t n = 0;
    for (;;) {
        ck_assert_msg(n + 1 < size, "more than %zu bytes came back", size);
        ssize_t r = recv(fd, buf + n, size - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == ECONNRESET || errno == EPIPE))
            break;
        ck_assert_msg(r >= 0, "recv: %s (the server neither answered nor closed)", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

/* A counter from STATS text; the ones shown only when not 0 are 0 when absent. */
static long long counter(const char *text, const char *key)
{
    long long v = stats_value(text, key);
    return v < 0 ? 0 : v;
}

/* The server's log so far contains text. */
static int logged(const struct test_server *s, const char *text)
{
    static char log[1 << 16];
    server_log(s, log, sizeof log);
    return strstr(log, text) != NULL;
}

/* Echo something on `other` (a connection held open through an attack): still served. */
static void other_still_served(int other, uint32_t seq)
{
    if (other < 0)
        return;
    char word[16];
    int n = snprintf(word, sizeof word, "still %u", seq);
    check_echo(other, seq, word, (uint32_t)n);
}

/* STATS, asked for on a new connection once the server has noticed that every client but
 * that one and `still_open` others has gone: every counter of theirs is final then. */
static char *final_stats(const struct test_server *s, int still_open)
{
    char *text = server_stats_when(s->port, "connections_open", 1 + still_open);
    ck_assert_int_eq(stats_value(text, "connections_open"), 1 + still_open);
    return text;
}

/* ---- bad input --------------------------------------------------------------------------- */

START_TEST(truncated_requests)
{
    /* A header cut off, a payload cut off, a line cut off, and a header cut off by close():
     * nothing is answered for the piece, the whole requests before it are, each is counted in
     * errors_truncated, and a connection held open meanwhile is served throughout. */
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int other = m->iterative ? -1 : client_connect(s.port);
    other_still_served(other, 1);

    uint8_t header[PROTO_HEADER_SIZE];
    /* 1: 7 of the 12 header bytes, after a whole request; then end of file */
    int fd = client_connect(s.port);
    send_frame(fd, PROTO_ECHO, 10, "whole", 5);
    proto_write_request_header(header, PROTO_ECHO, 11, 100);
    send_all(fd, header, 7);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    check_echo_reply(fd, 10, "whole", 5);
    ck_assert_msg(expect_closed(fd), "%s: answered a cut-off header, or left it open", m->name);
    close(fd);
    other_still_served(other, 2);

    /* 2: a header saying 1000 bytes, and 500 of them */
    fd = client_connect(s.port);
    send_frame(fd, PROTO_ECHO, 20, "whole", 5);
    uint8_t *half = test_random_bytes(PROTO_HEADER_SIZE + 500, 2);
    proto_write_request_header(half, PROTO_ECHO, 21, 1000);
    send_all(fd, half, PROTO_HEADER_SIZE + 500);
    free(half);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    check_echo_reply(fd, 20, "whole", 5);
    ck_assert_msg(expect_closed(fd), "%s: answered a cut-off payload", m->name);
    close(fd);
    other_still_served(other, 3);

    /* 3: a line and half a line */
    fd = client_connect(s.port);
    send_all(fd, "one line\nhalf a li", 18);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    char got[64];
    ck_assert_uint_eq(read_until_closed(fd, got, sizeof got), 9);
    ck_assert_str_eq(got, "ONE LINE\n");
    close(fd);
    other_still_served(other, 4);

    /* 4: half a header, then close() at once (nothing unread here: a FIN, not a reset) */
    fd = client_connect(s.port);
    send_all(fd, header, 5);
    close(fd);
    other_still_served(other, 5);

    char *text = final_stats(&s, other >= 0);
    ck_assert_int_eq(stats_value(text, "errors_truncated"), 4);
    ck_assert_int_eq(stats_value(text, "errors_reset"), 0);
    ck_assert_int_eq(stats_value(text, "frames"), 2 + (other >= 0 ? 5 : 0));
    ck_assert_int_eq(stats_value(text, "lines"), 1);
    free(text);
    ck_assert(logged(&s, "peer closed in the middle of a request; closing the connection"));
    if (other >= 0)
        close(other);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

/* What the server answers to `bytes` on a new connection whose first byte selects line mode:
 * each line in upper case, until the first line holding a zero byte or running past 4096
 * bytes, which gets an ERR line and ends the connection (docs/protocol.md, section 2). */
static size_t expected_line_replies(const uint8_t *bytes, size_t n, char *out, const char **err)
{
    size_t pos = 0, len = 0;
    *err = NULL;
    while (pos < n) {
        size_t rest = n - pos, look = rest < PROTO_MAX_LINE + 1 ? rest : PROTO_MAX_LINE + 1;
        const uint8_t *nl = memchr(bytes + pos, '\n', look);
        size_t span = nl != NULL ? (size_t)(nl - (bytes + pos)) : look;
        if (memchr(bytes + pos, 0, span) != NULL)
            *err = "ERR zero byte in a line\n";
        else if (nl == NULL && rest > PROTO_MAX_LINE)
            *err = "ERR line too long\n";
        if (*err != NULL) {
            memcpy(out + len, *err, strlen(*err));
            return len + strlen(*err);
        }
        if (nl == NULL)
            break; /* a partial line at the end: not answered */
        proto_upper_line((uint8_t *)out + len, bytes + pos, span);
        len += span;
        out[len++] = '\n';
        pos += span + 1;
    }
    return len;
}

START_TEST(garbage)
{
    /* 4 KiB of random bytes after a whole frame: refused as bad magic, and closed. The same
     * bytes as the first of a connection make it a text connection: its lines are answered
     * until the first with a zero byte (or too long), which ends it with an ERR line. */
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int other = m->iterative ? -1 : client_connect(s.port);
    uint8_t *junk = test_random_bytes(4096, 77);
    if (junk[0] == PROTO_MAGIC_FIRST_BYTE)
        junk[0] = 0x5A;

    int fd = client_connect(s.port);
    check_echo(fd, 1, "before", 6);
    send_all(fd, junk, 4096);
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *reason;
    ck_assert_msg(read_reply(fd, &h, &st, &reason) == 0, "%s: no reply to garbage", m->name);
    ck_assert_uint_eq(h.flags, PROTO_ERR_BAD_MAGIC);
    ck_assert_uint_eq(h.type, 0); /* no header was read */
    ck_assert_uint_eq(h.seq, 0);
    ck_assert_str_eq((char *)reason, "bad magic");
    free(reason);
    ck_assert_msg(expect_closed(fd), "%s: left a garbage sender open", m->name);
    close(fd);
    other_still_served(other, 1);

    char *expect = malloc(8192), *got = malloc(8192);
    ck_assert_ptr_nonnull(expect);
    ck_assert_ptr_nonnull(got);
    const char *err;
    size_t want = expected_line_replies(junk, 4096, expect, &err);
    ck_assert_ptr_nonnull(err); /* random bytes: a zero byte comes soon */
    fd = client_connect(s.port);
    send_all(fd, junk, 4096);
    ck_assert_uint_eq(read_until_closed(fd, got, 8192), want);
    ck_assert_msg(memcmp(got, expect, want) == 0, "%s: wrong answer to garbage text", m->name);
    close(fd);
    other_still_served(other, 2);

    char *text = final_stats(&s, other >= 0);
    ck_assert_int_eq(stats_value(text, "errors_bad_magic"), 1);
    ck_assert_int_eq(
        stats_value(text, "errors_line_zero_byte") + stats_value(text, "errors_line_too_long"), 1);
    free(text);
    ck_assert(logged(&s, "bad magic; closing the connection"));
    free(expect);
    free(got);
    free(junk);
    if (other >= 0)
        close(other);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(bad_lines)
{
    /* A zero byte inside a line, and a line that never ends: an ERR line each (the lines
     * before still answered), the connection closed, the server still serving. */
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int other = m->iterative ? -1 : client_connect(s.port);

    int fd = client_connect(s.port);
    send_all(fd, "fine\nbad\0line\n", 14);
    char got[256];
    read_until_closed(fd, got, sizeof got);
    ck_assert_str_eq(got, "FINE\nERR zero byte in a line\n");
    close(fd);
    other_still_served(other, 1);

    /* 8 KiB and no '\n': refused once 4097 bytes are in, not after waiting for the end */
    fd = client_connect(s.port);
    char *endless = malloc(8192);
    ck_assert_ptr_nonnull(endless);
    memset(endless, 'z', 8192);
    send_unchecked(fd, endless, 8192);
    read_until_closed(fd, got, sizeof got);
    ck_assert_str_eq(got, "ERR line too long\n");
    close(fd);
    free(endless);
    other_still_served(other, 2);

    char *text = final_stats(&s, other >= 0);
    ck_assert_int_eq(stats_value(text, "errors_line_zero_byte"), 1);
    ck_assert_int_eq(stats_value(text, "errors_line_too_long"), 1);
    ck_assert_int_eq(stats_value(text, "lines"), 1);
    free(text);
    ck_assert(logged(&s, "zero byte in a line; closing the connection"));
    if (other >= 0)
        close(other);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(reset_mid_request)
{
    /* Clients that reset (SO_LINGER 0) in the middle of a header, of a payload, of a line, or
     * with a request unanswered: each counted once (errors_reset, or errors_truncated if the
     * end of file came first), no crash, and the others served throughout. */
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int other = m->iterative ? -1 : client_connect(s.port);
    enum { N = 12 };
    uint8_t *frame = test_random_bytes(PROTO_HEADER_SIZE + 4000, 5);
    proto_write_request_header(frame, PROTO_ECHO, 1, 4000);
    for (int i = 0; i < N; i++) {
        int fd = client_connect(s.port);
        switch (i % 4) {
        case 0:
            send_all(fd, frame, 6); /* half a header */
            break;
        case 1:
            send_all(fd, frame, PROTO_HEADER_SIZE + 2000); /* half a payload */
            break;
        case 2:
            send_all(fd, "half a li", 9);
            break;
        default:
            send_all(fd, frame, PROTO_HEADER_SIZE + 4000); /* whole, its reply unread */
            break;
        }
        close_with_reset(fd);
        other_still_served(other, (uint32_t)i);
    }
    free(frame);
    char *text = final_stats(&s, other >= 0);
    long long reset = stats_value(text, "errors_reset"),
              cut = stats_value(text, "errors_truncated");
    note("%s: %d resets counted as errors_reset=%lld errors_truncated=%lld\n", m->name, N, reset,
         cut);
    ck_assert_int_eq(reset + cut, N);
    ck_assert_int_ge(reset, 1);
    free(text);
    expect_served_soon(s.port);
    if (other >= 0)
        close(other);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

/* ---- a client that never reads ----------------------------------------------------------- */

enum { SLOW_SIZE = 8000, SLOW_N = 8192 }; /* 64 MiB of requests: more than every buffer */

/* Request i's payload: a window into one random block, at a place i picks. */
static const uint8_t *slow_payload(const uint8_t *block, uint32_t i)
{
    return block + (i * 2654435761u) % 4096;
}

struct slow_sender {
    const uint8_t *block;
    uint32_t next;    /* the request being sent */
    size_t off;       /* bytes of it sent */
    uint32_t replies; /* whole replies checked */
    size_t reply_off; /* bytes of the current reply in `reply` */
    uint8_t reply[PROTO_REPLY_PREFIX_SIZE + SLOW_SIZE];
};

/* Send what the socket takes now; returns bytes sent. */
static size_t slow_send(int fd, struct slow_sender *ss)
{
    size_t total = 0;
    while (ss->next < SLOW_N) {
        uint8_t header[PROTO_HEADER_SIZE];
        struct iovec iov[2];
        int n_iov = 0;
        if (ss->off < PROTO_HEADER_SIZE) {
            proto_write_request_header(header, PROTO_ECHO, ss->next, SLOW_SIZE);
            iov[n_iov++] = (struct iovec){header + ss->off, PROTO_HEADER_SIZE - ss->off};
            iov[n_iov++] = (struct iovec){(void *)slow_payload(ss->block, ss->next), SLOW_SIZE};
        } else {
            size_t p = ss->off - PROTO_HEADER_SIZE;
            iov[n_iov++] =
                (struct iovec){(void *)(slow_payload(ss->block, ss->next) + p), SLOW_SIZE - p};
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        total += (size_t)n;
        ss->off += (size_t)n;
        if (ss->off == PROTO_HEADER_SIZE + SLOW_SIZE) {
            ss->next++;
            ss->off = 0;
        }
    }
    return total;
}

/* Read what is there and check every reply byte: status, seq, length, payload. */
static void slow_receive(int fd, struct slow_sender *ss)
{
    for (;;) {
        size_t want = sizeof ss->reply - ss->reply_off;
        ssize_t n = recv(fd, ss->reply + ss->reply_off, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        ck_assert_msg(n > 0, "the server closed or failed the slow reader: %s",
                      n == 0 ? "end of file" : strerror(errno));
        ss->reply_off += (size_t)n;
        if (ss->reply_off < sizeof ss->reply)
            continue;
        struct proto_header h;
        struct proto_stamps st;
        ck_assert_int_eq(proto_read_reply_prefix(ss->reply, &h, &st), 0);
        ck_assert_uint_eq(h.flags, PROTO_OK);
        ck_assert_uint_eq(h.seq, ss->replies);
        ck_assert_uint_eq(h.len, SLOW_SIZE);
        ck_assert_msg(memcmp(ss->reply + PROTO_REPLY_PREFIX_SIZE,
                             slow_payload(ss->block, ss->replies), SLOW_SIZE) == 0,
                      "reply %u differs", ss->replies);
        ss->replies++;
        ss->reply_off = 0;
    }
}

START_TEST(slow_reader_bounded)
{
    /* A client pipelines 64 MiB of requests and reads nothing. The server must stop reading
     * from it once its replies pass the output bound (so the client's sends block), keep its
     * buffers under conn_bound(), serve another client meanwhile, and, once the slow client
     * reads, deliver every reply byte for byte. */
    const struct test_model *m = &models[_i];
    const uint32_t max_frame = 16384;
    const char *const args[] = {"--max-frame", "16384", NULL};
    struct test_server s;
    server_spawn(&s, m->name, args);
    int slow = client_connect_buffers(s.port, 64 * (int)KIB, 64 * (int)KIB);
    set_nonblocking_fd(slow);
    struct slow_sender *ss = calloc(1, sizeof *ss);
    ck_assert_ptr_nonnull(ss);
    uint8_t *block = test_random_bytes(SLOW_SIZE + 4096, 9);
    ss->block = block;

    /* Send until the socket has taken nothing for a second: the server stopped reading. */
    size_t sent = 0;
    for (;;) {
        sent += slow_send(slow, ss);
        if (ss->next == SLOW_N)
            break;
        struct pollfd p = {.fd = slow, .events = POLLOUT};
        if (poll(&p, 1, 1000) == 0)
            break;
    }
    ck_assert_msg(ss->next < SLOW_N,
                  "%s read all %u requests (%zu bytes) of a client that read no reply: its "
                  "buffers have no bound",
                  m->name, SLOW_N, sent);
    size_t bound = conn_bound(max_frame) + 2 * 64 * KIB; /* + the other client, + STATS's */
    if (!m->iterative) {
        int other = client_connect(s.port);
        check_echo(other, 1, "served meanwhile", 16);
        char *text = server_stats(s.port);
        long long now = stats_value(text, "buffer_bytes");
        note("%s: slow reader stalled after %zu bytes sent; buffer_bytes=%lld "
             "(bound %zu)\n",
             m->name, sent, now, bound);
        ck_assert_int_gt(now, 0);
        ck_assert_int_le(now, (long long)bound);
        free(text);
        close(other);
    }

    /* Now read, sending the rest as the server takes it: every reply, byte for byte. */
    while (ss->replies < SLOW_N) {
        struct pollfd p = {.fd = slow, .events = POLLIN | (ss->next < SLOW_N ? POLLOUT : 0)};
        ck_assert_msg(poll(&p, 1, TEST_IO_TIMEOUT_S * 1000) > 0,
                      "%s: no reply for %d s after %u of %u", m->name, TEST_IO_TIMEOUT_S,
                      ss->replies, SLOW_N);
        if (p.revents & POLLOUT)
            slow_send(slow, ss);
        slow_receive(slow, ss);
    }
    close(slow);
    char *text = final_stats(&s, 0);
    long long peak = stats_value(text, "buffer_bytes_peak");
    note("%s: slow reader: buffer_bytes_peak=%lld\n", m->name, peak);
    ck_assert_int_le(peak, (long long)bound);
    ck_assert_int_eq(stats_value(text, "buffer_bytes"), 16 * KIB); /* STATS's own input */
    ck_assert_int_eq(stats_value(text, "frames"), SLOW_N + (m->iterative ? 0 : 1));
    ck_assert_int_eq(stats_value(text, "errors_reset"), 0);
    ck_assert_int_eq(stats_value(text, "errors_truncated"), 0);
    free(text);
    free(block);
    free(ss);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

/* ---- 2000 clients, 1 MiB each, at once --------------------------------------------------- */

struct big_client {
    int fd;
    size_t sent, got;
    uint8_t prefix[PROTO_REPLY_PREFIX_SIZE];
};

START_TEST(many_big_frames)
{
    /* 2000 connections each send one 1 MiB frame at once, and read the echo: all byte-exact,
     * and the buffers never above 2000 times what one such connection may hold. */
    const struct test_model *m = &models[_i];
    if (!m->many)
        return; /* select (FD_SETSIZE) and the iterative server */
    /* 2000 by default; IOMODELS_BIG_FRAMES_CONNS lowers it where memory is dearer (make tsan:
     * ThreadSanitizer's shadow memory is several times the 8 GB these buffers take). */
    const char *env_n = getenv("IOMODELS_BIG_FRAMES_CONNS");
    const int N = env_n && atoi(env_n) > 0 ? atoi(env_n) : 2000;
    const size_t len = MIB, request = PROTO_HEADER_SIZE + MIB,
                 reply = PROTO_REPLY_PREFIX_SIZE + MIB;
    raise_descriptor_limit();
    struct test_server s;
    /* This test is about memory: 2000 frames of 1 MiB on 2 CPUs take longer than the default
     * 10 s frame timeout allows a starved client; that limit has its own tests. */
    const char *const args[] = {"--frame-timeout", "0", NULL};
    server_spawn(&s, m->name, args);
    uint8_t *payload = test_random_bytes(len, 2000);
    struct big_client *cl = calloc(N, sizeof *cl);
    struct pollfd *pf = calloc(N, sizeof *pf);
    int *which = calloc(N, sizeof *which);
    uint8_t *scratch = malloc(256 * KIB);
    ck_assert(cl && pf && which && scratch);
    for (int i = 0; i < N; i++) {
        cl[i].fd = client_connect(s.port);
        set_nonblocking_fd(cl[i].fd);
    }
    int done = 0;
    while (done < N) {
        int n = 0;
        for (int i = 0; i < N; i++)
            if (cl[i].got < reply) {
                pf[n] = (struct pollfd){.fd = cl[i].fd,
                                        .events = POLLIN | (cl[i].sent < request ? POLLOUT : 0)};
                which[n++] = i;
            }
        int ready = poll(pf, (nfds_t)n, TEST_IO_TIMEOUT_S * 1000);
        ck_assert_msg(ready > 0, "%s: nothing moved for %d s with %d of %d echoes done", m->name,
                      TEST_IO_TIMEOUT_S, done, N);
        for (int k = 0; k < n; k++) {
            struct big_client *c = &cl[which[k]];
            uint32_t seq = (uint32_t)which[k];
            if (pf[k].revents & POLLOUT) {
                uint8_t header[PROTO_HEADER_SIZE];
                proto_write_request_header(header, PROTO_ECHO, seq, (uint32_t)len);
                ssize_t r;
                if (c->sent < PROTO_HEADER_SIZE) {
                    struct iovec iov[2] = {{header + c->sent, PROTO_HEADER_SIZE - c->sent},
                                           {payload, len}};
                    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
                    r = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
                } else {
                    size_t at = c->sent - PROTO_HEADER_SIZE;
                    r = send(c->fd, payload + at, len - at, MSG_DONTWAIT | MSG_NOSIGNAL);
                }
                ck_assert_msg(r > 0 || errno == EAGAIN || errno == EINTR, "send: %s",
                              strerror(errno));
                if (r > 0)
                    c->sent += (size_t)r;
            }
            if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(c->fd, scratch, 256 * KIB, MSG_DONTWAIT);
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                ck_assert_msg(r > 0, "%s: connection %d: %s after %zu reply bytes", m->name,
                              which[k], r == 0 ? "closed" : strerror(errno), c->got);
                size_t at = 0, n_got = (size_t)r;
                if (c->got < PROTO_REPLY_PREFIX_SIZE) { /* the header and stamps */
                    size_t take = PROTO_REPLY_PREFIX_SIZE - c->got;
                    take = take < n_got ? take : n_got;
                    memcpy(c->prefix + c->got, scratch, take);
                    at = take;
                    c->got += take;
                    if (c->got == PROTO_REPLY_PREFIX_SIZE) {
                        struct proto_header h;
                        struct proto_stamps st;
                        ck_assert_int_eq(proto_read_reply_prefix(c->prefix, &h, &st), 0);
                        ck_assert_uint_eq(h.flags, PROTO_OK);
                        ck_assert_uint_eq(h.seq, seq);
                        ck_assert_uint_eq(h.len, len);
                    }
                }
                size_t rest = n_got - at; /* payload bytes, compared where they belong */
                ck_assert_uint_le(c->got + rest, reply);
                ck_assert_msg(
                    memcmp(scratch + at, payload + (c->got - PROTO_REPLY_PREFIX_SIZE), rest) == 0,
                    "%s: connection %d: echo differs", m->name, which[k]);
                c->got += rest;
                if (c->got == reply)
                    done++;
            }
        }
    }
    for (int i = 0; i < N; i++)
        close(cl[i].fd);
    char *text = final_stats(&s, 0);
    long long peak = stats_value(text, "buffer_bytes_peak");
    /* per connection: 2 MiB of input (room for the whole frame), 2 MiB of output, 16 t_reply
     * offsets; and the STATS connections' 16 KiB of input each */
    long long per_conn = 2 * MIB + 2 * MIB + 16 * 8, bound = N * per_conn + 16 * KIB;
    note("%s: %d x 1 MiB: buffer_bytes_peak=%lld (%.0f MiB, %.2f connections' "
         "worth; bound %lld), rss_peak_kb=%lld\n",
         m->name, N, peak, peak / (double)MIB, peak / (double)per_conn, bound,
         stats_value(text, "rss_peak_kb"));
    ck_assert_int_ge(peak, per_conn); /* one connection at least held it all at once */
    ck_assert_int_le(peak, bound);
    ck_assert_int_eq(stats_value(text, "buffer_bytes"), 16 * KIB); /* all given back */
    ck_assert_int_eq(stats_value(text, "frames"), N);
    free(text);
    free(scratch);
    free(which);
    free(pf);
    free(cl);
    free(payload);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    note("%s: exit line rss_peak_kb=%lld\n", m->name, stats_value(out, "rss_peak_kb"));
}
END_TEST

/* ---- signals ----------------------------------------------------------------------------- */

START_TEST(sigpipe_never_kills)
{
    /* Clients that pipeline 8 MiB of requests and close as soon as replies start coming,
     * without reading them: the server's sends then meet a reset connection (EPIPE). SIGPIPE
     * would kill it; it must count an error and serve on. */
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    uint8_t *payload = test_random_bytes(MIB, 8);
    enum { N = 4 };
    for (int k = 0; k < N; k++) {
        int fd = client_connect_buffers(s.port, 16 * (int)KIB, 0);
        set_nonblocking_fd(fd);
        for (uint32_t i = 0; i < 8; i++) {
            uint8_t header[PROTO_HEADER_SIZE];
            proto_write_request_header(header, PROTO_ECHO, i, MIB);
            struct iovec iov[2] = {{header, sizeof header}, {payload, MIB}};
            size_t off = 0;
            while (off < sizeof header + MIB) { /* until it is sent, or nothing goes for 200 ms */
                struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
                ssize_t r = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (r > 0) {
                    off += (size_t)r;
                    for (size_t left = (size_t)r; left > 0;) { /* advance the iovecs */
                        struct iovec *v = iov[0].iov_len > 0 ? &iov[0] : &iov[1];
                        size_t step = left < v->iov_len ? left : v->iov_len;
                        v->iov_base = (uint8_t *)v->iov_base + step;
                        v->iov_len -= step;
                        left -= step;
                    }
                    continue;
                }
                ck_assert_msg(errno == EAGAIN || errno == EINTR, "send: %s", strerror(errno));
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                if (poll(&p, 1, 200) == 0)
                    break;
            }
            if (off < sizeof header + MIB)
                break;
        }
        ck_assert_msg(readable_within(fd, TEST_IO_TIMEOUT_S * 1000), "%s: no reply began", m->name);
        close(fd); /* replies unread: the kernel resets the connection */
    }
    free(payload);
    expect_served_soon(s.port);
    char *text = final_stats(&s, 0);
    ck_assert_int_eq(stats_value(text, "errors_reset"), N);
    free(text);
    char out[4096];
    int status = server_stop(&s, out, sizeof out);
    ck_assert_msg(status == 0, "%s exited with %d (141: killed by SIGPIPE)", m->name, status);
}
END_TEST

static int signal_driven(const struct test_model *m)
{
    return strcmp(m->name, "sigio") == 0 || strcmp(m->name, "aio") == 0;
}

START_TEST(signal_queue_burst)
{
    /* sigio and aio learn of events from real-time signals. 3000 connections open at once
     * (every third with a request) and close at once; then again with the signal queue
     * limited to 64 (RLIMIT_SIGPENDING), so that it overflows. Either way the server must
     * notice every close (connections_open back to 1: no event lost for good) and serve a
     * new client. */
    const struct test_model *m = &models[_i];
    if (!signal_driven(m))
        return;
    raise_descriptor_limit();
    enum { N = 3000 };
    static int fds[N];
    const long limits[] = {0, 64}; /* 0: the default limit */
    for (int round = 0; round < 2; round++) {
        struct test_server s;
        server_spawn_rlimit(&s, m->name, NULL, RLIMIT_SIGPENDING, limits[round]);
        for (int i = 0; i < N; i++) {
            fds[i] = client_connect(s.port);
            if (i % 3 == 0) {
                uint8_t frame[PROTO_HEADER_SIZE + 4];
                proto_write_request_header(frame, PROTO_ECHO, (uint32_t)i, 4);
                memcpy(frame + PROTO_HEADER_SIZE, "ping", 4);
                send_unchecked(fds[i], frame, sizeof frame);
            }
        }
        for (int i = 0; i < N; i++)
            close(fds[i]);
        expect_served_soon(s.port);
        char *text = server_stats_when(s.port, "connections_open", 1);
        note("%s: %d connections opened and closed at once, signal queue limit "
             "%s: signals=%lld signal_overflows=%lld connections=%lld connections_open=%lld\n",
             m->name, N, limits[round] ? "64" : "default", counter(text, "signals"),
             counter(text, "signal_overflows"), counter(text, "connections"),
             counter(text, "connections_open"));
        ck_assert_msg(stats_value(text, "connections_open") == 1,
                      "%s, signal queue limit %ld: %lld closed connections never noticed (their "
                      "events lost for good)",
                      m->name, limits[round], stats_value(text, "connections_open") - 1);
        ck_assert_int_ge(stats_value(text, "connections"), N);
        free(text);
        ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
    }
}
END_TEST

START_TEST(sigterm_under_load)
{
    /* SIGTERM while loadgen -c 50 -d 5 runs: the server exits 0 with its STATS line, and
     * loadgen sees its connections closed by the server and ends: no hang on either side. */
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    char json_path[64];
    snprintf(json_path, sizeof json_path, "/tmp/iomodels-hostile-%d.json", (int)getpid());
    const char *const args[] = {"-c", "50", "-d", "5", NULL};
    int progress;
    pid_t lg = loadgen_start(s.port, args, json_path, &progress);
    char seen[16384] = "";
    ck_assert_msg(wait_for_text(progress, "measuring", 1, seen, sizeof seen),
                  "loadgen did not start measuring: %s", seen);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_msg(strncmp(out, "STATS model=", 12) == 0, "exit line: \"%s\"", out);
    ck_assert_int_gt(stats_value(out, "requests"), 0);
    int status = wait_exit(lg, 30);
    close(progress);
    ck_assert_msg(status >= 0, "loadgen hung after the server stopped");
    FILE *f = fopen(json_path, "r");
    ck_assert_ptr_nonnull(f);
    static char json[65536];
    size_t n = fread(json, 1, sizeof json - 1, f);
    json[n] = '\0';
    fclose(f);
    unlink(json_path);
    const char *closed = strstr(json, "\"closed_by_server\": ");
    ck_assert_ptr_nonnull(closed);
    long long by_server = atoll(closed + strlen("\"closed_by_server\": "));
    note("%s: SIGTERM under loadgen -c 50: loadgen exit %d, closed_by_server=%lld\n", m->name,
         status, by_server);
    /* If the server went on serving until loadgen's run was over, loadgen saw no close. */
    ck_assert_msg(by_server >= 1 && status == 1,
                  "%s: SIGTERM did not stop it under load (loadgen exit %d, closed_by_server "
                  "%lld)",
                  m->name, status, by_server);
}
END_TEST

#ifndef SOURCE_DIR
#define SOURCE_DIR "."
#endif
#ifndef BUILD_DIR
#define BUILD_DIR "build"
#endif

/* tests/faults (also `make faults`): every model under strace fault injection (EINTR, EAGAIN,
 * EMFILE, short writes), every echo byte-checked by loadgen. Its output is the per-model,
 * per-fault table; any FAIL line fails this test. */
START_TEST(fault_injection)
{
    static char out[1 << 16];
    FILE *p = popen("cd '" SOURCE_DIR "' && tests/faults '" BUILD_DIR "' 2>&1", "r");
    ck_assert_msg(p != NULL, "popen tests/faults");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) /* (more than fits: drain it) */
        ;
    int status = pclose(p);
    ck_assert_msg(status == 0 && strstr(out, ", 0 failed,") != NULL, "tests/faults:\n%s", out);
}
END_TEST

Suite *hostile_suite(void)
{
    int n = test_models_load(&models);
    Suite *s = suite_create("hostile");
    TCase *unit = tcase_create("memory accounting");
    tcase_add_test(unit, buffer_bytes_counted);
    suite_add_tcase(s, unit);
    TCase *t = tcase_create("every model");
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, truncated_requests, 0, n);
    tcase_add_loop_test(t, garbage, 0, n);
    tcase_add_loop_test(t, bad_lines, 0, n);
    tcase_add_loop_test(t, reset_mid_request, 0, n);
    tcase_add_loop_test(t, slow_reader_bounded, 0, n);
    tcase_add_loop_test(t, many_big_frames, 0, n);
    tcase_add_loop_test(t, sigpipe_never_kills, 0, n);
    tcase_add_loop_test(t, signal_queue_burst, 0, n);
    tcase_add_loop_test(t, sigterm_under_load, 0, n);
    suite_add_tcase(s, t);
    TCase *faults = tcase_create("fault injection");
    tcase_set_timeout(faults, 300);
    tcase_add_test(faults, fault_injection);
    suite_add_tcase(s, faults);
    return s;
}
