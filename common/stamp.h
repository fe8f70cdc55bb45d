/* stamp.h - timestamps: the process's own clock and the kernel's arrival stamp.
 *
 * Every stamp in the protocol is CLOCK_MONOTONIC nanoseconds. The kernel stamps each
 * received packet (SO_TIMESTAMPNS) with CLOCK_REALTIME, and hands the stamp over only to
 * recvmsg(); stamp_recv() converts it, so a model learns when its data really arrived.
 *
 * Stamps are measurement, and measurement costs: a clock read is about 35 ns here, and the
 * arrival stamp makes every recvmsg() carry a control message. A server started with
 * --no-stamps (stamp_disable()) pays none of it: stamp_now() returns 0 without reading a
 * clock, stamp_recv() is a plain recv(), and the kernel is not asked for arrival stamps.
 * What is not a stamp (timeouts, sweeps, elapsed time) reads stamp_clock() instead, which
 * always reads the clock. docs/protocol.md, section 4, has the measured costs.
 */
#ifndef IOMODELS_STAMP_H
#define IOMODELS_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/* --no-stamps: from now on every stamp is 0 (server_start() calls it, before any thread). */
void stamp_disable(void);

/* Are stamps taken? (False after stamp_disable().) */
bool stamp_enabled(void);

/* A stamp: now, CLOCK_MONOTONIC, in nanoseconds; 0 with --no-stamps, and then no clock read. */
uint64_t stamp_now(void);

/* The clock itself, for what is not a stamp (timeouts, sweeps, elapsed time): CLOCK_MONOTONIC
 * now in nanoseconds, read even with --no-stamps. */
uint64_t stamp_clock(void);

/* A cheap reading of the same clock for marking when something happened (a connection's last
 * activity): CLOCK_MONOTONIC_COARSE, which the vDSO returns without reading the CPU's counter,
 * plus one tick of it. So it is never earlier than stamp_clock() at the same moment and at most
 * two ticks later (8 ms at HZ=250): a deadline counted from it never comes early. */
uint64_t stamp_clock_coarse(void);

/* Ask the kernel to stamp arriving data on this socket (setsockopt SO_TIMESTAMPNS).
 * Accepted sockets inherit it from the listening socket. Returns 0 or -1 with errno. */
int stamp_enable_arrival(int fd);

/* recvmsg() into buf, like recv(fd, buf, len, flags). On success *arrive is when the kernel
 * received the newest of the bytes returned (CLOCK_MONOTONIC ns), or 0 when no stamp came.
 * With --no-stamps it is recv(), and *arrive 0. Counts calls_recvmsg, bytes_in, eagain and
 * eintr. Returns what recvmsg returned. */
ssize_t stamp_recv(int fd, void *buf, size_t len, int flags, uint64_t *arrive);

/* The control buffer a recvmsg() needs for the arrival stamp, and the stamp it brought
 * (CLOCK_MONOTONIC ns), 0 if none: for a model that makes its recvmsg() itself (uring). */
#define STAMP_CONTROL_SIZE CMSG_SPACE(sizeof(struct timespec))
uint64_t stamp_arrival(struct msghdr *msg);

/* Convert a CLOCK_REALTIME time to CLOCK_MONOTONIC, both in nanoseconds. */
uint64_t stamp_realtime_to_monotonic(uint64_t realtime_ns);

#endif
