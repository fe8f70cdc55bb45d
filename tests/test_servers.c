/* test_servers.c - integration tests: every built server, started on port 0 and driven
 * through real loopback sockets. Each test runs once per model (a Check loop test). */
#include "helpers.h"

#include <check.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suites.h"

/* How a model takes its stamps, which decides what the tests can demand of them. */
enum stamp_style {
    STAMPS_BLOCKING,  /* recv() waits and copies: t_wait = t_copy_begin, t_ready = t_copy_end */
    STAMPS_READINESS, /* told first, copies second: t_ready <= t_copy_begin */
    STAMPS_POLLING,   /* learns when a non-blocking recv() finally succeeds: t_ready = t_copy_end */
    STAMPS_COMPLETION, /* the kernel or a helper copies: t_copy_begin = t_copy_end = 0 */
    STAMPS_LIBRARY,    /* a library reads, then calls back (t_ready): the copy unseen (0) */
};

/* One line of tests/models.list: the models under test and what each can do. */
struct model {
    char name[32];
    int iterative;           /* "iterative": serves one connection at a time */
    enum stamp_style stamps; /* "stamps=blocking|readiness|polling|completion|library" */
    int arrival;             /* "arrival": reads with recvmsg, so t_arrive is known */
    int many;                /* "many": the 2000-connection test applies */
    int fd_setsize;          /* "fd_setsize": refuses fds >= FD_SETSIZE (select) */
    int forks;               /* "forks": one process per connection, each its own fd table */
};

#define MAX_MODELS 32
static struct model models[MAX_MODELS];
static int n_models;

/* tests/models.list, as test_models_load() (tests/helpers.c) reads it, in this file's terms. */
static void load_models(void)
{
    const struct test_model *list;
    int n = test_models_load(&list);
    for (int i = 0; i < n && n_models < MAX_MODELS; i++) {
        struct model m = {.iterative = list[i].iterative,
                          .arrival = list[i].arrival,
                          .many = list[i].many,
                          .fd_setsize = list[i].fd_setsize,
                          .forks = list[i].forks};
        snprintf(m.name, sizeof m.name, "%s", list[i].name);
        const char *st = list[i].stamps;
        if (strcmp(st, "blocking") == 0)
            m.stamps = STAMPS_BLOCKING;
        else if (strcmp(st, "readiness") == 0)
            m.stamps = STAMPS_READINESS;
        else if (strcmp(st, "polling") == 0)
            m.stamps = STAMPS_POLLING;
        else if (strcmp(st, "completion") == 0)
            m.stamps = STAMPS_COMPLETION;
        else if (strcmp(st, "library") == 0)
            m.stamps = STAMPS_LIBRARY;
        else {
            fprintf(stderr, "tests/models.list: unknown stamps=%s for %s\n", st, m.name);
            exit(1);
        }
        models[n_models++] = m;
    }
}
#define N_MODELS n_models

