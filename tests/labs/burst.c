/* burst.c - lab 4's pipelined client: many ECHO frames written at once, then a wait for every
 * reply, each checked byte for byte. A server that reads once per edge-triggered report
 * instead of until EAGAIN answers the first few and then waits for a report that never comes.
 *
 *   burst -p PORT [-n FRAMES] [-s SIZE] [--stop PID] [--stall SECS]
 *
 * One warm-up echo first, so that the server has accepted and registered the connection.
 * With --stop PID the server is stopped (SIGSTOP) while the burst arrives and continued
 * (SIGCONT) once the kernel has taken all of it, so the whole burst is in the socket when the
 * server next looks: one report, however fast the machine. (Without it the result depends on
 * how the bytes happen to arrive.) The default burst, 12 frames of 4096 bytes, 48 KiB, fits
 * in a socket's receive window and is three times the 16 KiB one read takes.
 *
 * Prints one line; exit 0 when every reply came back, 1 when the server stalled (no byte
 * for --stall seconds, default 3) or answered wrongly, 2 when it could not run.
 * Built by tests/labs/grade-4 as DIR/build/burst (tests/labs/lab.mk).
 */
#include "../../common/proto.h"

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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

static pid_t stopped; /* the server we stopped: continue it whatever happens */

static void resume(void)
{
    if (stopped > 0)
        kill(stopped, SIGCONT);
    stopped = 0;
}

__attribute__((format(printf, 2, 3))) static _Noreturn void fail(int status, const char *fmt, ...)
{
    resume();
    va_list ap;
    va_start(ap, fmt);
    printf("burst: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(status);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Is the process stopped (state T in /proc/PID/stat)? */
static int is_stopped(pid_t pid)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the name may hold spaces: the state follows it */
    return p != NULL && p[1] == ' ' && p[2] == 'T';
}

static void usage(void)
{
    fprintf(stderr, "usage: burst -p PORT [-n FRAMES] [-s SIZE] [--stop PID] [--stall SECS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0, frames = 12;
    long size = 4096;
    pid_t stop = 0;
    double stall = 3;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(o, "-p") == 0)
            port = atoi(v);
        else if (strcmp(o, "-n") == 0)
            frames = atoi(v);
        else if (strcmp(o, "-s") == 0)
            size = atol(v);
        else if (strcmp(o, "--stop") == 0)
            stop = (pid_t)atoi(v);
        else if (strcmp(o, "--stall") == 0)
            stall = atof(v);
        else
            usage();
    }
    if (port <= 0 || port > 65535 || frames < 1 || frames > 100000 || size < 1 ||
        size > (1 << 20) || stall <= 0)
        usage();

    /* the burst: frame i (seq i) carries payload bytes that depend on i and the offset */
    size_t frame_len = PROTO_HEADER_SIZE + (size_t)size, total = frame_len * (size_t)frames;
    uint8_t *out = malloc(total);
    if (out == NULL)
        fail(2, "%s", "out of memory");
    for (int i = 0; i < frames; i++) {
        uint8_t *f = out + (size_t)i * frame_len;
        proto_write_request_header(f, PROTO_ECHO, (uint32_t)i + 1, (uint32_t)size);
        for (long k = 0; k < size; k++)
            f[PROTO_HEADER_SIZE + k] = (uint8_t)(k * 7 + i * 13 + (k >> 8));
    }

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        fail(2, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
        fail(2, "connect to 127.0.0.1: %s", strerror(errno));
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        fail(2, "fcntl: %s", strerror(errno));

    /* Warm-up: seq 0, "hello"; its reply is the first thing read below. Then the burst. */
    uint8_t hello[PROTO_HEADER_SIZE + 5];
    proto_write_request_header(hello, PROTO_ECHO, 0, 5);
    memcpy(hello + PROTO_HEADER_SIZE, "hello", 5);
    if (send(fd, hello, sizeof hello, MSG_NOSIGNAL) != (ssize_t)sizeof hello)
        fail(1, "the warm-up echo could not be sent: %s", strerror(errno));

    size_t sent = 0, got = 0; /* bytes of the burst sent; bytes of the current reply read */
    int replies = -1;         /* -1: the warm-up reply is due; then burst replies so far */
    uint8_t *in = malloc(PROTO_REPLY_PREFIX_SIZE + (size_t)size);
    if (in == NULL)
        fail(2, "%s", "out of memory");
    double last_byte = now_s(), resume_by = 0;
    while (replies < frames) {
        if (replies >= 0 && stop > 0 && sent == 0 && stopped == 0) {
            if (kill(stop, SIGSTOP) < 0)
                fail(2, "cannot stop the server: %s", strerror(errno));
            stopped = stop;
            for (int i = 0; i < 100 && !is_stopped(stop); i++)
                usleep(10000);
            resume_by = now_s() + 2; /* the kernel takes 48 KiB at once: 2 s is plenty */
        }
        if (replies >= 0 && sent < total) {
            ssize_t n = send(fd, out + sent, total - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                fail(1, "send: %s", strerror(errno));
        }
        if (stopped > 0) { /* continue it once the kernel has taken (acknowledged) every byte */
            int unacked = 0;
            if (ioctl(fd, SIOCOUTQ, &unacked) < 0)
                unacked = 0;
            if ((sent == total && unacked == 0) || now_s() > resume_by)
                resume();
            else {
                usleep(1000);
                continue;
            }
            last_byte = now_s(); /* the stall clock starts when the server can run again */
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR)
            fail(2, "poll: %s", strerror(errno));
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) {
            if (now_s() - last_byte > stall)
                fail(1,
                     "stalled: %d of %d replies to a burst of %d frames of %ld bytes, then "
                     "nothing for %g s (%zu of %zu request bytes sent)",
                     replies < 0 ? 0 : replies, frames, frames, size, stall, sent, total);
            continue;
        }
        /* the reply being read: the warm-up's (5 bytes), or burst frame replies + 1's */
        size_t len = replies < 0 ? 5 : (size_t)size;
        ssize_t n = recv(fd, in + got, PROTO_REPLY_PREFIX_SIZE + len - got, 0);
        if (n == 0)
            fail(1, "the server closed the connection after %d replies to the burst",
                 replies < 0 ? 0 : replies);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            fail(1, "recv: %s", strerror(errno));
        }
        got += (size_t)n;
        last_byte = now_s();
        if (got < PROTO_REPLY_PREFIX_SIZE + len)
            continue;
        struct proto_header h;
        struct proto_stamps st;
        uint32_t seq = replies < 0 ? 0 : (uint32_t)replies + 1;
        const uint8_t *want = replies < 0 ? hello + PROTO_HEADER_SIZE
                                          : out + (size_t)replies * frame_len + PROTO_HEADER_SIZE;
        if (proto_read_reply_prefix(in, &h, &st) < 0 || h.type != PROTO_ECHO ||
            h.flags != PROTO_OK || h.seq != seq || h.len != len ||
            memcmp(in + PROTO_REPLY_PREFIX_SIZE, want, len) != 0)
            fail(1, "reply %u is not the echo of request %u (status %u, seq %u, len %u)",
                 (unsigned)seq, (unsigned)seq, (unsigned)h.flags, (unsigned)h.seq, (unsigned)h.len);
        got = 0;
        replies++;
    }
    printf("burst: all %d replies to a burst of %d frames of %ld bytes (%zu bytes at once%s), "
           "byte for byte\n",
           frames, frames, size, total, stop > 0 ? ", sent while the server was stopped" : "");
    close(fd);
    return 0;
}
