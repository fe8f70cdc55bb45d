/* baseline_client.c - the cheapest honest closed-loop echo client: the yardstick for loadgen.
 *
 * `make bench` compares loadgen's own CPU time per request with this program's, on the same
 * server: whatever loadgen spends above this floor is the price of what it measures (stamps,
 * phases, histograms, samples). So this client does the least a correct client can do:
 *
 *   - one thread, one epoll, level-triggered, non-blocking sockets;
 *   - per connection one request built once (ECHO frame, or with --raw SIZE bytes of a
 *     pattern), sent again and again: only the seq in its header changes;
 *   - one request outstanding per connection; each reply read whole and checked (status,
 *     seq, type, length and every payload byte; --raw: every byte);
 *   - no allocation per request, and no clock read per request: the clock is read once per
 *     epoll_wait() return, only to know when the warm-up and the window end.
 *
 * It counts requests completed inside the window, takes its CPU time (getrusage: user +
 * system) at the window's two ends, and prints one JSON object (also to --json FILE):
 *   {"tool":"baseline_client","mode":"frames","connections":100,"size":64,"window_s":..,
 *    "requests":..,"throughput_rps":..,"cpu_us":..,"cpu_us_per_request":..,"cpu_util":..,
 *    "errors":0}
 * Any mismatch or socket error is said on stderr and makes the exit status 1.
 *
 *   build/epoll -p 9000 &
 *   build/baseline_client -p 9000 -c 100 -s 64 -d 3
 */
#include "../common/proto.h"
#include "../common/stamp.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

struct bconn {
    int fd;
    uint32_t seq;
    uint8_t *req, *reply; /* the request (built once) and room for one whole reply */
    size_t sent, got;     /* bytes of the current request sent, of its reply received */
};

static size_t req_len, reply_len; /* of one request and one whole reply */
static bool raw;
static long errors;
static struct bconn *cs; /* the connections */

