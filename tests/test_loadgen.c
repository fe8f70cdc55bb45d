/* test_loadgen.c - loadgen against servers that misbehave on purpose, and its -t, --raw and
 * --server-pid against build/epoll and a plain echo server, and the baseline client.
 *
 * Each test starts a small bad server (a forked child of the test, listening on 127.0.0.1
 * port 0, one blocking thread per connection) that breaks the protocol in one way, runs
 * build/loadgen against it with short -d and --timeout, and checks that loadgen noticed:
 * the exit status, the one error counter in its JSON that names the fault (and no other),
 * a valid JSON file, no crash, no sanitizer report, and no hang (HANG_GUARD_S). */
#include "helpers.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suites.h"

#define HANG_GUARD_S 20 /* loadgen runs for about 2 s here; this long means it hung */

enum fault {
    FLIP_BYTE,         /* echoes with one payload byte flipped */
    WRONG_SEQ,         /* replies with seq + 1 */
    BAD_MAGIC,         /* replies with a garbage header */
    HUGE_LEN,          /* a reply header with len 0x7FFFFFFF, then nothing more */
    CLOSE_AFTER_FIRST, /* answers the first request, then closes */
    NEVER_REPLY,       /* reads every request and answers none */
    GO_SILENT,         /* answers until the first STATS (the window opens), then nothing */
    SERVER_FULL,       /* status 4 with a reason, right after accept */
    ERROR_STATUS,      /* status 2 (unknown type) to the first request */
    ONE_BYTE_PIECES,   /* correct replies, one byte per send() */
    GARBAGE_STATS,     /* correct echoes; STATS answered with garbage text */
    RAW_ECHO,          /* no frames: a plain TCP echo server (for --raw) */
    RAW_FLIP,          /* the same, with the 100th byte of each connection's stream flipped */
};

static const char *const fault_name[] = {
    "flip_byte",     "wrong_seq", "bad_magic",   "huge_len",     "close_after_first",
    "never_reply",   "go_silent", "server_full", "error_status", "one_byte_pieces",
    "garbage_stats", "raw_echo",  "raw_flip",
};

/* ---- the bad server (runs in the forked child) ------------------------------------------ */

static enum fault fault;
static unsigned requests_served;
static struct timespec started;

/* Send len bytes, all at once or (ONE_BYTE_PIECES) one byte per send() with a pause, so
 * that loadgen's reads see every split of a reply. */
static int send_reply_bytes(int fd, const uint8_t *p, size_t len)
{
    size_t piece = fault == ONE_BYTE_PIECES ? 1 : len;
    while (len > 0) {
        ssize_t n = send(fd, p, len < piece ? len : piece, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        if (fault == ONE_BYTE_PIECES) {
            struct timespec pause = {0, 300000};
            nanosleep(&pause, NULL);
        }
    }
    return 0;
}

static int send_reply(int fd, uint8_t type, uint8_t status, uint32_t seq, const void *payload,
                      uint32_t len)
{
    uint8_t *out = malloc(PROTO_REPLY_PREFIX_SIZE + (size_t)len);
    if (out == NULL)
        return -1;
    struct proto_stamps st = {0}; /* 0 = unknown: loadgen shows these phases as n/a */
    proto_write_reply_prefix(out, type, status, seq, len, &st);
    if (len)
        memcpy(out + PROTO_REPLY_PREFIX_SIZE, payload, len);
    int rc = send_reply_bytes(fd, out, PROTO_REPLY_PREFIX_SIZE + (size_t)len);
    free(out);
    return rc;
}

/* The STATS text a sane server sends: enough keys for loadgen's server figures. */
static uint32_t stats_text(char *out, size_t size)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long us =
        (now.tv_sec - started.tv_sec) * 1000000LL + (now.tv_nsec - started.tv_nsec) / 1000;
    int n = snprintf(out, size, "model=%s\nrequests=%u\nelapsed_us=%lld\n", fault_name[fault],
                     __atomic_load_n(&requests_served, __ATOMIC_RELAXED), us);
    return (uint32_t)n;
}