static uint8_t *random_bytes(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

/* Read one reply and check that it is the successful echo of payload with this seq. */
static void expect_echo(int fd, uint32_t seq, const void *payload, uint32_t len)
{
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *back;
    ck_assert_msg(read_reply(fd, &h, &st, &back) == 0, "no reply to echo seq %u", seq);
    ck_assert_uint_eq(h.flags, PROTO_OK);
    ck_assert_uint_eq(h.seq, seq);
    ck_assert_uint_eq(h.len, len);
    ck_assert_msg(len == 0 || memcmp(back, payload, len) == 0, "echo seq %u differs", seq);
    free(back);
}

/* Send one ECHO and check the reply byte for byte, and that its stamps are consistent. */
static void echo_once(int fd, uint32_t seq, const uint8_t *payload, uint32_t len,
                      const struct model *m)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    send_frame(fd, PROTO_ECHO, seq, payload, len);
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *back;
    ck_assert_msg(read_reply(fd, &h, &st, &back) == 0, "%s: no reply to a %u-byte echo", m->name,
                  len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t sent = (uint64_t)t0.tv_sec * 1000000000u + (uint64_t)t0.tv_nsec;
    uint64_t got = (uint64_t)t1.tv_sec * 1000000000u + (uint64_t)t1.tv_nsec;
    ck_assert_uint_eq(h.magic, PROTO_MAGIC);
    ck_assert_uint_eq(h.type, PROTO_ECHO);
    ck_assert_uint_eq(h.flags, PROTO_OK);
    ck_assert_uint_eq(h.seq, seq);
    ck_assert_uint_eq(h.len, len);
    ck_assert_msg(len == 0 || memcmp(back, payload, len) == 0, "%s: echo of %u bytes differs",
                  m->name, len);
    free(back);
    /* The stamps share the client's clock: each lies inside the round trip and in order. */
    ck_assert_uint_ne(st.wait, 0);
    ck_assert_uint_le(st.wait, st.ready);
    ck_assert_uint_ge(st.ready, sent);
    ck_assert_uint_ge(st.reply, st.ready);
    ck_assert_uint_le(st.reply, got);
    if (m->stamps == STAMPS_COMPLETION || m->stamps == STAMPS_LIBRARY) {
        ck_assert_uint_eq(st.copy_begin, 0); /* the copy was not the program's own call */
        ck_assert_uint_eq(st.copy_end, 0);
    } else {
        ck_assert_uint_ge(st.copy_begin, st.wait);
        ck_assert_uint_ge(st.copy_end, st.copy_begin);
        ck_assert_uint_ge(st.reply, st.copy_end);
    }
    if (m->stamps == STAMPS_BLOCKING) {
        ck_assert_uint_eq(st.ready, st.copy_end); /* told only when recv returned */
        ck_assert_uint_eq(st.wait, st.copy_begin);
    } else if (m->stamps == STAMPS_POLLING) {
        ck_assert_uint_eq(st.ready, st.copy_end); /* told by the recv that succeeded */
    } else if (m->stamps == STAMPS_READINESS) {
        ck_assert_uint_le(st.ready, st.copy_begin); /* told first, copied second */
    }
    /* A model that reads with recvmsg must have the kernel's arrival stamp, converted to the
     * monotonic clock (unconverted, it would be ~decades off); one that cannot know it says
     * 0, never a guess. */
    if (m->arrival) {
        ck_assert_uint_ne(st.arrive, 0);
        ck_assert_uint_ge(st.arrive + 1000000000u, sent);
        ck_assert_uint_le(st.arrive, got + 1000000000u);
    } else {
        ck_assert_uint_eq(st.arrive, 0);
    }
}

START_TEST(echo_sizes)
{
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    /* around the header size, the read chunk (16 KiB), and up to --max-frame: the large
     * ones take many reads and force partial writes */
    const uint32_t sizes[] = {0,     1,     2,     11,    12,    13,     100,    4096,
                              16383, 16384, 16385, 65536, 65537, 300000, 524289, 1u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *p = random_bytes(sizes[i], (unsigned)i + 1);
        echo_once(fd, (uint32_t)i + 1, p, sizes[i], m);
        free(p);
    }
    close(fd);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(pipelined_in_pieces)
{
    /* Ten frames written back to back in odd-sized pieces: ten replies, in order. */
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    uint8_t buf[10 * (PROTO_HEADER_SIZE + 300)];
    size_t len = 0;
    uint8_t *p = random_bytes(300, 99);
    for (uint32_t i = 0; i < 10; i++) {
        proto_write_request_header(buf + len, PROTO_ECHO, 1000 + i, 30 * i);
        memcpy(buf + len + PROTO_HEADER_SIZE, p, 30 * i);
        len += PROTO_HEADER_SIZE + 30 * i;
    }
    for (size_t off = 0; off < len; off += 37) {
        send_all(fd, buf + off, len - off < 37 ? len - off : 37);
        usleep(100);
    }
    for (uint32_t i = 0; i < 10; i++)
        expect_echo(fd, 1000 + i, p, 30 * i);
    free(p);
    close(fd);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(concurrent_connections)
{
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    if (m->iterative) {
        /* One at a time: a second client waits until the first leaves, then is served. */
        int a = client_connect(s.port), b = client_connect(s.port);
        send_frame(b, PROTO_ECHO, 2, "second", 6);
        uint8_t *pa = random_bytes(64, 1);
        echo_once(a, 1, pa, 64, m);
        free(pa);
        ck_assert_msg(!readable_within(b, 200), "the iterative server answered two at once");
        close(a);
        expect_echo(b, 2, "second", 6);
        close(b);
    } else {
        /* 100 connections, all open at once, each with a request in flight. */
        enum { N = 100 };
        int fds[N];
        uint8_t *p[N];
        for (int i = 0; i < N; i++) {
            fds[i] = client_connect(s.port);
            p[i] = random_bytes(1000 + (size_t)i, (unsigned)i + 7);
            send_frame(fds[i], PROTO_ECHO, (uint32_t)i, p[i], 1000 + (uint32_t)i);
        }
        for (int i = N - 1; i >= 0; i--) {
            expect_echo(fds[i], (uint32_t)i, p[i], 1000 + (uint32_t)i);
            free(p[i]);
            /* and each connection keeps working */
            uint8_t *q = random_bytes(10, (unsigned)i);
            echo_once(fds[i], 5000, q, 10, m);
            free(q);
        }
        for (int i = 0; i < N; i++)
            close(fds[i]);
    }
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

/* Open n connections, send one echo on each, then read every reply. */
static void echo_on_many(int port, int n, const struct model *m)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int *fds = malloc((size_t)n * sizeof *fds);
    ck_assert_ptr_nonnull(fds);
    for (int i = 0; i < n; i++) {
        fds[i] = client_connect(port);
        uint32_t v = (uint32_t)i * 2654435761u;
        send_frame(fds[i], PROTO_ECHO, (uint32_t)i, &v, sizeof v);
    }
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)i * 2654435761u;
        expect_echo(fds[i], (uint32_t)i, &v, sizeof v);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    (void)m;
}

START_TEST(two_thousand_connections)
{
    const struct model *m = &models[_i];
    if (!m->many)
        return; /* select (FD_SETSIZE) and the iterative server: see their own tests */
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    echo_on_many(s.port, 2000, m);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "frames"), 2000);
    ck_assert_int_eq(stats_value(out, "connections"), 2000);
}
END_TEST

