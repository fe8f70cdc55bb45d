/* test_proto.c - unit tests: the protocol state machine, reply building, a connection's
 * buffers and partial writes (over a socketpair), the counters, and the timing arithmetic. */
#include "../common/conn.h"
#include "../common/phases.h"
#include "../common/proto.h"
#include "../common/stats.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "suites.h"

static size_t make_frame(uint8_t *out, uint8_t type, uint32_t seq, const void *payload,
                         uint32_t len)
{
    proto_write_request_header(out, type, seq, len);
    if (len)
        memcpy(out + PROTO_HEADER_SIZE, payload, len);
    return PROTO_HEADER_SIZE + len;
}

/* Hand len bytes to the connection as reads of whatever size it offers room for. */
static void feed(struct conn *c, const uint8_t *bytes, size_t len, const struct proto_stamps *st)
{
    size_t fed = 0;
    while (fed < len) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        size_t n = len - fed < room ? len - fed : room;
        memcpy(space, bytes + fed, n);
        conn_received(c, n, st);
        fed += n;
    }
}

/* A connection on one end of a non-blocking socketpair whose send buffer is small, so that
 * replies of more than a few KiB need several sends; sv[1] is the peer's end. */
static struct conn *conn_with_small_send_buffer(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int small = 4096;
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    static const struct server_options opt = {.max_frame = PROTO_DEFAULT_MAX_FRAME,
                                              .max_conns = 10};
    return conn_open(sv[0], &opt);
}

START_TEST(frame_every_split)
{
    uint8_t payload[50], frame[PROTO_HEADER_SIZE + sizeof payload];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t total = make_frame(frame, PROTO_ECHO, 0xDEADBEEF, payload, sizeof payload);
    for (size_t k = 0; k <= total; k++) {
        /* the first k bytes have arrived: nothing may be reported before the last one */
        struct proto_parser p;
        struct proto_event ev;
        proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
        enum proto_result r = proto_parse(&p, frame, k, &ev);
        if (k < total) {
            ck_assert_int_eq(r, PROTO_NEED_MORE);
            ck_assert_uint_eq(ev.consumed, 0);
            ck_assert_uint_gt(ev.need, k);
            ck_assert_uint_le(ev.need, total);
        } else {
            ck_assert_int_eq(r, PROTO_FRAME);
            ck_assert_uint_eq(ev.consumed, total);
            ck_assert_uint_eq(ev.header.seq, 0xDEADBEEF);
            ck_assert_uint_eq(ev.header.type, PROTO_ECHO);
            ck_assert_uint_eq(ev.data_len, sizeof payload);
            ck_assert_mem_eq(ev.data, payload, sizeof payload);
        }
    }
}
END_TEST

START_TEST(frame_byte_by_byte_through_conn)
{
    /* The same frame delivered one byte per read must produce exactly one correct reply. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct server_options opt = {.max_frame = PROTO_DEFAULT_MAX_FRAME, .max_conns = 10};
    struct conn *c = conn_open(sv[0], &opt);
    uint8_t frame[PROTO_HEADER_SIZE + 5];
    size_t total = make_frame(frame, PROTO_ECHO, 7, "hello", 5);
    struct proto_stamps st = {1, 2, 3, 4, 5, 0};
    for (size_t i = 0; i < total; i++) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        ck_assert_uint_gt(room, 0);
        *space = frame[i];
        conn_received(c, 1, &st);
        ck_assert_int_eq(conn_has_output(c), i + 1 == total);
    }
    ck_assert_int_eq(conn_flush(c), 1);
    uint8_t reply[PROTO_REPLY_PREFIX_SIZE + 5];
    ck_assert_int_eq(read(sv[1], reply, sizeof reply), (ssize_t)sizeof reply);
    struct proto_header h;
    struct proto_stamps got;
    ck_assert_int_eq(proto_read_reply_prefix(reply, &h, &got), 0);
    ck_assert_uint_eq(h.seq, 7);
    ck_assert_uint_eq(h.len, 5);
    ck_assert_uint_eq(h.flags, PROTO_OK);
    ck_assert_mem_eq(reply + PROTO_REPLY_PREFIX_SIZE, "hello", 5);
    ck_assert_uint_eq(got.wait, 1);
    ck_assert_uint_eq(got.copy_end, 5);
    ck_assert_uint_gt(got.reply, 0); /* stamped at send time */
    conn_close(c);
    close(sv[1]);
}
END_TEST