/* Text that is not key=value lines: keys that need JSON escaping, control bytes, values that
 * are not numbers, an overlong line, and random bytes (NULs and '=' among them). */
static uint32_t garbage_text(uint8_t *out, size_t size)
{
    static const char lines[] = "\"quoted\"=1\nback\\slash=2\nctl\x01key=3\n=4\nspace key=5\n"
                                "model=\x1b[31mred\nmodel\nrequests=lots\nelapsed_us=\n"
                                "connections=12abc\nno equals sign here\n";
    size_t n = sizeof lines - 1;
    memcpy(out, lines, n);
    memset(out + n, 'k', 5000);
    n += 5000;
    out[n++] = '=';
    out[n++] = '7';
    out[n++] = '\n';
    uint32_t x = 12345;
    while (n < size) {
        x = x * 1103515245u + 12345u;
        out[n++] = (uint8_t)(x >> 16);
    }
    return (uint32_t)n;
}

/* After an error reply: send FIN, read until the peer closes, then close (no reset that
 * could destroy the reply). */
static void close_gracefully(int fd)
{
    char sink[4096];
    shutdown(fd, SHUT_WR);
    while (recv(fd, sink, sizeof sink, 0) > 0)
        ;
    close(fd);
}

/* A plain echo server's connection: bytes back as they come (RAW_FLIP: one of them changed). */
static void serve_raw(int fd)
{
    uint8_t buf[4096];
    size_t offset = 0; /* of buf[0] in the stream */
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (fault == RAW_FLIP && offset <= 99 && 99 < offset + (size_t)n)
            buf[99 - offset] ^= 0x20;
        offset += (size_t)n;
        if (send_reply_bytes(fd, buf, (size_t)n) < 0)
            break;
    }
    close(fd);
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    if (fault == RAW_ECHO || fault == RAW_FLIP) {
        serve_raw(fd);
        return NULL;
    }
    if (fault == SERVER_FULL) {
        static const char reason[] = "too many connections (--max-conns)";
        send_reply(fd, 0, PROTO_ERR_SERVER_FULL, 0, reason, sizeof reason - 1);
        close_gracefully(fd);
        return NULL;
    }
    uint8_t h[PROTO_HEADER_SIZE];
    uint8_t *payload = NULL;
    bool silent = fault == NEVER_REPLY;
    for (unsigned n = 0;; n++) {
        if (recv_exact(fd, h, sizeof h) < 0)
            break;
        uint8_t type = h[2];
        uint32_t seq = proto_get_u32(h + 4), len = proto_get_u32(h + 8);
        if (len > (1u << 20))
            break;
        uint8_t *p = realloc(payload, len ? len : 1);
        if (p == NULL)
            break;
        payload = p;
        if (recv_exact(fd, payload, len) < 0)
            break;
        __atomic_fetch_add(&requests_served, 1, __ATOMIC_RELAXED);
        if (silent)
            continue;
        if (fault == ERROR_STATUS) {
            static const char reason[] = "unknown request type";
            send_reply(fd, type, PROTO_ERR_UNKNOWN_TYPE, seq, reason, sizeof reason - 1);
            close_gracefully(fd);
            fd = -1;
            break;
        }
        uint8_t text[8192];
        const uint8_t *body = payload;
        uint32_t body_len = len;
        if (type == PROTO_STATS) {
            body = text;
            body_len = fault == GARBAGE_STATS ? garbage_text(text, sizeof text)
                                              : stats_text((char *)text, sizeof text);
        } else if (fault == FLIP_BYTE && len > 0) {
            payload[len / 2] ^= 0x01;
        }
        if (fault == BAD_MAGIC || fault == HUGE_LEN) {
            uint8_t prefix[PROTO_REPLY_PREFIX_SIZE];
            struct proto_stamps st = {0};
            proto_write_reply_prefix(prefix, type, PROTO_OK, seq,
                                     fault == HUGE_LEN ? 0x7FFFFFFFu : body_len, &st);
            if (fault == BAD_MAGIC)
                memcpy(prefix, "GARBAGE!", 8);
            if (send_reply_bytes(fd, prefix, sizeof prefix) < 0)
                break;
            continue; /* and wait: loadgen must not wait for the 2 GiB that never come */
        }
        if (send_reply(fd, type, PROTO_OK, fault == WRONG_SEQ ? seq + 1 : seq, body, body_len) < 0)
            break;
        if (fault == CLOSE_AFTER_FIRST && n == 0)
            break;
        if (fault == GO_SILENT && type == PROTO_STATS)
            silent = true;
    }
    free(payload);
    if (fd >= 0)
        close(fd);
    return NULL;
}