/* Send a one-byte ECHO without checking the send: a refused connection may be closed
 * already, so its send can fail, while its reply is there to read. */
static void send_echo_unchecked(int fd, uint32_t seq)
{
    uint8_t frame[PROTO_HEADER_SIZE + 1];
    proto_write_request_header(frame, PROTO_ECHO, seq, 1);
    frame[PROTO_HEADER_SIZE] = 'x';
    (void)!send(fd, frame, sizeof frame, MSG_NOSIGNAL);
}

/* Read connection i's reply: 1 if it was served, 0 if it was refused with status SERVER_FULL
 * and a reason that is `reason` (exact) or contains it (!exact); anything else fails. */
static int served_or_refused(int fd, int i, const char *reason, int exact)
{
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *p;
    ck_assert_msg(read_reply(fd, &h, &st, &p) == 0, "connection %d: no reply", i);
    int served = h.flags == PROTO_OK;
    if (!served) {
        ck_assert_uint_eq(h.flags, PROTO_ERR_SERVER_FULL);
        if (exact)
            ck_assert_str_eq((char *)p, reason);
        else
            ck_assert_ptr_nonnull(strstr((char *)p, reason));
    }
    free(p);
    return served;
}

/* After clients left, the server notices the closes in its own time: a new client is
 * served again within 500 tries 10 ms apart. */
static void expect_served_again(int port)
{
    int again = 0;
    for (int tries = 0; tries < 500 && !again; tries++) {
        int fd = client_connect(port);
        send_frame(fd, PROTO_ECHO, 7, "back", 4);
        struct proto_header h;
        struct proto_stamps st;
        uint8_t *p;
        ck_assert_int_eq(read_reply(fd, &h, &st, &p), 0);
        again = h.flags == PROTO_OK;
        free(p);
        close(fd);
        if (!again)
            usleep(10000);
    }
    ck_assert_msg(again, "no new client was served again");
}

START_TEST(fd_setsize_refused)
{
    /* select can only watch descriptors below FD_SETSIZE: the connection that would get one
     * is refused with a reason, and every other one is served. */
    const struct model *m = &models[_i];
    if (!m->fd_setsize)
        return;
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    enum { N = 1040 };
    int fds[N], served = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = client_connect(s.port);
        send_echo_unchecked(fds[i], (uint32_t)i);
    }
    for (int i = 0; i < N; i++) {
        if (served_or_refused(fds[i], i, "FD_SETSIZE", 0))
            served++;
        else
            refused++;
    }
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(served, 1000);
    ck_assert_int_lt(served, 1024);
    /* the ones served still work, and after some leave, newcomers are served again */
    echo_once(fds[0], 5000, (const uint8_t *)"still", 5, m);
    for (int i = N - 1; i >= N / 2; i--)
        close(fds[i]);
    expect_served_again(s.port);
    for (int i = 0; i < N / 2; i++)
        close(fds[i]);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_ge(stats_value(out, "connections_refused_fd_setsize"), refused);
}
END_TEST