START_TEST(frames_pipelined)
{
    uint8_t buf[4 * (PROTO_HEADER_SIZE + 10)];
    size_t len = 0;
    for (uint32_t i = 0; i < 4; i++)
        len += make_frame(buf + len, PROTO_ECHO, 100 + i, "0123456789", i == 1 ? 0 : 10);
    size_t partial = len - 3; /* the last frame is cut short */
    struct proto_parser p;
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    size_t off = 0;
    for (uint32_t i = 0; i < 3; i++) {
        struct proto_event ev;
        ck_assert_int_eq(proto_parse(&p, buf + off, partial - off, &ev), PROTO_FRAME);
        ck_assert_uint_eq(ev.header.seq, 100 + i);
        ck_assert_uint_eq(ev.data_len, i == 1 ? 0 : 10);
        off += ev.consumed;
    }
    struct proto_event ev;
    ck_assert_int_eq(proto_parse(&p, buf + off, partial - off, &ev), PROTO_NEED_MORE);
    ck_assert_uint_eq(ev.need, PROTO_HEADER_SIZE + 10);
    ck_assert_int_eq(proto_parse(&p, buf + off, len - off, &ev), PROTO_FRAME);
    ck_assert_uint_eq(ev.header.seq, 103);
}
END_TEST

START_TEST(frame_zero_length)
{
    uint8_t frame[PROTO_HEADER_SIZE];
    make_frame(frame, PROTO_ECHO, 1, NULL, 0);
    struct proto_parser p;
    struct proto_event ev;
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, frame, sizeof frame, &ev), PROTO_FRAME);
    ck_assert_uint_eq(ev.data_len, 0);
    ck_assert_uint_eq(ev.consumed, PROTO_HEADER_SIZE);
}
END_TEST

START_TEST(frame_max_size)
{
    size_t max = PROTO_DEFAULT_MAX_FRAME;
    uint8_t *frame = calloc(1, PROTO_HEADER_SIZE + max + 1);
    ck_assert_ptr_nonnull(frame);
    struct proto_parser p;
    struct proto_event ev;
    proto_write_request_header(frame, PROTO_ECHO, 9, (uint32_t)max);
    frame[PROTO_HEADER_SIZE + max - 1] = 0x5A;
    proto_parser_init(&p, (uint32_t)max);
    ck_assert_int_eq(proto_parse(&p, frame, PROTO_HEADER_SIZE + max - 1, &ev), PROTO_NEED_MORE);
    ck_assert_uint_eq(ev.need, PROTO_HEADER_SIZE + max);
    ck_assert_int_eq(proto_parse(&p, frame, PROTO_HEADER_SIZE + max, &ev), PROTO_FRAME);
    ck_assert_uint_eq(ev.data_len, max);
    ck_assert_uint_eq(ev.data[max - 1], 0x5A);
    /* one byte more is refused as soon as the header is in, without waiting for the payload */
    proto_write_request_header(frame, PROTO_ECHO, 9, (uint32_t)max + 1);
    proto_parser_init(&p, (uint32_t)max);
    ck_assert_int_eq(proto_parse(&p, frame, PROTO_HEADER_SIZE, &ev), PROTO_ERROR);
    ck_assert_int_eq(ev.status, PROTO_ERR_TOO_LARGE);
    ck_assert_uint_eq(ev.header.seq, 9);
    free(frame);
}
END_TEST

START_TEST(frame_len_all_ones)
{
    uint8_t frame[PROTO_HEADER_SIZE];
    proto_write_request_header(frame, PROTO_ECHO, 1, 0xFFFFFFFFu);
    struct proto_parser p;
    struct proto_event ev;
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, frame, sizeof frame, &ev), PROTO_ERROR);
    ck_assert_int_eq(ev.status, PROTO_ERR_TOO_LARGE);
    ck_assert_ptr_nonnull(ev.reason);
}
END_TEST

START_TEST(frame_bad_magic)
{
    struct proto_parser p;
    struct proto_event ev;
    /* first byte says frame mode, the second is wrong: refused after two bytes */
    const uint8_t bad[2] = {0xA5, 0x11};
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, bad, 2, &ev), PROTO_ERROR);
    ck_assert_int_eq(ev.status, PROTO_ERR_BAD_MAGIC);
    /* a good frame, then garbage where the next header should start */
    uint8_t buf[PROTO_HEADER_SIZE + 3];
    make_frame(buf, PROTO_ECHO, 1, NULL, 0);
    memcpy(buf + PROTO_HEADER_SIZE, "GET", 3);
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, buf, sizeof buf, &ev), PROTO_FRAME);
    ck_assert_int_eq(proto_parse(&p, buf + ev.consumed, 3, &ev), PROTO_ERROR);
    ck_assert_int_eq(ev.status, PROTO_ERR_BAD_MAGIC);
}
END_TEST

