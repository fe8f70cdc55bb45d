/* test_timeouts.c - slow clients: --idle-timeout and --frame-timeout, for every model of
 * tests/models.list (a Check loop test each). The timeouts are short (0.5 s) so that the
 * tests take seconds; they check what happens, never how soon: every wait is a hang guard. */
#include "helpers.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suites.h"

static const struct test_model *models;
static int n_models;

/* Read the reply a timed-out connection gets: status TIMEOUT, a one-line reason containing
 * `says`; then the connection must close. */
static void expect_timeout_reply(int fd, const char *says)
{
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *reason;
    ck_assert_msg(read_reply(fd, &h, &st, &reason) == 0, "no timeout reply");
    ck_assert_uint_eq(h.magic, PROTO_MAGIC);
    ck_assert_msg(h.flags == PROTO_ERR_TIMEOUT, "status %u, not TIMEOUT", h.flags);
    ck_assert_str_eq(proto_status_name(h.flags), "timeout");
    ck_assert_msg(strstr((char *)reason, says) != NULL && strchr((char *)reason, '\n') == NULL,
                  "reason \"%s\"", (char *)reason);
    free(reason);
    ck_assert_msg(expect_closed(fd), "connection left open after the timeout reply");
}

/* Send the bytes one at a time, gap_ms apart, until all are sent or the server has answered
 * (then stop: a byte sent after its close() could reset the connection before the reply is
 * read). Returns how many were sent. */
static size_t send_slowly(int fd, const void *bytes, size_t len, int gap_ms)
{
    const uint8_t *p = bytes;
    size_t i = 0;
    while (i < len) {
        ck_assert_int_eq(send(fd, p + i, 1, MSG_NOSIGNAL), 1);
        i++;
        if (readable_within(fd, gap_ms))
            break;
    }
    return i;
}

static void check_log(const struct test_server *s, const char *says)
{
    char log[8192];
    server_log(s, log, sizeof log);
    ck_assert_msg(strstr(log, says) != NULL, "\"%s\" is not in the log:\n%s", says, log);
}

/* Case 1: an idle connection is told and closed; one that sends a request every 100 ms over
 * the same span is never closed and gets every reply. */
START_TEST(idle_closed_active_served)
{
    const struct test_model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--idle-timeout", "0.5", NULL};
    server_spawn(&s, m->name, args);
    int active = client_connect(s.port);
    check_echo(active, 0, "first", 5); /* the iterative server is serving this one now */
    int idle = client_connect(s.port);
    /* At least 1 s (two timeouts), and on until the idle one has been told; the iterative
     * server does not accept the idle one meanwhile: it waits in the listen queue, its clock
     * not yet started, so there the active one goes on for the whole 1 s. */
    uint32_t seq = 1;
    for (; seq <= 10 || (!m->iterative && !readable_within(idle, 0)); seq++) {
        ck_assert_msg(seq < 100, "the idle connection was not closed");
        ck_assert_msg(!readable_within(active, 100), "the active connection got unasked bytes");
        check_echo(active, seq, &seq, sizeof seq);
    }
    if (m->iterative) {
        ck_assert_msg(!readable_within(idle, 0), "the iterative server served two at once");
        close(active); /* now the server accepts the idle one, which then times out */
        expect_timeout_reply(idle, "idle for 0.5 s");
    } else {
        expect_timeout_reply(idle, "idle for 0.5 s");
        check_echo(active, seq, "still", 5); /* untouched */
        close(active);
    }
    close(idle);
    check_log(&s, "idle for 0.5 s (--idle-timeout); closing the connection");
    /* Case 3: STATS counts it (the STATS client is the only one left, and not idle). */
    char *text = server_stats_when(s.port, "errors_timeout", 1);
    ck_assert_int_eq(stats_value(text, "errors_timeout"), 1);
    ck_assert_int_eq(stats_value(text, "frames"), (long long)seq + (m->iterative ? 0 : 1));
    free(text);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "errors_timeout"), 1);
}
END_TEST

/* Case 2: a frame, or a line, sent a byte every 200 ms is not complete within 0.5 s: the
 * sender is told (status TIMEOUT, or an ERR line) and closed, though it is never idle. So is
 * a frame whose payload comes a byte every 50 ms: more often than the server looks (every
 * 125 ms with these timeouts), yet the frame is never whole in time. */