START_TEST(background_work)
{
    /* --work: the server computes whenever it is not serving, and says how much. */
    const struct model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--work", NULL};
    server_spawn(&s, m->name, args);
    int fd = client_connect(s.port);
    for (uint32_t i = 0; i < 50; i++)
        echo_once(fd, i, (const uint8_t *)"work", 4, m);
    usleep(20000);
    close(fd);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "frames"), 50);
    ck_assert_int_gt(stats_value(out, "work_units"), 0);
}
END_TEST

START_TEST(line_mode)
{
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    const char *typed = "hello, world\nTwo lines in one write\nsplit ";
    send_all(fd, typed, strlen(typed));
    usleep(1000);
    send_all(fd, "across writes\n\n", 15);
    const char *expect = "HELLO, WORLD\nTWO LINES IN ONE WRITE\nSPLIT ACROSS WRITES\n\n";
    char got[128] = {0};
    ck_assert_int_eq(recv_exact(fd, got, strlen(expect)), 0);
    ck_assert_str_eq(got, expect);
    /* 4096 bytes is the longest line; one more is refused and the connection closed */
    char *line = malloc(4098);
    memset(line, 'a', 4098);
    line[4096] = '\n';
    send_all(fd, line, 4097);
    char *back = malloc(4097);
    ck_assert_int_eq(recv_exact(fd, back, 4097), 0);
    ck_assert_int_eq(back[0], 'A');
    ck_assert_int_eq(back[4096], '\n');
    line[4096] = 'a';
    line[4097] = '\n';
    send_all(fd, line, 4098);
    const char *err = "ERR line too long\n";
    memset(got, 0, sizeof got);
    ck_assert_int_eq(recv_exact(fd, got, strlen(err)), 0);
    ck_assert_str_eq(got, err);
    ck_assert(expect_closed(fd));
    close(fd);
    free(line);
    free(back);
    char log[4096];
    server_log(&s, log, sizeof log);
    ck_assert_ptr_nonnull(strstr(log, "line too long"));
    /* the server still serves */
    fd = client_connect(s.port);
    send_all(fd, "again\n", 6);
    memset(got, 0, sizeof got);
    ck_assert_int_eq(recv_exact(fd, got, 6), 0);
    ck_assert_str_eq(got, "AGAIN\n");
    close(fd);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

struct bad_request {
    const char *what;
    uint8_t bytes[PROTO_HEADER_SIZE];
    size_t len;
    uint8_t status;
    const char *log_says;
};

START_TEST(malformed_requests)
{
    const struct model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--max-frame", "1000", NULL};
    server_spawn(&s, m->name, args);
    const struct bad_request bad[] = {
        {"bad magic",
         {0xA5, 0x11, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0},
         12,
         PROTO_ERR_BAD_MAGIC,
         "bad magic"},
        {"bad magic, 2 bytes", {0xA5, 0x00}, 2, PROTO_ERR_BAD_MAGIC, "bad magic"},
        {"unknown type",
         {0xA5, 0x10, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0},
         12,
         PROTO_ERR_UNKNOWN_TYPE,
         "unknown request type"},
        {"len over --max-frame",
         {0xA5, 0x10, 1, 0, 0, 0, 0, 1, 0, 0, 0x03, 0xE9},
         12,
         PROTO_ERR_TOO_LARGE,
         "--max-frame"},
        {"len 0xFFFFFFFF",
         {0xA5, 0x10, 1, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF},
         12,
         PROTO_ERR_TOO_LARGE,
         "--max-frame"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = client_connect(s.port);
        /* a good request first: the error must not disturb what came before it */
        echo_once(fd, 1, (const uint8_t *)"ok", 2, m);
        send_all(fd, bad[i].bytes, bad[i].len);
        struct proto_header h;
        struct proto_stamps st;
        uint8_t *reason;
        ck_assert_msg(read_reply(fd, &h, &st, &reason) == 0, "%s: no error reply", bad[i].what);
        ck_assert_msg(h.flags == bad[i].status, "%s: status %u", bad[i].what, h.flags);
        ck_assert_msg(h.len > 0 && strchr((char *)reason, '\n') == NULL, "%s: reason \"%s\"",
                      bad[i].what, reason);
        free(reason);
        ck_assert_msg(expect_closed(fd), "%s: connection left open", bad[i].what);
        close(fd);
        char log[8192];
        server_log(&s, log, sizeof log);
        ck_assert_msg(strstr(log, bad[i].log_says) != NULL, "%s: not in the log", bad[i].what);
    }
    /* a frame within the limit still works, on a new connection */
    int fd = client_connect(s.port);
    uint8_t *p = random_bytes(1000, 3);
    echo_once(fd, 9, p, 1000, m);
    free(p);
    close(fd);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "errors_bad_magic"), 2);
    ck_assert_int_eq(stats_value(out, "errors_unknown_type"), 1);
    ck_assert_int_eq(stats_value(out, "errors_too_large"), 2);
}
END_TEST