START_TEST(frame_unknown_type)
{
    const uint8_t types[] = {0, 4, 0x80, 0xFF};
    for (size_t i = 0; i < sizeof types; i++) {
        uint8_t frame[PROTO_HEADER_SIZE];
        proto_write_request_header(frame, types[i], 42, 0);
        struct proto_parser p;
        struct proto_event ev;
        proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
        ck_assert_int_eq(proto_parse(&p, frame, sizeof frame, &ev), PROTO_ERROR);
        ck_assert_int_eq(ev.status, PROTO_ERR_UNKNOWN_TYPE);
        ck_assert_uint_eq(ev.header.seq, 42);
    }
    /* STATS and STATS_RESET are known */
    for (uint8_t t = PROTO_STATS; t <= PROTO_STATS_RESET; t++) {
        uint8_t frame[PROTO_HEADER_SIZE];
        proto_write_request_header(frame, t, 1, 0);
        struct proto_parser p;
        struct proto_event ev;
        proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
        ck_assert_int_eq(proto_parse(&p, frame, sizeof frame, &ev), PROTO_FRAME);
    }
}
END_TEST

START_TEST(line_mode)
{
    struct proto_parser p;
    struct proto_event ev;
    const uint8_t *text = (const uint8_t *)"hello, World 42\nsecond";
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, text, 3, &ev), PROTO_NEED_MORE);
    ck_assert_int_eq(p.mode, PROTO_MODE_LINE);
    ck_assert_int_eq(proto_parse(&p, text, strlen((const char *)text), &ev), PROTO_LINE);
    ck_assert_uint_eq(ev.data_len, 15);
    ck_assert_uint_eq(ev.consumed, 16);
    uint8_t up[15];
    proto_upper_line(up, ev.data, ev.data_len);
    ck_assert_mem_eq(up, "HELLO, WORLD 42", 15);
    ck_assert_int_eq(proto_parse(&p, text + 16, 6, &ev), PROTO_NEED_MORE);
    /* an empty line is a line */
    ck_assert_int_eq(proto_parse(&p, (const uint8_t *)"\n", 1, &ev), PROTO_LINE);
    ck_assert_uint_eq(ev.data_len, 0);
    /* once in line mode, a 0xA5 byte is just text */
    const uint8_t a5[] = {0xA5, 0x10, '\n'};
    ck_assert_int_eq(proto_parse(&p, a5, 3, &ev), PROTO_LINE);
}
END_TEST

START_TEST(line_length_limit)
{
    uint8_t *buf = malloc(PROTO_MAX_LINE + 2);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'x', PROTO_MAX_LINE + 2);
    struct proto_parser p;
    struct proto_event ev;
    /* exactly 4096 bytes and a newline: accepted */
    buf[PROTO_MAX_LINE] = '\n';
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, buf, PROTO_MAX_LINE, &ev), PROTO_NEED_MORE);
    ck_assert_int_eq(proto_parse(&p, buf, PROTO_MAX_LINE + 1, &ev), PROTO_LINE);
    ck_assert_uint_eq(ev.data_len, PROTO_MAX_LINE);
    /* 4097 bytes with no newline yet: refused without waiting for more */
    buf[PROTO_MAX_LINE] = 'x';
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, buf, PROTO_MAX_LINE + 1, &ev), PROTO_ERROR);
    /* 4097 bytes then a newline: refused too */
    buf[PROTO_MAX_LINE + 1] = '\n';
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, buf, PROTO_MAX_LINE + 2, &ev), PROTO_ERROR);
    free(buf);
}
END_TEST

