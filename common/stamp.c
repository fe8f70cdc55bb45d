/* stamp.c - monotonic clock and kernel arrival stamps (see stamp.h). */
#include "stamp.h"
#include "stats.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static bool stamps_on = true; /* set once, before any thread starts: no atomics needed */

void stamp_disable(void)
{
    stamps_on = false;
}

bool stamp_enabled(void)
{
    return stamps_on;
}

/* clock_gettime() of these clocks is a vDSO call: no system call, it cannot fail. */
static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t stamp_now(void)
{
    return stamps_on ? clock_ns(CLOCK_MONOTONIC) : 0;
}

uint64_t stamp_clock(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t stamp_clock_coarse(void)
{
    /* The coarse clock is the time of the last tick (the precise one adds the counter's
     * progress since): add one tick so that the reading is never early. */
    static _Atomic uint64_t tick_ns; /* 0: not asked yet (any thread may ask first) */
    uint64_t tick = atomic_load_explicit(&tick_ns, memory_order_relaxed);
    if (tick == 0) {
        struct timespec res;
        tick = clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0
                   ? (uint64_t)res.tv_sec * 1000000000u + (uint64_t)res.tv_nsec
                   : 10000000u; /* cannot fail; if it did, 10 ms is HZ=100's tick */
        atomic_store_explicit(&tick_ns, tick, memory_order_relaxed);
    }
    return clock_ns(CLOCK_MONOTONIC_COARSE) + tick;
}

int stamp_enable_arrival(int fd)
{
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC. Both clocks run at the same (NTP-slewed) rate, so the
 * offset changes only when the wall clock is set (stepped). Reading it costs three clock reads,
 * so each thread keeps the one it read last and reads it again when an arrival stamp is more
 * than REALTIME_OFFSET_AGE from when it was read: about once a second under steady traffic, at
 * once after a step of more than that. */
#define REALTIME_OFFSET_AGE 1000000000u
static _Thread_local struct {
    int64_t offset;
    uint64_t taken; /* CLOCK_MONOTONIC when it was read; 0: never */
} realtime_offset;

/* The realtime reading between two monotonic ones, the offset at their midpoint: off by at most
 * half the time between them. The best of three tries, in case one was interrupted. */
static void read_realtime_offset(void)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
        uint64_t m1 = clock_ns(CLOCK_MONOTONIC);
        uint64_t r = clock_ns(CLOCK_REALTIME);
        uint64_t m2 = clock_ns(CLOCK_MONOTONIC);
        if (m2 - m1 < best) {
            best = m2 - m1;
            realtime_offset.offset = (int64_t)(r - (m1 + (m2 - m1) / 2));
            realtime_offset.taken = m2;
        }
    }
}

uint64_t stamp_realtime_to_monotonic(uint64_t realtime_ns)
{
    int64_t mono = (int64_t)realtime_ns - realtime_offset.offset;
    int64_t age = mono - (int64_t)realtime_offset.taken;
    if (realtime_offset.taken == 0 || age > (int64_t)REALTIME_OFFSET_AGE ||
        age < -(int64_t)REALTIME_OFFSET_AGE) {
        read_realtime_offset();
        mono = (int64_t)realtime_ns - realtime_offset.offset;
    }
    return mono > 0 ? (uint64_t)mono : 0;
}

uint64_t stamp_arrival(struct msghdr *msg)
{
    uint64_t arrive = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            arrive = stamp_realtime_to_monotonic((uint64_t)ts.tv_sec * 1000000000u +
                                                 (uint64_t)ts.tv_nsec);
        }
    }
    return arrive;
}

ssize_t stamp_recv(int fd, void *buf, size_t len, int flags, uint64_t *arrive)
{
    union {
        char space[STAMP_CONTROL_SIZE];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.space,
        .msg_controllen = sizeof control.space,
    };
    *arrive = 0;
    /* --no-stamps: no control message to fill, so the kernel's plainer path */
    ssize_t n = stamps_on ? recvmsg(fd, &msg, flags) : recv(fd, buf, len, flags);
    stats_add(STAT_calls_recvmsg, 1);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            stats_add(STAT_eagain, 1);
        else if (errno == EINTR)
            stats_add(STAT_eintr, 1);
        return n;
    }
    stats_add(STAT_bytes_in, (uint64_t)n);
    if (stamps_on)
        *arrive = stamp_arrival(&msg);
    return n;
}