struct bad_server {
    pid_t pid;
    int port;
};

static void bad_server_start(struct bad_server *s, enum fault f)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(lfd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(lfd, 64), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
    pid_t parent = getpid();
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave it behind */
        if (getppid() != parent)
            _exit(127);
        fault = f;
        clock_gettime(CLOCK_MONOTONIC, &started);
        for (;;) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                _exit(1);
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            pthread_t t;
            if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0)
                _exit(1);
            pthread_detach(t);
        }
    }
    close(lfd);
}

static void bad_server_stop(struct bad_server *s)
{
    kill(s->pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(s->pid, &status, 0), s->pid);
}

/* ---- running loadgen ------------------------------------------------------------------ */

struct run {
    int status; /* exit status */
    char json[65536];
    char out[8192];  /* stdout: the summary */
    char err[16384]; /* stderr: the complaints */
};

static void slurp(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(out, 1, size - 1, f);
        fclose(f);
    }
    out[n] = '\0';
    unlink(path);
}

/* Run build/loadgen -p PORT -q --json FILE with the test's arguments. Fails the test if it
 * crashes, hangs, trips a sanitizer, or writes JSON that jq cannot read. */
static void run_loadgen(int port, const char *const *args, struct run *r)
{
    char json[64], out[64], err[64], port_s[16];
    snprintf(json, sizeof json, "/tmp/iomodels-lgtest-%d.json", (int)getpid());
    snprintf(out, sizeof out, "/tmp/iomodels-lgtest-%d.out", (int)getpid());
    snprintf(err, sizeof err, "/tmp/iomodels-lgtest-%d.err", (int)getpid());
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *argv[32] = {build_path("loadgen"), "-p", port_s, "-q", "--json", json};
    int argc = 6;
    for (int i = 0; args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    unlink(json);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (freopen(out, "w", stdout) == NULL || freopen(err, "w", stderr) == NULL)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    for (int i = 0;; i++) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        ck_assert_int_ge(w, 0);
        if (w == pid)
            break;
        if (i >= HANG_GUARD_S * 100) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("loadgen still running after %d s: it hung", HANG_GUARD_S);
        }
        struct timespec tick = {0, 10000000};
        nanosleep(&tick, NULL);
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "jq -e . '%s' >/dev/null 2>&1", json);
    int jq = system(cmd);
    slurp(json, r->json, sizeof r->json);
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
    ck_assert_msg(!WIFSIGNALED(status), "loadgen crashed: signal %d; stderr:\n%s",
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, r->err);
    r->status = WEXITSTATUS(status);
    ck_assert_msg(strstr(r->err, "Sanitizer") == NULL && strstr(r->err, "runtime error") == NULL,
                  "sanitizer report:\n%s", r->err);
    ck_assert_msg(r->json[0] != '\0', "loadgen (exit %d) wrote no JSON; stderr:\n%s", r->status,
                  r->err);
    ck_assert_msg(WIFEXITED(jq) && WEXITSTATUS(jq) == 0,
                  "jq cannot read loadgen's JSON (jq missing? make deps):\n%s", r->json);
}

/* The number after "key": in the JSON: a top-level key if within is NULL, else the first one
 * after the first occurrence of `within`. */