START_TEST(line_zero_byte)
{
    /* A zero byte is no text: refused as soon as it is in, without waiting for the '\n'. */
    struct proto_parser p;
    struct proto_event ev;
    const uint8_t bad[] = {'o', 'k', '\n', 'a', 0, 'b'};
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, bad, sizeof bad, &ev), PROTO_LINE); /* "ok" first */
    ck_assert_uint_eq(ev.consumed, 3);
    ck_assert_int_eq(proto_parse(&p, bad + 3, 1, &ev), PROTO_NEED_MORE);
    ck_assert_int_eq(proto_parse(&p, bad + 3, 2, &ev), PROTO_ERROR);
    ck_assert_str_eq(ev.reason, "zero byte in a line");
    /* ... as the first byte of a connection too, and before a line-too-long */
    uint8_t *big = calloc(PROTO_MAX_LINE + 2, 1);
    ck_assert_ptr_nonnull(big);
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, big, 1, &ev), PROTO_ERROR);
    ck_assert_str_eq(ev.reason, "zero byte in a line");
    memset(big, 'x', PROTO_MAX_LINE + 2);
    big[PROTO_MAX_LINE] = 0;
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, big, PROTO_MAX_LINE + 2, &ev), PROTO_ERROR);
    ck_assert_str_eq(ev.reason, "zero byte in a line");
    /* one past the longest line is the length that counts, not a zero byte after it */
    big[PROTO_MAX_LINE] = 'x';
    big[PROTO_MAX_LINE + 1] = 0;
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, big, PROTO_MAX_LINE + 2, &ev), PROTO_ERROR);
    ck_assert_str_eq(ev.reason, "line too long");
    free(big);
    /* in a frame's payload a zero byte is just data */
    uint8_t frame[PROTO_HEADER_SIZE + 3] = {0};
    proto_write_request_header(frame, PROTO_ECHO, 1, 3);
    proto_parser_init(&p, PROTO_DEFAULT_MAX_FRAME);
    ck_assert_int_eq(proto_parse(&p, frame, sizeof frame, &ev), PROTO_FRAME);
}
END_TEST

START_TEST(reply_prefix_bytes)
{
    struct proto_stamps st = {0x0102030405060708ull, 2, 3, 4, 5, 0xFFFFFFFFFFFFFFFFull};
    uint8_t out[PROTO_REPLY_PREFIX_SIZE];
    proto_write_reply_prefix(out, PROTO_ECHO, 3, 0x01020304, 0x00000A0B, &st);
    const uint8_t expect_header[12] = {0xA5, 0x10, 1, 3, 1, 2, 3, 4, 0, 0, 0x0A, 0x0B};
    ck_assert_mem_eq(out, expect_header, 12);
    const uint8_t expect_wait[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_mem_eq(out + 12, expect_wait, 8);
    struct proto_header h;
    struct proto_stamps back;
    ck_assert_int_eq(proto_read_reply_prefix(out, &h, &back), 0);
    ck_assert_mem_eq(&back, &st, sizeof st);
    ck_assert_uint_eq(h.len, 0x0A0B);
    ck_assert_uint_eq(proto_get_u64(out + PROTO_REPLY_STAMP_OFFSET), st.reply);
    out[1] = 0x11;
    ck_assert_int_eq(proto_read_reply_prefix(out, &h, &back), -1);
}
END_TEST

START_TEST(partial_writes)
{
    /* A 1 MiB echo through a small, non-blocking socket buffer: conn_flush must stop at
     * EAGAIN, keep its place, and finish later with every byte in order. */
    int sv[2];
    struct conn *c = conn_with_small_send_buffer(sv);
    size_t len = 1u << 20;
    uint8_t *frame = malloc(PROTO_HEADER_SIZE + len);
    ck_assert_ptr_nonnull(frame);
    for (size_t i = 0; i < len; i++)
        frame[PROTO_HEADER_SIZE + i] = (uint8_t)(i * 31 + (i >> 11));
    proto_write_request_header(frame, PROTO_ECHO, 5, (uint32_t)len);
    struct proto_stamps st = {1, 1, 1, 1, 1, 0};
    feed(c, frame, PROTO_HEADER_SIZE + len, &st);
    size_t want = PROTO_REPLY_PREFIX_SIZE + len, got = 0;
    uint8_t *reply = malloc(want);
    ck_assert_ptr_nonnull(reply);
    int rounds = 0, would_block = 0;
    for (;;) {
        int r = conn_flush(c);
        ck_assert_int_ge(r, 0);
        if (r == 0)
            would_block++;
        ssize_t n;
        while ((n = read(sv[1], reply + got, want - got)) > 0)
            got += (size_t)n;
        if (r == 1 && got == want)
            break;
        ck_assert_int_lt(++rounds, 100000);
    }
    ck_assert_int_gt(would_block, 0); /* the test really exercised short writes */
    ck_assert_mem_eq(reply + PROTO_REPLY_PREFIX_SIZE, frame + PROTO_HEADER_SIZE, len);
    ck_assert_uint_eq(proto_get_u32(reply + 8), len);
    free(frame);
    free(reply);
    conn_close(c);
    close(sv[1]);
}
END_TEST

START_TEST(conn_error_reply_then_done)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct server_options opt = {.max_frame = 100, .max_conns = 10};
    struct conn *c = conn_open(sv[0], &opt);
    uint8_t frame[PROTO_HEADER_SIZE];
    proto_write_request_header(frame, PROTO_ECHO, 77, 101);
    size_t room;
    memcpy(conn_in_space(c, &room), frame, sizeof frame);
    struct proto_stamps st = {0};
    uint64_t before = stats_get(STAT_errors_too_large);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY); /* the server logs the error */
    dup2(devnull, 2);
    conn_received(c, sizeof frame, &st);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    ck_assert_uint_eq(stats_get(STAT_errors_too_large), before + 1);
    ck_assert(!conn_wants_input(c));
    ck_assert(!conn_done(c)); /* the reply is not sent yet */
    ck_assert_int_eq(conn_flush(c), 1);
    ck_assert(conn_done(c));
    struct proto_header h;
    uint8_t reply[256];
    ssize_t n = read(sv[1], reply, sizeof reply);
    ck_assert_int_ge(n, (ssize_t)PROTO_REPLY_PREFIX_SIZE);
    ck_assert_int_eq(proto_read_reply_prefix(reply, &h, &st), 0);
    ck_assert_uint_eq(h.flags, PROTO_ERR_TOO_LARGE);
    ck_assert_uint_eq(h.seq, 77);
    ck_assert_uint_eq(n, PROTO_REPLY_PREFIX_SIZE + h.len);
    conn_close(c);
    close(sv[1]);
}
END_TEST

