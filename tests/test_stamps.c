/* test_stamps.c - --no-stamps, for every model of tests/models.list (a Check loop test each):
 * with it every stamp of every reply is 0, the echoes are still byte for byte, STATS says
 * stamps=0, and the timeouts, which keep a clock of their own, still fire; without it the
 * stamps are there, as the model's stamp style says. The checks are about what the replies
 * hold, never how long anything took: every wait is a hang guard. */
#include "helpers.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "suites.h"

static const struct test_model *models;
static int n_models;

static int all_zero(const struct proto_stamps *st)
{
    return st->wait == 0 && st->arrive == 0 && st->ready == 0 && st->copy_begin == 0 &&
           st->copy_end == 0 && st->reply == 0;
}

/* Read one reply: status `status`, this seq and, if payload is not NULL, this payload byte for
 * byte; every stamp 0. Returns the payload (malloc'd, NUL-terminated) for more checks. */
static uint8_t *expect_unstamped(int fd, const struct test_model *m, uint8_t status, uint32_t seq,
                                 const void *payload, uint32_t len)
{
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *back;
    ck_assert_msg(read_reply(fd, &h, &st, &back) == 0, "%s: no reply to seq %u", m->name, seq);
    ck_assert_uint_eq(h.magic, PROTO_MAGIC);
    ck_assert_msg(h.flags == status, "%s: status %u, not %u", m->name, h.flags, status);
    ck_assert_uint_eq(h.seq, seq);
    if (payload != NULL) {
        ck_assert_uint_eq(h.len, len);
        ck_assert_msg(len == 0 || memcmp(back, payload, len) == 0, "%s: echo of %u bytes differs",
                      m->name, len);
    }
    ck_assert_msg(all_zero(&st), "%s --no-stamps: stamps %llu %llu %llu %llu %llu %llu, not all 0",
                  m->name, (unsigned long long)st.wait, (unsigned long long)st.arrive,
                  (unsigned long long)st.ready, (unsigned long long)st.copy_begin,
                  (unsigned long long)st.copy_end, (unsigned long long)st.reply);
    return back;
}

static void echo_unstamped(int fd, const struct test_model *m, uint32_t seq, const void *payload,
                           uint32_t len)
{
    send_frame(fd, PROTO_ECHO, seq, payload, len);
    free(expect_unstamped(fd, m, PROTO_OK, seq, payload, len));
}

/* Case 1: with --no-stamps, every reply's stamps are 0 (echoes of every size, pipelined ones,
 * a frame in pieces, STATS, an error reply) and every echo is byte for byte. */
START_TEST(no_stamps_all_zero)
{
    const struct test_model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--no-stamps", NULL};
    server_spawn(&s, m->name, args);
    int fd = client_connect(s.port);
    const uint32_t sizes[] = {0, 1, 100, 4096, 70000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *payload = test_random_bytes(sizes[i], (unsigned)i + 1);
        echo_unstamped(fd, m, (uint32_t)i, payload, sizes[i]);
        free(payload);
    }
    /* Three requests in one send: one read completes them all. */
    uint8_t three[3 * (PROTO_HEADER_SIZE + 3)];
    for (uint32_t i = 0; i < 3; i++) {
        proto_write_request_header(three + i * (PROTO_HEADER_SIZE + 3), PROTO_ECHO, 100 + i, 3);
        memcpy(three + i * (PROTO_HEADER_SIZE + 3) + PROTO_HEADER_SIZE, "abc", 3);
    }
    send_all(fd, three, sizeof three);
    for (uint32_t i = 0; i < 3; i++)
        free(expect_unstamped(fd, m, PROTO_OK, 100 + i, "abc", 3));
    /* A frame in two pieces, 50 ms apart: two reads. */
    uint8_t piece[PROTO_HEADER_SIZE + 8];
    proto_write_request_header(piece, PROTO_ECHO, 200, 8);
    memcpy(piece + PROTO_HEADER_SIZE, "in two!!", 8);
    send_all(fd, piece, 7);
    ck_assert(!readable_within(fd, 50));
    send_all(fd, piece + 7, sizeof piece - 7);
    free(expect_unstamped(fd, m, PROTO_OK, 200, "in two!!", 8));
    /* STATS: unstamped too, and it says so. */
    send_frame(fd, PROTO_STATS, 300, NULL, 0);
    uint8_t *text = expect_unstamped(fd, m, PROTO_OK, 300, NULL, 0);
    ck_assert_msg(stats_value((char *)text, "stamps") == 0, "STATS: %s", (char *)text);
    ck_assert_int_ge(stats_value((char *)text, "frames"), 10);
    free(text);
    close(fd);
    /* An error reply (unknown type) carries the stamps of its read: 0 as well. */
    fd = client_connect(s.port);
    send_frame(fd, 9, 400, "x", 1);
    free(expect_unstamped(fd, m, PROTO_ERR_UNKNOWN_TYPE, 400, NULL, 0));
    ck_assert(expect_closed(fd));
    close(fd);
    char out[8192];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_msg(strstr(out, " stamps=0 ") != NULL, "exit line: %s", out);
}
END_TEST

