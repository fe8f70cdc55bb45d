/* stamp.c - monotonic clock and kernel arrival stamps (see stamp.h). */
#include "stamp.h"
#include "stats.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts); /* cannot fail for these clocks */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t stamp_now(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int stamp_enable_arrival(int fd)
{
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
}

uint64_t stamp_realtime_to_monotonic(uint64_t realtime_ns)
{
    /* The two clocks differ by an offset that only changes when the wall clock is set or
     * slewed; read it now, with the realtime reading between two monotonic ones. */
    uint64_t m1 = clock_ns(CLOCK_MONOTONIC);
    uint64_t r = clock_ns(CLOCK_REALTIME);
    uint64_t m2 = clock_ns(CLOCK_MONOTONIC);
    uint64_t m = m1 + (m2 - m1) / 2;
    int64_t offset = (int64_t)(r - m);
    int64_t mono = (int64_t)realtime_ns - offset;
    return mono > 0 ? (uint64_t)mono : 0;
}

ssize_t stamp_recv(int fd, void *buf, size_t len, int flags, uint64_t *arrive)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char space[CMSG_SPACE(3 * sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.space,
        .msg_controllen = sizeof control.space,
    };
    *arrive = 0;
    ssize_t n = recvmsg(fd, &msg, flags);
    stats_add(STAT_calls_recvmsg, 1);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            stats_add(STAT_eagain, 1);
        else if (errno == EINTR)
            stats_add(STAT_eintr, 1);
        return n;
    }
    stats_add(STAT_bytes_in, (uint64_t)n);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            uint64_t rt = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            *arrive = stamp_realtime_to_monotonic(rt);
        }
    }
    return n;
}
