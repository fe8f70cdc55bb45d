/* conn.h - one client connection: its buffers, its requests and replies.
 *
 * A model moves bytes; this file decides what they mean. The model reads into the space
 * conn_in_space() gives it, with whatever call its I/O model uses, then calls conn_received()
 * with the stamps it took around that read. conn_received() parses every whole request,
 * queues the replies, and conn_flush() sends them, stamping t_reply just before the send.
 */
#ifndef IOMODELS_CONN_H
#define IOMODELS_CONN_H

#include "options.h"
#include "proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* A connection stops reading while this much output is waiting for a peer that does not
 * read its replies: memory stays bounded, and TCP flow control slows the sender down. */
#define CONN_OUTPUT_HIGH_WATER (4u << 20)

struct conn_buffer {
    uint8_t *data;
    size_t start, end, cap; /* bytes [start, end) are live */
};

struct conn {
    int fd;
    const struct server_options *opt;
    struct proto_parser parser;
    struct conn_buffer in, out;
    size_t in_need;      /* bytes the parser wants in `in` before it can say more */
    uint64_t out_sent;   /* bytes of output sent so far (stream offset of out.start) */
    uint64_t *unstamped; /* stream offsets of t_reply fields not yet stamped */
    size_t n_unstamped, cap_unstamped;
    bool closing;             /* an error reply is queued: close once it is sent */
    bool eof;                 /* the peer closed its side: send what is queued, then close */
    bool broken;              /* the socket failed: close now, nothing more can be sent */
    uint64_t last_active;     /* timeouts: bytes last came in, or the output last emptied */
    uint64_t request_begun;   /* timeouts: the first byte of the incomplete request came */
    uint32_t watched;         /* for the model: e.g. the events epoll is watching for */
    uint64_t since;           /* for the model: e.g. when it began waiting for this one */
    void *model_data;         /* for the model: anything else it keeps per connection */
    struct conn *prev, *next; /* every open connection, for conn_close_all() */
};

/* Admit an accepted socket: if --max-conns connections are open already, tell the peer so
 * (an error reply, status SERVER_FULL), close the socket and return false. Call it and
 * conn_open() from the one thread that accepts, so that the count cannot race. */
bool conn_admit(int fd, const struct server_options *opt);

/* accept() failed with err (not EAGAIN, EINTR or ECONNABORTED, which the model retries).
 * Counts it and logs it at most once a second. Out of descriptors (EMFILE, ENFILE), it
 * frees the spare descriptor it keeps, accepts the waiting connection, tells the peer
 * and closes it, and takes the spare back: otherwise the waiting connection would make
 * the listening socket ready again at once, and the accept loop would spin. */
void conn_accept_failed(int listen_fd, int err);

/* Open the spare descriptor conn_accept_failed() needs (server_start does it). */
void conn_reserve_spare(void);

/* For models with a non-blocking listening socket: accept4() the next waiting client,
 * admit it and open it (its socket non-blocking). Returns NULL with errno EAGAIN when no
 * client is left waiting, or with another errno after a failure it has handled with
 * conn_accept_failed(): either way, stop accepting for now. EINTR and ECONNABORTED are
 * retried, refused clients skipped. */
struct conn *conn_accept(int listen_fd, const struct server_options *opt);

/* A new connection on an accepted socket (counted open until conn_close). Never NULL:
 * out of memory ends the process. */
struct conn *conn_open(int fd, const struct server_options *opt);

/* The server cannot serve this connection after all (e.g. no thread for it): send an error
 * reply with this reason, then close it. */
void conn_refuse(struct conn *c, const char *reason);

/* Where the next read should put its bytes, and how many fit (never 0). */
uint8_t *conn_in_space(struct conn *c, size_t *room);

/* n bytes were read into conn_in_space(); st holds the stamps of that read (t_reply is
 * filled in later). Answers every whole request now in the buffer. */
void conn_received(struct conn *c, size_t n, const struct proto_stamps *st);

/* The read returned 0 (the peer closed its side) or -1 (errno says why). Counts what was
 * lost. After end of file the queued replies are still sent (the peer may only have shut
 * down its sending side); after an error nothing more is. Either way no more reading. */
void conn_read_ended(struct conn *c, ssize_t n, int err);

/* Is there output waiting to be sent? */
bool conn_has_output(const struct conn *c);

/* Should the model read more? False after an error reply, and while output is over the
 * high-water mark. */
bool conn_wants_input(const struct conn *c);

/* Should the model close it now? True once the reply to an error, or every reply after the
 * peer's end of file, has been sent, and at once after a socket error. */
bool conn_done(const struct conn *c);