START_TEST(max_conns)
{
    const struct model *m = &models[_i];
    if (m->iterative)
        return; /* it only ever has one connection open; nothing to refuse */
    struct test_server s;
    const char *const args[] = {"--max-conns", "2", NULL};
    server_spawn(&s, m->name, args);
    int a = client_connect(s.port), b = client_connect(s.port);
    echo_once(a, 1, (const uint8_t *)"a", 1, m); /* both are surely accepted now */
    echo_once(b, 1, (const uint8_t *)"b", 1, m);
    int c = client_connect(s.port);
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *reason;
    ck_assert_int_eq(read_reply(c, &h, &st, &reason), 0);
    ck_assert_uint_eq(h.flags, PROTO_ERR_SERVER_FULL);
    free(reason);
    ck_assert(expect_closed(c));
    close(c);
    echo_once(a, 2, (const uint8_t *)"still", 5, m);
    close(a);
    close(b);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "connections_refused"), 1);
}
END_TEST

START_TEST(max_conns_burst)
{
    /* 50 connections at once against --max-conns 10: exactly 10 are served, 40 told why. */
    const struct model *m = &models[_i];
    if (m->iterative)
        return;
    struct test_server s;
    const char *const args[] = {"--max-conns", "10", NULL};
    server_spawn(&s, m->name, args);
    enum { N = 50 };
    int fds[N], served = 0, refused = 0;
    for (int i = 0; i < N; i++)
        fds[i] = client_connect(s.port);
    for (int i = 0; i < N; i++)
        send_echo_unchecked(fds[i], (uint32_t)i);
    for (int i = 0; i < N; i++) {
        if (served_or_refused(fds[i], i, "too many connections (--max-conns)", 1))
            served++;
        else
            refused++;
    }
    ck_assert_int_eq(served, 10);
    ck_assert_int_eq(refused, N - 10);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(half_close_gets_every_reply)
{
    /* A client pipelines many requests, then shuts down its sending side and reads: every
     * reply must still come, though the server sees end of file before it has sent them. */
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    enum { N = 3000, SIZE = 1000 };
    size_t out_len = N * (PROTO_HEADER_SIZE + SIZE), in_len = N * (PROTO_REPLY_PREFIX_SIZE + SIZE);
    uint8_t *out = malloc(out_len), *in = malloc(in_len);
    uint8_t *p = random_bytes(SIZE, 11);
    for (int i = 0; i < N; i++) {
        proto_write_request_header(out + i * (PROTO_HEADER_SIZE + SIZE), PROTO_ECHO, (uint32_t)i,
                                   SIZE);
        memcpy(out + i * (PROTO_HEADER_SIZE + SIZE) + PROTO_HEADER_SIZE, p, SIZE);
    }
    /* write everything while reading what comes back, so neither side's buffers fill up */
    size_t sent = 0, got = 0;
    while (sent < out_len) {
        struct pollfd pf = {.fd = fd, .events = POLLIN | POLLOUT};
        ck_assert_int_gt(poll(&pf, 1, TEST_IO_TIMEOUT_S * 1000), 0);
        if (pf.revents & POLLOUT) {
            ssize_t n = send(fd, out + sent, out_len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        if (pf.revents & POLLIN) {
            ssize_t n = recv(fd, in + got, in_len - got, MSG_DONTWAIT);
            ck_assert_int_ne(n, 0);
            if (n > 0)
                got += (size_t)n;
        }
    }
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(recv_exact(fd, in + got, in_len - got), 0);
    ck_assert(expect_closed(fd));
    for (int i = 0; i < N; i++) {
        const uint8_t *r = in + i * (PROTO_REPLY_PREFIX_SIZE + SIZE);
        ck_assert_uint_eq(proto_get_u32(r + 4), (uint32_t)i);
        ck_assert(memcmp(r + PROTO_REPLY_PREFIX_SIZE, p, SIZE) == 0);
    }
    free(out);
    free(in);
    free(p);
    close(fd);
    char stats[4096];
    ck_assert_int_eq(server_stop(&s, stats, sizeof stats), 0);
    ck_assert_int_eq(stats_value(stats, "frames"), N);
    ck_assert_int_eq(stats_value(stats, "errors_reset"), 0);
    ck_assert_int_eq(stats_value(stats, "errors_truncated"), 0);
}
END_TEST

START_TEST(out_of_descriptors)
{
    /* With 16 descriptors, 20 clients: those beyond the table are told why and closed (the
     * spare-descriptor trick), and once clients leave, a new one is served again. */
    const struct model *m = &models[_i];
    if (m->iterative)
        return; /* one connection at a time never fills the table */
    struct test_server s;
    server_spawn_limited(&s, m->name, NULL, 16);
    enum { N = 20 };
    int fds[N], served = 0, refused = 0;
    for (int i = 0; i < N; i++)
        fds[i] = client_connect(s.port);
    for (int i = 0; i < N; i++) {
        send_echo_unchecked(fds[i], (uint32_t)i);
        if (served_or_refused(fds[i], i, "server out of file descriptors", 1))
            served++;
        else
            refused++;
    }
    if (m->forks) {
        /* The parent closes each socket once its child has it, and each child has a table of
         * its own: 16 descriptors per process never run out, and every client is served. */
        ck_assert_int_eq(served, N);
        for (int i = 0; i < N; i++)
            close(fds[i]);
        ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
        return;
    }
    ck_assert_int_gt(served, 0);
    ck_assert_int_gt(refused, 0);
    ck_assert_int_eq(served + refused, N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    expect_served_again(s.port);
    char out[4096], log[4096];
    server_log(&s, log, sizeof log);
    ck_assert_ptr_nonnull(strstr(log, "accept: Too many open files"));
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_ge(stats_value(out, "errors_accept"), refused);
}
END_TEST

/* Ask for STATS on a new connection; returns the reply text (malloc'd) and its size on the
 * wire in *wire. */
static char *fetch_stats(int port, size_t *wire)
{
    int fd = client_connect(port);
    send_frame(fd, PROTO_STATS, 1, NULL, 0);
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *text;
    ck_assert_int_eq(read_reply(fd, &h, &st, &text), 0);
    ck_assert_uint_eq(h.type, PROTO_STATS);
    *wire = PROTO_REPLY_PREFIX_SIZE + h.len;
    close(fd);
    return (char *)text;
}

START_TEST(stats_add_up)
{
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    send_frame(fd, PROTO_STATS_RESET, 1, NULL, 0);
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *payload;
    ck_assert_int_eq(read_reply(fd, &h, &st, &payload), 0);
    ck_assert_uint_eq(h.type, PROTO_STATS_RESET);
    ck_assert_uint_eq(h.len, 0);
    free(payload);
    uint8_t *p = random_bytes(100, 5);
    for (uint32_t i = 0; i < 10; i++)
        echo_once(fd, 10 + i, p, 100, m);
    free(p);
    close(fd);
    fd = client_connect(s.port);
    send_all(fd, "one\ntwo\nsix\n", 12);
    char got[13] = {0};
    ck_assert_int_eq(recv_exact(fd, got, 12), 0);
    close(fd);

    /* Poll until both client connections are closed on the server's side too, so that every
     * counter of theirs is final; then the numbers must add up exactly. */
    size_t stats_replies = 0, wire = 0;
    char *text = NULL;
    for (int tries = 0; tries < 1000; tries++) {
        free(text);
        stats_replies += wire;
        text = fetch_stats(s.port, &wire);
        if (stats_value(text, "connections_open") == 1)
            break;
        usleep(10000);
    }
    ck_assert_int_eq(stats_value(text, "connections_open"), 1);
    char model_line[64];
    snprintf(model_line, sizeof model_line, "model=%s\n", m->name);
    ck_assert_ptr_nonnull(strstr(text, model_line));
    ck_assert_int_eq(stats_value(text, "requests"), 13);
    ck_assert_int_eq(stats_value(text, "frames"), 10);
    ck_assert_int_eq(stats_value(text, "lines"), 3);
    long long polls = stats_value(text, "stats_requests");
    ck_assert_int_ge(polls, 1);
    /* in: 10 echoes of 12+100, 12 bytes of lines, and each STATS request's 12 */
    ck_assert_int_eq(stats_value(text, "bytes_in"), 10 * 112 + 12 + 12 * polls);
    /* out: the reset's reply (60), 10 echoes of 60+100, 12 bytes of lines, earlier STATS */
    ck_assert_int_eq(stats_value(text, "bytes_out"), 60 + 10 * 160 + 12 + (long long)stats_replies);
    ck_assert_int_eq(stats_value(text, "connections"), 1 + polls); /* conn 1 predates the reset */
    if (m->stamps == STAMPS_COMPLETION) {
        /* reads and sends are requests that complete later (aio, io_uring) */
        ck_assert_int_ge(stats_value(text, "completions"), 2 + 12);
    } else {
        ck_assert_int_ge(stats_value(text, "calls_recvmsg"), 2);
        ck_assert_int_ge(stats_value(text, "calls_send"), 12); /* lines may share a send */
    }
    ck_assert_int_ge(stats_value(text, "cpu_user_us"), 0);
    ck_assert_int_eq(stats_value(text, "errors_reset"), 0);
    free(text);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(sigterm_exits_with_stats)
{
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    echo_once(fd, 1, (const uint8_t *)"bye", 3, m);
    if (!m->iterative) /* a client still connected must not keep the server from stopping */
        echo_once(fd, 2, (const uint8_t *)"bye", 3, m);
    else
        close(fd);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_msg(strncmp(out, "STATS model=", 12) == 0, "exit line: \"%s\"", out);
    ck_assert_int_eq(stats_value(out, "requests"), m->iterative ? 1 : 2);
    ck_assert_int_ge(stats_value(out, "cpu_sys_us"), 0);
    ck_assert_int_ge(stats_value(out, "ctx_voluntary"), 0);
    if (!m->iterative)
        close(fd);
}
END_TEST

/* Run build/loadgen; returns its exit status and leaves its JSON summary in json. With
 * interrupt set, sends it SIGINT once its progress line says it has measured a while. */
static int run_loadgen_interrupted(int port, const char *const *args, char *json, size_t json_size,
                                   int interrupt)
{
    char path[64], port_s[16];
    snprintf(path, sizeof path, "/tmp/iomodels-loadgen-%d.json", (int)getpid());
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *argv[32] = {build_path("loadgen"),
                            "-p",
                            port_s,
                            interrupt ? "--json" : "-q",
                            interrupt ? path : "--json",
                            interrupt ? NULL : path};
    int argc = interrupt ? 5 : 6;
    for (int i = 0; args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int progress[2];
    ck_assert_int_eq(pipe(progress), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL || (interrupt && dup2(progress[1], 2) < 0))
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(progress[1]);
    if (interrupt) {
        /* wait for the second "measuring" progress line (a second of measuring), however
         * slow a busy machine makes the start */
        char text[8192] = {0};
        size_t n = 0;
        const char *first;
        while (n < sizeof text - 1) {
            ck_assert_msg(readable_within(progress[0], TEST_IO_TIMEOUT_S * 1000),
                          "loadgen printed no progress");
            ssize_t r = read(progress[0], text + n, sizeof text - 1 - n);
            ck_assert_int_gt(r, 0);
            n += (size_t)r;
            if ((first = strstr(text, "measuring")) != NULL && strstr(first + 1, "measuring"))
                break;
        }
        kill(pid, SIGINT);
    }
    close(progress[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(json, 1, json_size - 1, f);
    json[n] = '\0';
    fclose(f);
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run_loadgen(int port, const char *const *args, char *json, size_t json_size)
{
    return run_loadgen_interrupted(port, args, json, json_size, 0);
}

static long long json_number(const char *json, const char *key)
{
    char quoted[64]; /* the first "key": at any depth; "requests" is matched at the top level */
    snprintf(quoted, sizeof quoted,
             strcmp(key, "requests") == 0 ? "\n  \"%s\": " : "\"%s\": ", key);
    const char *p = strstr(json, quoted);
    ck_assert_msg(p != NULL, "no %s in the loadgen JSON", key);
    return atoll(p + strlen(quoted));
}

START_TEST(loadgen_run)
{
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    const char *const args[] = {
        "-c", m->iterative ? "1" : "20", "-s", "200", "-d", "1.5", "--warmup", "0.3", NULL};
    char json[16384];
    ck_assert_int_eq(run_loadgen(s.port, args, json, sizeof json), 0);
    ck_assert_int_gt(json_number(json, "requests"), 0);
    ck_assert_int_eq(json_number(json, "total"), 0); /* errors */
    ck_assert_int_eq(json_number(json, "payload_mismatch"), 0);
    ck_assert_int_eq(json_number(json, "never_served"), 0);
    ck_assert_ptr_nonnull(strstr(json, m->name));
    ck_assert_int_gt(json_number(json, "frames"), 0); /* the server's STATS delta came back */
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(loadgen_shows_unserved)
{
    /* Three connections to the iterative server: one is served, two never are, and loadgen
     * says so and still ends on time. Concurrent servers serve all three. */
    const struct model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    const char *const args[] = {"-c", "3", "-d", "0.5", "--warmup", "0.1", NULL};
    char json[16384];
    ck_assert_int_eq(run_loadgen(s.port, args, json, sizeof json), 0);
    ck_assert_int_eq(json_number(json, "never_served"), m->iterative ? 2 : 0);
    ck_assert_int_gt(json_number(json, "requests"), 0);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

START_TEST(loadgen_sigint_still_reports)
{
    /* Ctrl-C in the middle of a 60-second run: it stops, writes its files marked
     * interrupted, and says so in its exit status. */
    struct test_server s;
    server_spawn(&s, "epoll", NULL);
    const char *const args[] = {"-c", "4", "-d", "60", "--warmup", "0.2", NULL};
    char json[16384];
    ck_assert_int_eq(run_loadgen_interrupted(s.port, args, json, sizeof json, 1), 130);
    ck_assert_ptr_nonnull(strstr(json, "\"interrupted\": true"));
    ck_assert_int_gt(json_number(json, "requests"), 0);
    ck_assert_int_eq(json_number(json, "total"), 0);
    ck_assert_int_eq(server_stop(&s, NULL, 0), 0);
}
END_TEST

Suite *servers_suite(void)
{
    load_models();
    Suite *s = suite_create("servers");
    TCase *t = tcase_create("every model");
    tcase_set_timeout(t, 60);
    tcase_add_loop_test(t, echo_sizes, 0, N_MODELS);
    tcase_add_loop_test(t, pipelined_in_pieces, 0, N_MODELS);
    tcase_add_loop_test(t, concurrent_connections, 0, N_MODELS);
    tcase_add_loop_test(t, line_mode, 0, N_MODELS);
    tcase_add_loop_test(t, malformed_requests, 0, N_MODELS);
    tcase_add_loop_test(t, max_conns, 0, N_MODELS);
    tcase_add_loop_test(t, max_conns_burst, 0, N_MODELS);
    tcase_add_loop_test(t, out_of_descriptors, 0, N_MODELS);
    tcase_add_loop_test(t, two_thousand_connections, 0, N_MODELS);
    tcase_add_loop_test(t, fd_setsize_refused, 0, N_MODELS);
    tcase_add_loop_test(t, background_work, 0, N_MODELS);
    tcase_add_loop_test(t, half_close_gets_every_reply, 0, N_MODELS);
    tcase_add_loop_test(t, stats_add_up, 0, N_MODELS);
    tcase_add_loop_test(t, sigterm_exits_with_stats, 0, N_MODELS);
    tcase_add_loop_test(t, loadgen_run, 0, N_MODELS);
    tcase_add_loop_test(t, loadgen_shows_unserved, 0, N_MODELS);
    suite_add_tcase(s, t);
    TCase *lg = tcase_create("loadgen");
    tcase_set_timeout(lg, 60);
    tcase_add_test(lg, loadgen_sigint_still_reports);
    suite_add_tcase(s, lg);
    return s;
}