static void die(const char *what)
{
    fprintf(stderr, "baseline_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        die("getrusage");
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Send what is left of the current request. False: the connection failed. */
static bool send_rest(int ep, struct bconn *c)
{
    while (c->sent < req_len) {
        ssize_t n = send(c->fd, c->req + c->sent, req_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) { /* rare (big requests): finish when writable */
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                die("epoll_ctl");
            return true;
        }
        if (n < 0)
            return false;
        c->sent += (size_t)n;
    }
    return true;
}

/* The next request: only the seq changes (frames; --raw sends the same bytes again). */
static bool send_next(int ep, struct bconn *c)
{
    c->seq++;
    if (!raw)
        proto_put_u32(c->req + 4, c->seq);
    c->sent = c->got = 0;
    return send_rest(ep, c);
}

/* Is the whole reply in c->reply the right answer to the request? */
static bool reply_ok(const struct bconn *c)
{
    if (raw)
        return memcmp(c->reply, c->req, req_len) == 0;
    struct proto_header h;
    struct proto_stamps st;
    return proto_read_reply_prefix(c->reply, &h, &st) == 0 && h.flags == PROTO_OK &&
           h.type == PROTO_ECHO && h.seq == c->seq && h.len == req_len - PROTO_HEADER_SIZE &&
           memcmp(c->reply + PROTO_REPLY_PREFIX_SIZE, c->req + PROTO_HEADER_SIZE, h.len) == 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: baseline_client -p PORT [-a ADDR] -c CONNS -s SIZE -d SECS "
                    "[--warmup SECS] [--raw] [--json FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *json = NULL;
    long port = 0, conns = 1, size = 64;
    double duration = 5, warmup = 1;
    static const struct option longopts[] = {{"warmup", required_argument, NULL, 'w'},
                                             {"raw", no_argument, NULL, 'r'},
                                             {"json", required_argument, NULL, 'j'},
                                             {NULL, 0, NULL, 0}};
    for (int o; (o = getopt_long(argc, argv, "p:a:c:s:d:", longopts, NULL)) != -1;) {
        switch (o) {
        case 'p':
            port = atol(optarg);
            break;
        case 'a':
            addr = optarg;
            break;
        case 'c':
            conns = atol(optarg);
            break;
        case 's':
            size = atol(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'w':
            warmup = atof(optarg);
            break;
        case 'r':
            raw = true;
            break;
        case 'j':
            json = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind < argc || port < 1 || port > 65535 || conns < 1 || conns > 100000 || size < 0 ||
        size > (1 << 24) || (raw && size == 0) || !(duration > 0) || !(warmup >= 0))
        usage();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "baseline_client: bad IPv4 address %s\n", addr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    req_len = raw ? (size_t)size : PROTO_HEADER_SIZE + (size_t)size;
    reply_len = raw ? (size_t)size : PROTO_REPLY_PREFIX_SIZE + (size_t)size;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    cs = calloc((size_t)conns, sizeof *cs);
    if (ep < 0 || cs == NULL)
        die(ep < 0 ? "epoll_create1" : "calloc");
    for (long i = 0; i < conns; i++) {
        struct bconn *c = &cs[i];
        c->req = malloc(req_len);
        c->reply = malloc(reply_len);
        if (c->req == NULL || c->reply == NULL)
            die("malloc");
        uint8_t *payload = raw ? c->req : c->req + PROTO_HEADER_SIZE;
        for (long k = 0; k < size; k++) /* a pattern of its own per connection */
            payload[k] = (uint8_t)(k * 31 + i * 7 + 1);
        if (!raw)
            proto_write_request_header(c->req, PROTO_ECHO, 0, (uint32_t)size);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            die("socket");
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            die("connect");
        int one = 1;
        if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            die("setsockopt TCP_NODELAY");
        int fl = fcntl(c->fd, F_GETFL); /* non-blocking only now: connect() simply waited */
        if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
            die("fcntl O_NONBLOCK");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl");
    }

    /* The clock is read once per epoll_wait() return: enough to end the warm-up and the
     * window within a batch, and no cost per request. */
    uint64_t t0 = stamp_now(), t_start = 0, t_end = 0, cpu_start = 0, cpu_used = 0;
    uint64_t warm_end = t0 + (uint64_t)(warmup * 1e9);
    uint64_t win_end = warm_end + (uint64_t)(duration * 1e9);
    bool measuring = false;
    uint64_t done = 0, counted = 0; /* replies checked in all; inside the window */
    for (long i = 0; i < conns; i++)
        if (!send_next(ep, &cs[i]))
            die("send");
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = stamp_now();
        if (!measuring && now >= warm_end) {
            measuring = true;
            t_start = now;
            cpu_start = cpu_us();
            counted = done;
        }
        if (measuring && now >= win_end) {
            t_end = now;
            cpu_used = cpu_us() - cpu_start;
            counted = done - counted;
            break;
        }
        uint64_t wake = measuring ? win_end : warm_end;
        int n = epoll_wait(ep, evs, 256, (int)((wake - now) / 1000000u) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct bconn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                if (!send_rest(ep, c))
                    die("send");
                if (c->sent == req_len) { /* all out: back to watching input only */
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                        die("epoll_ctl");
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            ssize_t r = recv(c->fd, c->reply + c->got, reply_len - c->got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "baseline_client: connection %ld: %s\n", (long)(c - cs),
                        r == 0 ? "closed by the server" : strerror(errno));
                errors++;
                goto out;
            }
            c->got += (size_t)r;
            if (c->got < reply_len)
                continue;
            if (!reply_ok(c)) {
                fprintf(stderr, "baseline_client: connection %ld: reply %u is not the echo\n",
                        (long)(c - cs), c->seq);
                errors++;
                goto out;
            }
            done++;
            if (!send_next(ep, c))
                die("send");
        }
    }
out:
    if (!measuring || t_end == 0) { /* an error ended the run early */
        t_end = measuring ? stamp_now() : t_start;
        cpu_used = measuring ? cpu_us() - cpu_start : 0;
        counted = measuring ? done - counted : 0;
    }
    double window = (double)(t_end - t_start) / 1e9;
    char out[512];
    snprintf(out, sizeof out,
             "{\"tool\":\"baseline_client\",\"mode\":\"%s\",\"connections\":%ld,\"size\":%ld,"
             "\"window_s\":%.6f,\"requests\":%llu,\"throughput_rps\":%.3f,\"cpu_us\":%llu,"
             "\"cpu_us_per_request\":%.4f,\"cpu_util\":%.4f,\"errors\":%ld}\n",
             raw ? "raw" : "frames", conns, size, window, (unsigned long long)counted,
             window > 0 ? (double)counted / window : 0, (unsigned long long)cpu_used,
             counted ? (double)cpu_used / (double)counted : 0,
             window > 0 ? (double)cpu_used / 1e6 / window : 0, errors);
    if (fputs(out, stdout) < 0 || fflush(stdout) != 0)
        die("stdout");
    if (json) {
        FILE *f = fopen(json, "w");
        if (f == NULL || fputs(out, f) < 0 || fclose(f) != 0)
            die(json);
    }
    return errors ? 1 : 0;
}
