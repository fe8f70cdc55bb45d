/* stamp.h - timestamps: the process's own clock and the kernel's arrival stamp.
 *
 * Every stamp in the protocol is CLOCK_MONOTONIC nanoseconds. The kernel stamps each
 * received packet (SO_TIMESTAMPNS) with CLOCK_REALTIME, and hands the stamp over only to
 * recvmsg(); stamp_recv() converts it, so a model learns when its data really arrived.
 */
#ifndef IOMODELS_STAMP_H
#define IOMODELS_STAMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Now, CLOCK_MONOTONIC, in nanoseconds. */
uint64_t stamp_now(void);

/* Ask the kernel to stamp arriving data on this socket (setsockopt SO_TIMESTAMPNS).
 * Accepted sockets inherit it from the listening socket. Returns 0 or -1 with errno. */
int stamp_enable_arrival(int fd);

/* recvmsg() into buf, like recv(fd, buf, len, flags). On success *arrive is when the kernel
 * received the newest of the bytes returned (CLOCK_MONOTONIC ns), or 0 when no stamp came.
 * Counts calls_recvmsg, bytes_in, eagain and eintr. Returns what recvmsg returned. */
ssize_t stamp_recv(int fd, void *buf, size_t len, int flags, uint64_t *arrive);

/* Convert a CLOCK_REALTIME time to CLOCK_MONOTONIC, both in nanoseconds. */
uint64_t stamp_realtime_to_monotonic(uint64_t realtime_ns);

#endif