static long long json_number(const char *json, const char *within, const char *key)
{
    const char *from = within ? strstr(json, within) : json;
    ck_assert_msg(from != NULL, "no %s in the loadgen JSON:\n%s", within, json);
    char quoted[64]; /* top level: "requests" is also a key of "config" */
    snprintf(quoted, sizeof quoted, within ? "\"%s\": " : "\n  \"%s\": ", key);
    const char *p = strstr(from, quoted);
    ck_assert_msg(p != NULL, "no %s in the loadgen JSON:\n%s", key, json);
    return atoll(p + strlen(quoted));
}

#define ERRORS  "\"errors\": {"
#define FAIRNES "\"fairness\": {"

/* A short run. --timeout is 1 s where a stall is the point, and 5 s elsewhere, so that a busy
 * machine cannot turn a slow reply into a stall. */
#define SHORT_RUN "-d", "0.5", "--warmup", "0.2"

/* Run loadgen against a server with fault f; expect exit status 1 and exactly one kind of
 * error, counted in `counter`. Returns that count. */
static long long expect_error(enum fault f, const char *conns, const char *counter, struct run *r)
{
    struct bad_server s;
    bad_server_start(&s, f);
    const char *timeout = strcmp(counter, "stalled") == 0 ? "1" : "5";
    const char *const args[] = {"-c", conns, SHORT_RUN, "--timeout", timeout, NULL};
    run_loadgen(s.port, args, r);
    bad_server_stop(&s);
    ck_assert_msg(r->status == 1, "%s: exit status %d, not 1; stdout:\n%s\nstderr:\n%s",
                  fault_name[f], r->status, r->out, r->err);
    long long n = json_number(r->json, ERRORS, counter);
    ck_assert_msg(n > 0, "%s: %s is 0:\n%s", fault_name[f], counter, r->json);
    ck_assert_msg(json_number(r->json, ERRORS, "total") == n, "%s: other errors counted too:\n%s",
                  fault_name[f], r->json);
    ck_assert_ptr_nonnull(strstr(r->out, "ERRORS: "));
    return n;
}

START_TEST(flipped_byte_is_payload_mismatch)
{
    /* The connection is kept: every echo is checked and counted, and none is measured. */
    struct run r;
    ck_assert_int_ge(expect_error(FLIP_BYTE, "2", "payload_mismatch", &r), 2);
    ck_assert_int_eq(json_number(r.json, NULL, "requests"), 0);
    ck_assert_int_eq(json_number(r.json, FAIRNES, "never_served"), 2);
    /* thousands of bad echoes: only the first five are printed */
    int lines = 0;
    for (const char *p = r.err; (p = strstr(p, "echoed payload differs")) != NULL; p++)
        lines++;
    ck_assert_int_eq(lines, 5);
    ck_assert_ptr_nonnull(strstr(r.err, "more of these not shown"));
}
END_TEST

START_TEST(wrong_seq_is_seq_mismatch)
{
    struct run r;
    ck_assert_int_eq(expect_error(WRONG_SEQ, "1", "seq_mismatch", &r), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "reply seq 2 type 1, expected seq 1 type 1"));
}
END_TEST

START_TEST(garbage_header_is_bad_header)
{
    struct run r;
    ck_assert_int_eq(expect_error(BAD_MAGIC, "1", "bad_header", &r), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "malformed reply header"));
}
END_TEST

START_TEST(huge_len_is_bad_header)
{
    /* loadgen must refuse the header at once, not wait for (or allocate) 2 GiB. */
    struct run r;
    ck_assert_int_eq(expect_error(HUGE_LEN, "1", "bad_header", &r), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "malformed reply header"));
}
END_TEST

START_TEST(early_close_is_closed_by_server)
{
    /* The first reply was correct, so the connection was served once. */
    struct run r;
    ck_assert_int_eq(expect_error(CLOSE_AFTER_FIRST, "1", "closed_by_server", &r), 1);
    ck_assert_int_eq(json_number(r.json, FAIRNES, "never_served"), 0);
    ck_assert_ptr_nonnull(strstr(r.err, "the server closed it"));
}
END_TEST