START_TEST(conn_end_of_file_sends_queued_replies)
{
    /* The peer half-closes while replies are still queued (its socket buffer is full): the
     * connection stops reading but is not done until every reply is out. */
    int sv[2];
    struct conn *c = conn_with_small_send_buffer(sv);
    uint8_t frame[PROTO_HEADER_SIZE + 60000] = {0};
    proto_write_request_header(frame, PROTO_ECHO, 1, 60000);
    struct proto_stamps st = {1, 1, 1, 1, 1, 0};
    feed(c, frame, sizeof frame, &st);
    ck_assert_int_eq(conn_flush(c), 0); /* would block: replies still queued */
    conn_read_ended(c, 0, 0);           /* then the peer's end of file */
    ck_assert(!conn_wants_input(c));
    ck_assert(!conn_done(c));
    ck_assert(conn_has_output(c));
    uint8_t sink[65536];
    size_t got = 0;
    for (int i = 0; i < 100000 && !conn_done(c); i++) {
        ssize_t n = read(sv[1], sink, sizeof sink);
        if (n > 0)
            got += (size_t)n;
        ck_assert_int_ge(conn_flush(c), 0);
    }
    ck_assert(conn_done(c));
    ssize_t n;
    while ((n = read(sv[1], sink, sizeof sink)) > 0)
        got += (size_t)n;
    ck_assert_uint_eq(got, PROTO_REPLY_PREFIX_SIZE + 60000);
    conn_close(c);
    close(sv[1]);
}
END_TEST

START_TEST(stats_text)
{
    stats_init("unit");
    stats_add(STAT_requests, 3);
    stats_add(STAT_calls_recvmsg, 2);
    char text[4096];
    stats_format(text, sizeof text, '\n');
    ck_assert_ptr_nonnull(strstr(text, "model=unit\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nrequests=3\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ncalls_recvmsg=2\n"));
    ck_assert_ptr_null(strstr(text, "calls_epoll_wait")); /* zero call counters are left out */
    ck_assert_ptr_nonnull(strstr(text, "\ncpu_user_us="));
    ck_assert_ptr_nonnull(strstr(text, "\nelapsed_us="));
    stats_add(STAT_connections_open, 2);
    stats_reset();
    ck_assert_uint_eq(stats_get(STAT_requests), 0);
    ck_assert_uint_eq(stats_get(STAT_connections_open), 2); /* a gauge survives a reset */
    char tiny[16];
    size_t n = stats_format(tiny, sizeof tiny, ' ');
    ck_assert_uint_eq(n, strlen(tiny)); /* truncated safely */
}
END_TEST