/* Send queued output with send(MSG_NOSIGNAL) until all is sent (1), the socket would block
 * (0), or an error (-1, errno set; counted). On a blocking socket it returns only when all is
 * sent or on error. */
int conn_flush(struct conn *c);

/* For models that send with a call of their own that completes later (aio_write, an
 * io_uring SEND): the queued output, with every pending t_reply stamped now, just before
 * the caller hands it to the kernel. Returns the unsent bytes and their count in *len (0:
 * nothing to send). The bytes stay where they are until conn_output_sent(), provided the
 * model calls neither conn_received() nor conn_in_space() meanwhile: one operation at a
 * time per connection (receive, answer, send all, receive again). */
const uint8_t *conn_output(struct conn *c, size_t *len);

/* ...and then: n of those bytes were sent (a short send leaves the rest queued). */
void conn_output_sent(struct conn *c, size_t n);

/* Close the socket and free the connection. After an error reply it first shuts down the
 * sending side and drains what the peer already sent, so the peer gets the reply rather
 * than a reset. */
void conn_close(struct conn *c);

/* A forking model's parent, after fork(): the child serves this connection now. Close the
 * parent's descriptor (one reference; the socket stays open in the child) and free the
 * parent's copy, but leave the connection counted open: the child's conn_close() ends it. */
void conn_forget(struct conn *c);

/* Close every open connection: what a single-threaded model does before it exits. (A
 * threaded model must not: its connections belong to their threads.) */
void conn_close_all(void);

/* Timeouts. A connection is timed only while the server reads from it and has nothing to
 * send, that is while it waits for the peer alone. Its deadline is then request_begun +
 * --frame-timeout while a frame or line is incomplete (a byte-a-second sender cannot hold
 * it), else last_active + --idle-timeout. Either is off when its option is 0. */

/* Nanoseconds from now until c's deadline: 0 once it has passed, UINT64_MAX if none applies.
 * The blocking models make it their receive timeout (SO_RCVTIMEO). */
uint64_t conn_time_left(const struct conn *c, uint64_t now);

/* Has c's deadline passed at `now`, with none of the peer's bytes waiting unread in the
 * socket (then the server is late, not the peer)? If so, queue an error reply (status
 * TIMEOUT, or in line mode an "ERR ..." line) saying which, log it (one line a second at
 * most), count it in errors_timeout, mark the connection closing and return true: the model
 * then sends the reply and closes the connection, as after any error (conn_done()). */
bool conn_timed_out(struct conn *c, uint64_t now);

/* How closely timeouts are kept, in ns: a second, or a quarter of the shortest timeout if
 * that is less (0: both are off). A connection is closed within this time after its
 * deadline: the sweeps below are this far apart, and the blocking models round their
 * SO_RCVTIMEO up to a multiple of it, so that it seldom changes. */
uint64_t conn_timeout_resolution(const struct server_options *opt);

/* The models that wait for many connections at once, in one thread, find expired ones with a
 * sweep over every open connection, conn_timeout_resolution() apart. Their wait must end in
 * time for it: */

/* wait_ms (a wait's timeout in ms, -1: none), shortened to end when the next sweep is due. */
int conn_sweep_wait_ms(const struct server_options *opt, int wait_ms);

/* The same as a timespec for pselect(), ppoll(), sigtimedwait(): ts filled in with the time
 * until the next sweep, or NULL (wait as long as it takes) when both timeouts are off. */
const struct timespec *conn_sweep_timeout(const struct server_options *opt, struct timespec *ts);

/* Is a sweep due now? (For the --work loops, whose waits return at once.) */
bool conn_sweep_due(const struct server_options *opt);

/* If a sweep is due: call time_out(c, now) for every open connection whose deadline has
 * passed. time_out() calls conn_timed_out(c, now) and, if that queued the error reply, sends
 * it and closes c the model's own way. It may close c, but no other connection. */
void conn_sweep(const struct server_options *opt, void (*time_out)(struct conn *c, uint64_t now));

/* For models whose library owns the socket and closes it itself (libuv's uv_close(), a
 * bufferevent with BEV_OPT_CLOSE_ON_FREE): all that conn_close() does but the close(): after an
 * error reply, shut down the sending side and drain what the peer sent; then free c. */
void conn_release(struct conn *c);

/* ...and whose library keeps its own copy of the output (bufferevent_write(), uv_write()): once
 * conn.c's output buffer is empty, give its memory back if a big reply had grown it. */
void conn_output_trim(struct conn *c);

/* The library's write failed with err (EPIPE, ECONNRESET...): count it, log it, mark c broken
 * (conn_done() is then true). */
void conn_write_failed(struct conn *c, int err);

#endif