START_TEST(no_reply_is_stalled)
{
    /* The wait for the last replies (--timeout after the window) runs out before the
     * once-a-second stall check comes round: the stall must be counted then, not reported
     * as a clean run with one connection "never served". */
    struct bad_server s;
    bad_server_start(&s, NEVER_REPLY);
    const char *const args[] = {"-c",  "1",         "-d",  "0.1", "--warmup",
                                "0.1", "--timeout", "1.5", NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    bad_server_stop(&s);
    ck_assert_msg(r.status == 1, "exit %d; stdout:\n%s", r.status, r.out);
    ck_assert_int_eq(json_number(r.json, ERRORS, "stalled"), 1);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 1);
    ck_assert_int_eq(json_number(r.json, NULL, "requests"), 0);
    ck_assert_ptr_nonnull(strstr(r.err, "no reply for 1.5 s: giving up"));
}
END_TEST

START_TEST(silence_late_in_the_window_is_stalled)
{
    /* Served at first, silent from the start of the window on: the stall is counted, and
     * the window's replies are still reported. */
    struct run r;
    ck_assert_int_eq(expect_error(GO_SILENT, "1", "stalled", &r), 1);
    ck_assert_int_eq(json_number(r.json, FAIRNES, "never_served"), 0);
    ck_assert_ptr_nonnull(strstr(r.err, "no reply for 1.0 s: giving up"));
}
END_TEST

START_TEST(no_reply_in_a_long_window_is_stalled)
{
    /* The stall timeout fires inside the window and ends it early. */
    struct bad_server s;
    bad_server_start(&s, NEVER_REPLY);
    const char *const args[] = {"-c", "2", "-d", "60", "--warmup", "0.2", "--timeout", "1", NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    bad_server_stop(&s);
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_eq(json_number(r.json, ERRORS, "stalled"), 1);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "no reply for 1.0 s: giving up"));
}
END_TEST

START_TEST(server_full_is_refused_with_reason)
{
    struct run r;
    ck_assert_int_eq(expect_error(SERVER_FULL, "1", "refused", &r), 1);
    ck_assert_ptr_nonnull(
        strstr(r.json, "\"refusal_reason\": \"too many connections (--max-conns)\""));
    ck_assert_int_eq(json_number(r.json, FAIRNES, "never_served"), 1);
    ck_assert_ptr_nonnull(strstr(r.out, "told \"server full\": too many connections"));
}
END_TEST

START_TEST(error_status_is_error_reply)
{
    struct run r;
    ck_assert_int_eq(expect_error(ERROR_STATUS, "1", "error_replies", &r), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "error reply (unknown type): unknown request type"));
}
END_TEST

START_TEST(replies_in_one_byte_pieces_are_correct)
{
    /* Not a fault: a reply may arrive in any number of pieces, the STATS replies too. */
    struct bad_server s;
    bad_server_start(&s, ONE_BYTE_PIECES);
    const char *const args[] = {"-c", "2", SHORT_RUN, "--timeout", "5", NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    bad_server_stop(&s);
    ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 0);
    ck_assert_int_gt(json_number(r.json, NULL, "requests"), 0);
    ck_assert_int_eq(json_number(r.json, FAIRNES, "never_served"), 0);
    ck_assert_ptr_nonnull(strstr(r.json, "\"model\": \"one_byte_pieces\""));
    ck_assert_int_gt(json_number(r.json, "\"server_stats_delta\": {", "requests"), 0);
    /* its STATS text has no CPU time: none is claimed */
    ck_assert_ptr_nonnull(strstr(r.out, "  server: CPU n/a\n"));
}
END_TEST