START_TEST(phases_readiness_model)
{
    /* epoll-like: wait 100, data 400, told 450, copy 460..470, reply 480 */
    struct proto_stamps st = {100, 400, 450, 460, 470, 480};
    struct phases ph;
    phases_derive(&st, 390, 500, &ph);
    ck_assert_int_eq(ph.wait_data, 300);
    ck_assert_int_eq(ph.notify, 50);
    ck_assert_int_eq(ph.dispatch, 10);
    ck_assert_int_eq(ph.copy_data, 10);
    ck_assert_int_eq(ph.processing, 10);
    ck_assert_int_eq(ph.round_trip, 110);
}
END_TEST

START_TEST(phases_blocking_model)
{
    /* blocking recv: called at 100, data at 400, returned at 430 (t_ready = t_copy_end) */
    struct proto_stamps st = {100, 400, 430, 100, 430, 440};
    struct phases ph;
    phases_derive(&st, 390, 450, &ph);
    ck_assert_int_eq(ph.wait_data, 300);
    ck_assert_int_eq(ph.notify, 0);
    ck_assert_int_eq(ph.dispatch, 0);
    ck_assert_int_eq(ph.copy_data, 30); /* from arrival, not from the call */
    ck_assert_int_eq(ph.processing, 10);
    ck_assert_int_eq(ph.wait_data + ph.copy_data + ph.processing, 340); /* t_wait..t_reply */
}
END_TEST

START_TEST(phases_polling_model)
{
    /* busy polling: first EAGAIN at 100, data at 200, the sweep comes back and copies at
     * 350..360 (t_ready = t_copy_end): the data waited 150 in the kernel for the sweep */
    struct proto_stamps st = {100, 200, 360, 350, 360, 370};
    struct phases ph;
    phases_derive(&st, 190, 400, &ph);
    ck_assert_int_eq(ph.wait_data, 100);
    ck_assert_int_eq(ph.notify, 150);
    ck_assert_int_eq(ph.dispatch, 0);
    ck_assert_int_eq(ph.copy_data, 10);
    ck_assert_int_eq(ph.wait_data + ph.notify + ph.copy_data + ph.processing, 270);
}
END_TEST

START_TEST(phases_data_already_there)
{
    /* data arrived at 50, before the wait began at 100: no wait, a long notification */
    struct proto_stamps st = {100, 50, 120, 125, 130, 140};
    struct phases ph;
    phases_derive(&st, 40, 150, &ph);
    ck_assert_int_eq(ph.wait_data, 0);
    ck_assert_int_eq(ph.notify, 70);
}
END_TEST

START_TEST(phases_unknown_stamps)
{
    /* no arrival stamp and no copy stamps (e.g. AIO): those phases are unknown, not 0 */
    struct proto_stamps st = {100, 0, 300, 0, 0, 320};
    struct phases ph;
    phases_derive(&st, 90, 330, &ph);
    ck_assert_int_eq(ph.wait_data, PHASE_UNKNOWN);
    ck_assert_int_eq(ph.notify, PHASE_UNKNOWN);
    ck_assert_int_eq(ph.copy_data, PHASE_UNKNOWN);
    ck_assert_int_eq(ph.processing, 20);
    ck_assert_int_eq(ph.round_trip, 240);
}
END_TEST

Suite *proto_suite(void)
{
    Suite *s = suite_create("unit");
    TCase *t = tcase_create("protocol");
    tcase_add_test(t, frame_every_split);
    tcase_add_test(t, frame_byte_by_byte_through_conn);
    tcase_add_test(t, frames_pipelined);
    tcase_add_test(t, frame_zero_length);
    tcase_add_test(t, frame_max_size);
    tcase_add_test(t, frame_len_all_ones);
    tcase_add_test(t, frame_bad_magic);
    tcase_add_test(t, frame_unknown_type);
    tcase_add_test(t, line_mode);
    tcase_add_test(t, line_length_limit);
    tcase_add_test(t, line_zero_byte);
    tcase_add_test(t, reply_prefix_bytes);
    tcase_add_test(t, partial_writes);
    tcase_add_test(t, conn_error_reply_then_done);
    tcase_add_test(t, conn_end_of_file_sends_queued_replies);
    tcase_add_test(t, stats_text);
    suite_add_tcase(s, t);
    TCase *ph = tcase_create("phases");
    tcase_add_test(ph, phases_readiness_model);
    tcase_add_test(ph, phases_blocking_model);
    tcase_add_test(ph, phases_polling_model);
    tcase_add_test(ph, phases_data_already_there);
    tcase_add_test(ph, phases_unknown_stamps);
    suite_add_tcase(s, ph);
    return s;
}
