/* stats.h - the server's counters: what a STATS frame returns and what the exit line prints.
 *
 * One table of named counters, updated with relaxed atomics so that the threaded models can
 * share them. Counters whose name starts with "calls_" (and "eagain", "eintr") count a model's
 * system calls; they are printed only when non-zero, so each model shows the calls it makes.
 */
#ifndef IOMODELS_STATS_H
#define IOMODELS_STATS_H

#include <stddef.h>
#include <stdint.h>

#define STATS_COUNTERS(X)                                                                          \
    X(connections)         /* admitted in all (refused at accept: not counted here) */             \
    X(connections_open)    /* open now (a gauge: STATS_RESET leaves it alone) */                   \
    X(connections_refused) /* told so and closed: --max-conns, no descriptors, no thread... */     \
    X(requests)            /* ECHO frames and text lines answered */                               \
    X(frames)              /* of which frames (ECHO) */                                            \
    X(lines)               /* of which text lines */                                               \
    X(stats_requests)      /* STATS and STATS_RESET frames */                                      \
    X(bytes_in)                                                                                    \
    X(bytes_out)                                                                                   \
    X(errors_bad_magic)                                                                            \
    X(errors_unknown_type)                                                                         \
    X(errors_too_large) /* frame len above --max-frame */                                          \
    X(errors_line_too_long)                                                                        \
    X(errors_truncated)      /* peer closed in the middle of a frame or line */                    \
    X(errors_reset)          /* ECONNRESET, EPIPE and other socket errors */                       \
    X(errors_accept)         /* accept failed (EMFILE, ENFILE, ...) */                             \
    X(errors_timeout)        /* closed: past --idle-timeout or --frame-timeout */                  \
    X(errors_line_zero_byte) /* a text line held a zero byte */                                    \
    X(buffer_bytes)      /* gauge: bytes allocated now for every connection's buffers (conn.c) */  \
    X(buffer_bytes_peak) /* the most buffer_bytes has been since the start (a gauge too) */        \
    X(calls_accept)                                                                                \
    X(calls_recvmsg)                                                                               \
    X(calls_send)                                                                                  \
    X(calls_epoll_wait)                                                                            \
    X(calls_epoll_ctl)                                                                             \
    X(calls_thread_create)                                                                         \
    X(calls_fork)                                                                                  \
    X(calls_waitpid)                                                                               \
    X(calls_select)                                                                                \
    X(calls_poll)                                                                                  \
    X(calls_sigwaitinfo) /* sigwaitinfo / sigtimedwait */                                          \
    X(calls_aio_read)                                                                              \
    X(calls_aio_write)                                                                             \
    X(calls_aio_suspend)                                                                           \
    X(calls_aio_error)                                                                             \
    X(calls_io_uring_enter) /* submit and/or wait */                                               \
    X(eagain)               /* calls that returned EAGAIN: the "not yet" answers */                \
    X(eintr)                /* calls interrupted by a signal and retried */                        \
    X(signals)              /* I/O signals taken (signal-driven I/O, AIO completions) */           \
    X(signal_overflows)     /* plain SIGIO: the real-time queue overflowed; every fd rescanned */  \
    X(submissions)          /* io_uring: operations submitted (accept, recvmsg, send, poll) */     \
    X(completions)          /* AIO or io_uring completions reaped */                               \
    X(sq_full)              /* io_uring: submission queue full, flushed before queueing more */    \
    X(cq_overflow)          /* io_uring: completion queue overflowed (kernel kept them: NODROP) */ \
    X(enobufs)              /* io_uring: -ENOBUFS, no provided buffer was free */                  \
    X(connections_refused_fd_setsize) /* select: fd >= FD_SETSIZE, refused */                      \
    X(busy_polls)                     /* non-blocking model: sweeps over all connections */        \
    X(work_units)                     /* --work: units of background computation done */

enum stats_id {
#define STATS_ENUM(name) STAT_##name,
    STATS_COUNTERS(STATS_ENUM)
#undef STATS_ENUM
        STATS_COUNT
};

void stats_init(const char *model);
void stats_add(enum stats_id id, uint64_t n);
void stats_sub(enum stats_id id, uint64_t n);
uint64_t stats_get(enum stats_id id);

/* Add n to a gauge that rises and falls (buffer_bytes), and raise its high-water mark `peak`
 * to the new value if that is higher. Lower it again with stats_sub(). */
void stats_gauge_add(enum stats_id gauge, enum stats_id peak, uint64_t n);

/* Zero every counter but the gauges (connections_open, buffer_bytes, buffer_bytes_peak), and
 * start CPU and time accounting afresh. */
void stats_reset(void);

/* Format every counter plus CPU time, context switches and elapsed time as "key=value"
 * items separated by `sep` (a '\n' for a STATS reply, a ' ' for the exit line). Counters
 * named calls_*, eagain, eintr and the model-specific ones after them are left out when 0;
 * `threads` is the process's task count now (AIO's helper threads show here), and
 * `rss_peak_kb` the most memory it has had resident (getrusage ru_maxrss; in a model that
 * forks, of the largest among this process and the children it has reaped).
 * Returns the length written (truncated to size - 1 like snprintf). */
size_t stats_format(char *out, size_t size, char sep);

/* For a model whose connections are served by several processes (fork): keep the counters
 * in memory shared with the children it forks from now on, and take CPU time and context
 * switches from what each process reports with stats_account_cpu() rather than from
 * getrusage() of whichever process formats the STATS. Call before the first fork. */
void stats_share_between_processes(void);

/* Multi-process models: add this process's CPU time and context switches since its last
 * call to the shared totals. Each process calls it now and then (e.g. after each request). */
void stats_account_cpu(void);

/* Print "STATS key=value ..." on stdout: the exit line every server prints. */
void stats_print_line(void);

#endif