START_TEST(slow_request_closed)
{
    const struct test_model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--frame-timeout", "0.5", "--idle-timeout", "60", NULL};
    server_spawn(&s, m->name, args);

    int fd = client_connect(s.port);
    check_echo(fd, 1, "whole", 5); /* a whole frame first: only the slow one is refused */
    uint8_t header[PROTO_HEADER_SIZE];
    proto_write_request_header(header, PROTO_ECHO, 2, 0);
    ck_assert_uint_lt(send_slowly(fd, header, sizeof header, 200), sizeof header);
    expect_timeout_reply(fd, "frame not complete within 0.5 s");
    close(fd);

    fd = client_connect(s.port);
    uint8_t *payload = test_random_bytes(100, 5);
    proto_write_request_header(header, PROTO_ECHO, 3, 100);
    send_all(fd, header, sizeof header);
    ck_assert_uint_lt(send_slowly(fd, payload, 100, 50), 100);
    free(payload);
    expect_timeout_reply(fd, "frame not complete within 0.5 s");
    close(fd);
    check_log(&s, "frame not complete within 0.5 s (--frame-timeout)");

    fd = client_connect(s.port);
    const char *line = "a line typed one key at a time\n";
    ck_assert_uint_lt(send_slowly(fd, line, strlen(line), 200), strlen(line));
    const char *err = "ERR line not complete within 0.5 s (--frame-timeout): closing\n";
    char got[128] = {0};
    ck_assert_int_eq(recv_exact(fd, got, strlen(err)), 0);
    ck_assert_str_eq(got, err);
    ck_assert_msg(expect_closed(fd), "line connection left open after the timeout line");
    close(fd);

    /* Case 3: all three counted. The server still serves. */
    char *text = server_stats_when(s.port, "errors_timeout", 3);
    ck_assert_int_eq(stats_value(text, "errors_timeout"), 3);
    free(text);
    expect_served_soon(s.port);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "errors_timeout"), 3);
    ck_assert_int_eq(stats_value(out, "errors_truncated"), 0); /* dropped, not "truncated" */
}
END_TEST

/* --work: the waits return at once, and the sweeps must still come. Also: 0 turns a timeout
 * off, so a frame begun and left half sent is not closed, idle though it looks. */
START_TEST(work_and_zero)
{
    const struct test_model *m = &models[_i];
    struct test_server s;
    const char *const args[] = {"--work", "--idle-timeout", "0.5", "--frame-timeout", "0", NULL};
    server_spawn(&s, m->name, args);
    int idle = client_connect(s.port); /* first: the iterative server serves it first */
    int half = client_connect(s.port);
    uint8_t frame[PROTO_HEADER_SIZE + 4];
    proto_write_request_header(frame, PROTO_ECHO, 9, 4);
    memcpy(frame + PROTO_HEADER_SIZE, "half", 4);
    send_all(half, frame, 7);
    expect_timeout_reply(idle, "idle for 0.5 s");
    close(idle);
    ck_assert_msg(!readable_within(half, 600), "a half-sent frame was answered or closed");
    send_all(half, frame + 7, sizeof frame - 7);
    check_echo_reply(half, 9, "half", 4);
    close(half);
    char out[4096];
    ck_assert_int_eq(server_stop(&s, out, sizeof out), 0);
    ck_assert_int_eq(stats_value(out, "errors_timeout"), 1);
    ck_assert_int_gt(stats_value(out, "work_units"), 0);
}
END_TEST

/* Run build/<model> with these arguments; its exit status, and its stdout and stderr in out. */
static int run_server(const char *model, const char *const *args, char *out, size_t size)
{
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (dup2(pipefd[1], 1) < 0 || dup2(pipefd[1], 2) < 0)
            _exit(127);
        const char *argv[8] = {build_path(model)};
        for (int i = 0; args[i] != NULL && i < 6; i++)
            argv[i + 1] = args[i];
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && readable_within(pipefd[0], TEST_IO_TIMEOUT_S * 1000) &&
           (r = read(pipefd[0], out + n, size - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(pipefd[0]);
    int status = wait_exit(pid, TEST_IO_TIMEOUT_S);
    return status;
}

/* Case 4: --help shows both options and their defaults; a bad value is refused. */
START_TEST(help_shows_defaults)
{
    const struct test_model *m = &models[_i];
    char out[8192];
    const char *const help[] = {"--help", NULL};
    ck_assert_int_eq(run_server(m->name, help, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--idle-timeout SECS") != NULL, "help: %s", out);
    ck_assert_msg(strstr(out, "(default 60; 0: never)") != NULL, "help: %s", out);
    ck_assert_msg(strstr(out, "--frame-timeout SECS") != NULL, "help: %s", out);
    ck_assert_msg(strstr(out, "(default 10; 0: no limit)") != NULL, "help: %s", out);
    const char *const bad[] = {"-p", "0", "--frame-timeout", "-1", NULL};
    ck_assert_int_eq(run_server(m->name, bad, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--frame-timeout must be a number of seconds") != NULL, "%s", out);
}
END_TEST

Suite *timeouts_suite(void)
{
    n_models = test_models_load(&models);
    Suite *s = suite_create("timeouts");
    TCase *t = tcase_create("every model");
    tcase_set_timeout(t, 60);
    tcase_add_loop_test(t, idle_closed_active_served, 0, n_models);
    tcase_add_loop_test(t, slow_request_closed, 0, n_models);
    tcase_add_loop_test(t, work_and_zero, 0, n_models);
    tcase_add_loop_test(t, help_shows_defaults, 0, n_models);
    suite_add_tcase(s, t);
    return s;
}