START_TEST(garbage_stats_text_is_ignored)
{
    /* The echoes are fine, so the run is clean; the STATS text gives no figures, and none
     * of its bytes reach the JSON unescaped. */
    struct bad_server s;
    bad_server_start(&s, GARBAGE_STATS);
    const char *const args[] = {"-c", "1", SHORT_RUN, "--timeout", "5", NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    bad_server_stop(&s);
    ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 0);
    ck_assert_int_gt(json_number(r.json, NULL, "requests"), 0);
    ck_assert_ptr_nonnull(strstr(r.json, "\"model\": \"unknown\""));
    ck_assert_ptr_nonnull(strstr(r.json, "\"server_stats_delta\": {}"));
    ck_assert_ptr_nonnull(strstr(r.json, "\"server_stats_per_request\": {}"));
    ck_assert_ptr_nonnull(strstr(r.out, "loadgen: unknown, 1 connection"));
}
END_TEST

/* ---- -t, --raw, --server-pid and the baseline client ----------------------------------- */

/* The value of a jq expression over JSON text (e.g. the run's JSON), as a number; fails the
 * test if jq gives no number. */
static double jq_number(const char *json, const char *expr)
{
    char path[64], cmd[512];
    snprintf(path, sizeof path, "/tmp/iomodels-lgtest-%d.jq.json", (int)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(json, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "jq -r '%s' '%s'", expr, path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[128] = "";
    char *got = fgets(line, sizeof line, p);
    pclose(p);
    unlink(path);
    char *end;
    double v = got ? strtod(line, &end) : 0;
    ck_assert_msg(got != NULL && end != line, "jq '%s' gave no number (\"%s\") for:\n%s", expr,
                  line, json);
    return v;
}

/* -t N against a real server: one set of figures, the per-thread requests add up, no errors,
 * and the server counted what loadgen counted, give or take the requests in flight at the
 * window's two ends (one per connection at each, in a closed loop). */
static void threads_agree_with_server(const char *threads)
{
    struct test_server s;
    server_spawn(&s, "epoll", NULL);
    const char *const args[] = {"-c", "6", "-t", threads, SHORT_RUN, "--timeout", "5", NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    server_stop(&s, NULL, 0);
    ck_assert_msg(r.status == 0, "-t %s: exit %d; stdout:\n%s\nstderr:\n%s", threads, r.status,
                  r.out, r.err);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 0);
    long long requests = json_number(r.json, NULL, "requests");
    ck_assert_int_gt(requests, 0);
    ck_assert_int_eq((long long)jq_number(r.json, ".client.threads"), atoi(threads));
    ck_assert_int_eq((long long)jq_number(r.json, ".client.per_thread | length"), atoi(threads));
    ck_assert_int_eq((long long)jq_number(r.json, "[.client.per_thread[].requests] | add"),
                     requests);
    ck_assert_int_eq((long long)jq_number(r.json, "[.client.per_thread[].connections] | add"), 6);
    long long srv = (long long)jq_number(r.json, ".server_stats_delta.requests");
    ck_assert_msg(llabs(srv - requests) <= 2 * 6 + 2,
                  "-t %s: loadgen measured %lld requests, the server counted %lld", threads,
                  requests, srv);
    ck_assert_ptr_nonnull(strstr(r.out, "loadgen: epoll, 6 connections"));
    ck_assert(jq_number(r.json, ".client.cpu_us_per_request") > 0);
}

START_TEST(two_threads_agree_with_the_server)
{
    threads_agree_with_server("2");
}
END_TEST

START_TEST(three_threads_agree_with_the_server)
{
    threads_agree_with_server("3");
}
END_TEST

START_TEST(threads_open_loop_and_n_count_exactly)
{
    /* -n with several threads measures exactly N in all; --rate is split among them */
    struct test_server s;
    server_spawn(&s, "epoll", NULL);
    const char *const args[] = {"-c",  "4",        "-t",  "2",         "--rate", "4000", "-n",
                                "500", "--warmup", "0.2", "--timeout", "5",      NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    server_stop(&s, NULL, 0);
    ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
    ck_assert_int_eq(json_number(r.json, NULL, "requests"), 500);
    ck_assert_int_eq((long long)jq_number(r.json, "[.client.per_thread[].requests] | add"), 500);
    ck_assert_ptr_nonnull(strstr(r.json, "\"mode\": \"open\""));
}
END_TEST

START_TEST(server_pid_gives_server_cpu)
{
    struct test_server s;
    server_spawn(&s, "epoll", NULL);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)s.pid);
    const char *const args[] = {"-c", "2", SHORT_RUN, "--server-pid", pid, NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    server_stop(&s, NULL, 0);
    ck_assert_msg(r.status == 0, "exit %d; stderr:\n%s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.json, "\"server_cpu_source\": \"proc\""));
    ck_assert(jq_number(r.json, ".server_cpu_us_per_request") > 0);
    ck_assert_ptr_nonnull(strstr(r.out, "us CPU per request"));
}
END_TEST

START_TEST(raw_mode_verifies_and_counts)
{
    struct bad_server s;
    bad_server_start(&s, RAW_ECHO);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)s.pid);
    const char *const args[] = {"--raw",   "-c",        "3", "-t",           "2", "-s", "100",
                                SHORT_RUN, "--timeout", "5", "--server-pid", pid, NULL};
    struct run r;
    run_loadgen(s.port, args, &r);
    bad_server_stop(&s);
    ck_assert_msg(r.status == 0, "exit %d; stdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 0);
    ck_assert_int_gt(json_number(r.json, NULL, "requests"), 0);
    ck_assert_int_eq(json_number(r.json, FAIRNES, "never_served"), 0);
    ck_assert_ptr_nonnull(strstr(r.json, "\"wait_data\": null"));
    ck_assert_ptr_nonnull(strstr(r.json, "\"server_stats_delta\": {}"));
    ck_assert(jq_number(r.json, ".latency_us.round_trip.p50") > 0);
    ck_assert(jq_number(r.json, ".server_cpu_us_per_request") > 0);
    ck_assert_ptr_nonnull(strstr(r.out, "no stamps in --raw mode"));
}
END_TEST