/* Case 2: without --no-stamps the stamps are there, as tests/models.list says of the model
 * (test_servers.c checks their order in detail; a completion or library model does not see the
 * copy), and STATS says stamps=1. */
START_TEST(stamps_by_default)
{
    const struct test_model *m = &models[_i];
    struct test_server s;
    server_spawn(&s, m->name, NULL);
    int fd = client_connect(s.port);
    for (uint32_t seq = 0; seq < 5; seq++) {
        send_frame(fd, PROTO_ECHO, seq, "stamped", 7);
        struct proto_header h;
        struct proto_stamps st;
        uint8_t *back;
        ck_assert_msg(read_reply(fd, &h, &st, &back) == 0, "%s: no reply", m->name);
        ck_assert_uint_eq(h.flags, PROTO_OK);
        ck_assert_uint_eq(h.len, 7);
        ck_assert_mem_eq(back, "stamped", 7);
        free(back);
        ck_assert_msg(st.wait != 0 && st.ready != 0 && st.reply != 0, "%s: a stamp is 0", m->name);
        ck_assert_uint_le(st.wait, st.ready);
        ck_assert_uint_le(st.ready, st.reply);
        if (strcmp(m->stamps, "completion") == 0 || strcmp(m->stamps, "library") == 0) {
            ck_assert_uint_eq(st.copy_begin, 0);
            ck_assert_uint_eq(st.copy_end, 0);
        } else {
            ck_assert_msg(st.copy_begin != 0 && st.copy_end != 0, "%s: copy stamp 0", m->name);
            ck_assert_uint_le(st.copy_begin, st.copy_end);
        }
        if (m->arrival)
            ck_assert_msg(st.arrive != 0, "%s: no arrival stamp", m->name);
        else
            ck_assert_uint_eq(st.arrive, 0);
    }
    close(fd);
    char *text = server_stats(s.port);
    ck_assert_msg(stats_value(text, "stamps") == 1, "STATS: %s", text);
    free(text);
    char out[8192];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
}
END_TEST

/* Case 3: the timeouts keep their own clock: with --no-stamps an idle connection and one whose
 * frame stalls are told (status TIMEOUT, stamps 0) and closed, while one that sends a request
 * every 0.4 s for 2.8 s (nearly three timeouts) is served throughout. The iterative model
 * serves one connection at a time: for it the idle and stalled ones come after. */
START_TEST(no_stamps_timeouts_fire)
{
    const struct test_model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--no-stamps", "--idle-timeout", "1", "--frame-timeout", "1", NULL};
    server_spawn(&s, m->name, args);
    uint8_t half[PROTO_HEADER_SIZE];
    proto_write_request_header(half, PROTO_ECHO, 7, 100);
    int active = client_connect(s.port), idle = -1, stalled = -1;
    echo_unstamped(active, m, 0, "first", 5);
    if (!m->iterative) {
        idle = client_connect(s.port);
        stalled = client_connect(s.port);
        send_all(stalled, half, sizeof half); /* and none of the 100 payload bytes */
    }
    for (uint32_t seq = 1; seq <= 7; seq++) {
        ck_assert_msg(!readable_within(active, 400), "%s: unasked bytes", m->name);
        echo_unstamped(active, m, seq, &seq, sizeof seq);
    }
    if (m->iterative) {
        close(active);
        active = -1;
        idle = client_connect(s.port);
    }
    free(expect_unstamped(idle, m, PROTO_ERR_TIMEOUT, 0, NULL, 0));
    ck_assert(expect_closed(idle));
    if (m->iterative) {
        stalled = client_connect(s.port);
        send_all(stalled, half, sizeof half);
    }
    uint8_t *reason = expect_unstamped(stalled, m, PROTO_ERR_TIMEOUT, 0, NULL, 0);
    ck_assert_msg(strstr((char *)reason, "frame not complete within 1 s") != NULL, "%s: %s",
                  m->name, (char *)reason);
    free(reason);
    ck_assert(expect_closed(stalled));
    if (active >= 0) {
        echo_unstamped(active, m, 8, "still here", 10);
        close(active);
    }
    close(idle);
    close(stalled);
    char *text = server_stats_when(s.port, "errors_timeout", 2);
    ck_assert_msg(stats_value(text, "errors_timeout") == 2, "%s: %s", m->name, text);
    free(text);
    char out[8192];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
}
END_TEST

Suite *stamps_suite(void)
{
    n_models = test_models_load(&models);
    Suite *s = suite_create("stamps");
    TCase *t = tcase_create("every model");
    tcase_set_timeout(t, 60);
    tcase_add_loop_test(t, no_stamps_all_zero, 0, n_models);
    tcase_add_loop_test(t, stamps_by_default, 0, n_models);
    tcase_add_loop_test(t, no_stamps_timeouts_fire, 0, n_models);
    suite_add_tcase(s, t);
    return s;
}
