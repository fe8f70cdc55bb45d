/* helpers.c - test helpers (see helpers.h). */
#include "helpers.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
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

const char *build_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", BUILD_DIR, name);
    return path;
}

void server_spawn(struct test_server *s, const char *model, const char *const *extra)
{
    server_spawn_limited(s, model, extra, 0);
}

void server_spawn_limited(struct test_server *s, const char *model, const char *const *extra,
                          int max_fds)
{
    int out[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    snprintf(s->log, sizeof s->log, "/tmp/iomodels-test-%d-%s.log", (int)getpid(), model);
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
        struct rlimit rl = {(rlim_t)max_fds, (rlim_t)max_fds};
        if (max_fds > 0 && setrlimit(RLIMIT_NOFILE, &rl) < 0)
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
