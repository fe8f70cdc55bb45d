/* helpers.c - test helpers (see helpers.h). */
#include "helpers.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BUILD_DIR
#define BUILD_DIR "build"
#endif

/* A built program, BUILD_DIR/<name>. IOMODELS_SERVER_DIR, when set (the lab grader,
 * tests/labs/grade, sets it), points the servers, not loadgen, at a student's build. */
const char *build_path(const char *name)
{
    static char path[4096];
    const char *dir = getenv("IOMODELS_SERVER_DIR");
    if (dir == NULL || *dir == '\0' || strcmp(name, "loadgen") == 0)
        dir = BUILD_DIR;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

void server_spawn(struct test_server *s, const char *model, const char *const *extra)
{
    server_spawn_limited(s, model, extra, 0);
}

void server_spawn_limited(struct test_server *s, const char *model, const char *const *extra,
                          int max_fds)
{
    server_spawn_rlimit(s, model, extra, RLIMIT_NOFILE, max_fds);
}

void server_spawn_rlimit(struct test_server *s, const char *model, const char *const *extra,
                         int resource, long limit)
{
    int out[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    const char *tmp = getenv("TMPDIR"); /* the lab grader's scratch directory, else /tmp */
    snprintf(s->log, sizeof s->log, "%s/iomodels-test-%d-%s.log",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp", (int)getpid(), model);
    pid_t parent = getpid();
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave servers behind */
        if (getppid() != parent)
            _exit(127);
        int log = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log < 0 || dup2(out[1], 1) < 0 || dup2(log, 2) < 0)
            _exit(127);
        if (log > 2)
            close(log);
        struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
        if (limit > 0 && setrlimit(resource, &rl) < 0)
            _exit(127);
        const char *argv[32] = {build_path(model), "-p", "0"};
        int argc = 3;
        for (int i = 0; extra && extra[i] && argc < 31; i++)
            argv[argc++] = extra[i];
        argv[argc] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    s->stdout_fd = out[0];
    char line[256];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ck_assert_msg(readable_within(out[0], TEST_IO_TIMEOUT_S * 1000),
                      "%s printed no \"listening on\" line", model);
        ssize_t r = read(out[0], line + n, 1);
        ck_assert_msg(r == 1, "%s exited before listening (see %s)", model, s->log);
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    ck_assert_msg(strncmp(line, "listening on 127.0.0.1:", 23) == 0, "first line: \"%s\"", line);
    s->port = atoi(line + 23);
    ck_assert_int_gt(s->port, 0);
}

int server_stop(struct test_server *s, char *out, size_t out_size)
{
    kill(s->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < TEST_IO_TIMEOUT_S * 100; i++) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid)
            break;
        ck_assert_msg(i + 1 < TEST_IO_TIMEOUT_S * 100, "server did not exit after SIGTERM");
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    size_t n = 0;
    if (out != NULL) {
        ssize_t r;
        while (n + 1 < out_size && (r = read(s->stdout_fd, out + n, out_size - 1 - n)) > 0)
            n += (size_t)r;
        out[n] = '\0';
    }
    close(s->stdout_fd);
    unlink(s->log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

size_t server_log(const struct test_server *s, char *out, size_t out_size)
{
    FILE *f = fopen(s->log, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(out, 1, out_size - 1, f);
        fclose(f);
    }
    out[n] = '\0';
    return n;
}

int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {TEST_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_msg(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

int recv_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int expect_closed(int fd)
{
    char c;
    for (;;) {
        ssize_t n = recv(fd, &c, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return 1;
        return 0; /* data, or a timeout */
    }
}

int readable_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

void send_frame(int fd, uint8_t type, uint32_t seq, const void *payload, uint32_t len)
{
    uint8_t h[PROTO_HEADER_SIZE];
    proto_write_request_header(h, type, seq, len);
    send_all(fd, h, sizeof h);
    if (len)
        send_all(fd, payload, len);
}

int read_reply(int fd, struct proto_header *h, struct proto_stamps *st, uint8_t **payload)
{
    uint8_t prefix[PROTO_REPLY_PREFIX_SIZE];
    *payload = NULL;
    if (recv_exact(fd, prefix, sizeof prefix) < 0)
        return -1;
    if (proto_read_reply_prefix(prefix, h, st) < 0)
        return -1;
    *payload = malloc((size_t)h->len + 1);
    ck_assert_ptr_nonnull(*payload);
    if (recv_exact(fd, *payload, h->len) < 0)
        return -1;
    (*payload)[h->len] = '\0';
    return 0;
}

long long stats_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = text; (p = strstr(p, key)) != NULL; p += kl) {
        int at_start = p == text || p[-1] == '\n' || p[-1] == ' ';
        if (at_start && p[kl] == '=')
            return atoll(p + kl + 1);
    }
    return -1;
}

/* ---- for the per-model suites ------------------------------------------------------------ */

#ifndef SOURCE_DIR
#define SOURCE_DIR "."
#endif

/* Is `name` in the space-separated list (or is the list absent)? */
static int name_listed(const char *list, const char *name)
{
    if (list == NULL || *list == '\0')
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* A may_skip model whose server exits 77 before listening cannot run on this machine (e.g.
 * io_uring disabled): 0, after printing the reason as SKIPPED. */
static int runs_here(const char *name)
{
    int out[2];
    if (pipe(out) < 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(out[1], 2);
        execl(build_path(name), name, "-p", "0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char text[512] = {0};
    size_t n = 0;
    ssize_t r;
    while (n < sizeof text - 1 && (r = read(out[0], text + n, sizeof text - 1 - n)) > 0) {
        n += (size_t)r;
        if (strstr(text, "listening on"))
            break;
    }
    close(out[0]);
    int status = 0;
    if (strstr(text, "listening on")) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return 1;
    }
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("SKIPPED %s: %s", name, text);
        return 0;
    }
    return 1; /* any other failure is for the tests to report */
}

int test_models_load(const struct test_model **list)
{
    static struct test_model models[TEST_MAX_MODELS];
    static int n_models = -1;
    *list = models;
    if (n_models >= 0)
        return n_models;
    n_models = 0;
    const char *path = SOURCE_DIR "/tests/models.list";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    const char *pick = getenv("IOMODELS_TEST_MODELS");
    char line[256];
    while (fgets(line, sizeof line, f) != NULL && n_models < TEST_MAX_MODELS) {
        char *save, *tok = strtok_r(line, " \t\n", &save);
        if (tok == NULL || tok[0] == '#' || !name_listed(pick, tok))
            continue;
        struct test_model m = {.stamps = "readiness"};
        snprintf(m.name, sizeof m.name, "%s", tok);
        while ((tok = strtok_r(NULL, " \t\n", &save)) != NULL) {
            if (strcmp(tok, "iterative") == 0)
                m.iterative = 1;
            else if (strcmp(tok, "arrival") == 0)
                m.arrival = 1;
            else if (strcmp(tok, "many") == 0)
                m.many = 1;
            else if (strcmp(tok, "fd_setsize") == 0)
                m.fd_setsize = 1;
            else if (strcmp(tok, "forks") == 0)
                m.forks = 1;
            else if (strcmp(tok, "may_skip") == 0)
                m.may_skip = 1;
            else if (strncmp(tok, "stamps=", 7) == 0)
                snprintf(m.stamps, sizeof m.stamps, "%s", tok + 7);
            else {
                fprintf(stderr, "%s: unknown attribute \"%s\" for %s\n", path, tok, m.name);
                exit(1);
            }
        }
        if (m.may_skip && !runs_here(m.name))
            continue;
        models[n_models++] = m;
    }
    fclose(f);
    return n_models;
}

uint8_t *test_random_bytes(size_t n, unsigned seed)
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

int client_connect_buffers(int port, int rcvbuf, int sndbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    /* before connect(): the window is agreed in the handshake, and a size set by hand stops
     * the kernel from growing the buffer on its own */
    if (rcvbuf > 0)
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    if (sndbuf > 0)
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    struct timeval tv = {TEST_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

void close_with_reset(int fd)
{
    struct linger now = {.l_onoff = 1, .l_linger = 0};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now), 0);
    ck_assert_int_eq(close(fd), 0);
}

void check_echo_reply(int fd, uint32_t seq, const void *payload, uint32_t len)
{
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *back;
    ck_assert_msg(read_reply(fd, &h, &st, &back) == 0, "no reply to echo seq %u", seq);
    ck_assert_uint_eq(h.type, PROTO_ECHO);
    ck_assert_uint_eq(h.flags, PROTO_OK);
    ck_assert_uint_eq(h.seq, seq);
    ck_assert_uint_eq(h.len, len);
    ck_assert_msg(len == 0 || memcmp(back, payload, len) == 0, "echo seq %u differs", seq);
    free(back);
}

void check_echo(int fd, uint32_t seq, const void *payload, uint32_t len)
{
    send_frame(fd, PROTO_ECHO, seq, payload, len);
    check_echo_reply(fd, seq, payload, len);
}

char *server_stats(int port)
{
    int fd = client_connect(port);
    send_frame(fd, PROTO_STATS, 1, NULL, 0);
    struct proto_header h;
    struct proto_stamps st;
    uint8_t *text;
    ck_assert_msg(read_reply(fd, &h, &st, &text) == 0, "no reply to STATS");
    ck_assert_uint_eq(h.type, PROTO_STATS);
    ck_assert_uint_eq(h.flags, PROTO_OK);
    close(fd);
    return (char *)text;
}

char *server_stats_when(int port, const char *key, long long want)
{
    char *text = NULL;
    for (int tries = 0; tries < TEST_IO_TIMEOUT_S * 100; tries++) {
        free(text);
        text = server_stats(port);
        if (stats_value(text, key) == want)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return text;
}

void expect_served_soon(int port)
{
    int served = 0;
    for (int tries = 0; tries < TEST_IO_TIMEOUT_S * 100 && !served; tries++) {
        int fd = client_connect(port);
        send_frame(fd, PROTO_ECHO, 7, "back", 4);
        struct proto_header h;
        struct proto_stamps st;
        uint8_t *p;
        served = read_reply(fd, &h, &st, &p) == 0 && h.flags == PROTO_OK && h.len == 4 &&
                 memcmp(p, "back", 4) == 0;
        free(p);
        close(fd);
        if (!served) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    ck_assert_msg(served, "no new client was served");
}

pid_t loadgen_start(int port, const char *const *args, const char *json_path, int *progress_fd)
{
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *argv[32] = {build_path("loadgen"), "-p", port_s, "--json", json_path};
    int argc = 5;
    for (int i = 0; args && args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int progress[2];
    ck_assert_int_eq(pipe2(progress, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (freopen("/dev/null", "w", stdout) == NULL || dup2(progress[1], 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(progress[1]);
    *progress_fd = progress[0];
    return pid;
}

int wait_for_text(int fd, const char *text, int times, char *seen, size_t seen_size)
{
    size_t n = strlen(seen);
    for (;;) {
        int found = 0;
        for (const char *p = seen; (p = strstr(p, text)) != NULL; p++)
            found++;
        if (found >= times)
            return 1;
        if (n + 1 >= seen_size || !readable_within(fd, TEST_IO_TIMEOUT_S * 1000))
            return 0;
        ssize_t r = read(fd, seen + n, seen_size - 1 - n);
        if (r <= 0)
            return 0;
        n += (size_t)r;
        seen[n] = '\0';
    }
}

int wait_exit(pid_t pid, int timeout_s)
{
    int status = 0;
    for (int i = 0; i < timeout_s * 100; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

int sh(char *out, size_t size, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "cd '%s' && { %s ; } 2>&1", SOURCE_DIR, cmd);
    FILE *p = popen(full, "r");
    if (p == NULL)
        return 127;
    size_t n = 0;
    if (out && size)
        out[0] = '\0';
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0)
        if (out && n + 1 < size) {
            size_t k = got < size - 1 - n ? got : size - 1 - n;
            memcpy(out + n, buf, k);
            n += k;
            out[n] = '\0';
        }
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

const char *tail(const char *s, size_t n)
{
    size_t len = strlen(s);
    return len > n ? s + len - n : s;
}