START_TEST(raw_mode_detects_a_flipped_byte)
{
    struct run r;
    struct bad_server s;
    bad_server_start(&s, RAW_FLIP);
    const char *const args[] = {"--raw", "-c", "2", "-s", "64", SHORT_RUN, "--timeout", "5", NULL};
    run_loadgen(s.port, args, &r);
    bad_server_stop(&s);
    ck_assert_msg(r.status == 1, "exit %d; stdout:\n%s", r.status, r.out);
    /* byte 99 is in the second request of each connection: one mismatch each */
    ck_assert_int_eq(json_number(r.json, ERRORS, "payload_mismatch"), 2);
    ck_assert_int_eq(json_number(r.json, ERRORS, "total"), 2);
    ck_assert_ptr_nonnull(strstr(r.err, "echoed bytes differ"));
}
END_TEST

/* Run build/baseline_client -p port args...; its exit status, stdout (the JSON) in out, its
 * stderr (what it found wrong) in baseline_err. */
static char baseline_err[4096];

static int run_baseline(int port, const char *const *args, char *out, size_t size)
{
    char port_s[16], path[64], err_path[64];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(path, sizeof path, "/tmp/iomodels-lgtest-%d.base", (int)getpid());
    snprintf(err_path, sizeof err_path, "/tmp/iomodels-lgtest-%d.base-err", (int)getpid());
    const char *argv[24] = {
        build_path("baseline_client"), "-p", port_s, "-d", "0.3", "--warmup", "0.1"};
    int argc = 7;
    for (int i = 0; args[i] && argc < 23; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (freopen(path, "w", stdout) == NULL || freopen(err_path, "w", stderr) == NULL)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = wait_exit(pid, HANG_GUARD_S);
    slurp(path, out, size);
    slurp(err_path, baseline_err, sizeof baseline_err);
    ck_assert_msg(status >= 0, "baseline_client hung");
    return status;
}

START_TEST(baseline_client_frames_and_raw)
{
    char out[1024];
    struct test_server s;
    server_spawn(&s, "epoll", NULL);
    const char *const frames[] = {"-c", "4", "-s", "64", NULL};
    int status = run_baseline(s.port, frames, out, sizeof out);
    server_stop(&s, NULL, 0);
    ck_assert_msg(status == 0, "frames: exit %d: %s", status, out);
    ck_assert_ptr_nonnull(strstr(out, "\"mode\":\"frames\""));
    ck_assert(jq_number(out, ".requests") > 0);
    ck_assert(jq_number(out, ".cpu_us_per_request") > 0);
    ck_assert_int_eq((int)jq_number(out, ".errors"), 0);

    struct bad_server b;
    bad_server_start(&b, RAW_ECHO);
    const char *const raw[] = {"-c", "3", "-s", "100", "--raw", NULL};
    status = run_baseline(b.port, raw, out, sizeof out);
    bad_server_stop(&b);
    ck_assert_msg(status == 0, "raw: exit %d: %s", status, out);
    ck_assert_ptr_nonnull(strstr(out, "\"mode\":\"raw\""));
    ck_assert(jq_number(out, ".requests") > 0);
}
END_TEST

START_TEST(baseline_client_exits_1_on_a_mismatch)
{
    char out[1024];
    struct bad_server b;
    bad_server_start(&b, FLIP_BYTE);
    const char *const frames[] = {"-c", "2", NULL};
    int status = run_baseline(b.port, frames, out, sizeof out);
    bad_server_stop(&b);
    ck_assert_msg(status == 1, "frames, a flipped byte: exit %d: %s", status, out);
    ck_assert_int_ge((int)jq_number(out, ".errors"), 1);
    ck_assert_ptr_nonnull(strstr(baseline_err, "is not the echo"));

    bad_server_start(&b, RAW_FLIP);
    const char *const raw[] = {"-c", "2", "-s", "64", "--raw", NULL};
    status = run_baseline(b.port, raw, out, sizeof out);
    bad_server_stop(&b);
    ck_assert_msg(status == 1, "raw, a flipped byte: exit %d: %s", status, out);
    ck_assert_ptr_nonnull(strstr(baseline_err, "is not the echo"));
}
END_TEST

Suite *loadgen_suite(void)
{
    Suite *s = suite_create("loadgen");
    TCase *t = tcase_create("bad servers");
    tcase_set_timeout(t, HANG_GUARD_S + 10);
    tcase_add_test(t, flipped_byte_is_payload_mismatch);
    tcase_add_test(t, wrong_seq_is_seq_mismatch);
    tcase_add_test(t, garbage_header_is_bad_header);
    tcase_add_test(t, huge_len_is_bad_header);
    tcase_add_test(t, early_close_is_closed_by_server);
    tcase_add_test(t, no_reply_is_stalled);
    tcase_add_test(t, no_reply_in_a_long_window_is_stalled);
    tcase_add_test(t, silence_late_in_the_window_is_stalled);
    tcase_add_test(t, server_full_is_refused_with_reason);
    tcase_add_test(t, error_status_is_error_reply);
    tcase_add_test(t, replies_in_one_byte_pieces_are_correct);
    tcase_add_test(t, garbage_stats_text_is_ignored);
    tcase_add_test(t, two_threads_agree_with_the_server);
    tcase_add_test(t, three_threads_agree_with_the_server);
    tcase_add_test(t, threads_open_loop_and_n_count_exactly);
    tcase_add_test(t, server_pid_gives_server_cpu);
    tcase_add_test(t, raw_mode_verifies_and_counts);
    tcase_add_test(t, raw_mode_detects_a_flipped_byte);
    tcase_add_test(t, baseline_client_frames_and_raw);
    tcase_add_test(t, baseline_client_exits_1_on_a_mismatch);
    suite_add_tcase(s, t);
    return s;
}
