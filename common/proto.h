/* proto.h - the wire protocol as a pure state machine over a byte buffer.
 *
 * No sockets here: the parser looks at bytes a caller already holds and says what they
 * contain (a whole frame, a whole line, an error, or "need more"), so it can be unit-tested
 * by feeding it every possible split of a frame. docs/protocol.md describes the bytes.
 */
#ifndef IOMODELS_PROTO_H
#define IOMODELS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0xA510u
#define PROTO_MAGIC_FIRST_BYTE                                                                     \
    0xA5u                           /* a connection whose first byte is not this is in line mode   \
                                     */
#define PROTO_HEADER_SIZE       12u /* magic u16, type u8, flags/status u8, seq u32, len u32 */
#define PROTO_STAMPS_SIZE       48u /* six u64 nanosecond stamps, replies only */
#define PROTO_REPLY_PREFIX_SIZE (PROTO_HEADER_SIZE + PROTO_STAMPS_SIZE)
#define PROTO_MAX_LINE          4096u /* longest accepted line, not counting the '\n' */
#define PROTO_DEFAULT_MAX_FRAME (1u << 20)

enum proto_type {
    PROTO_ECHO = 1,        /* reply carries the request's payload unchanged */
    PROTO_STATS = 2,       /* reply payload: the server's counters as key=value lines */
    PROTO_STATS_RESET = 3, /* zero the counters; reply payload is empty */
};

/* Reply status: 0 is success; anything else means the payload is a one-line reason
 * and the server closes the connection after sending it. */
enum proto_status {
    PROTO_OK = 0,
    PROTO_ERR_BAD_MAGIC = 1,
    PROTO_ERR_UNKNOWN_TYPE = 2,
    PROTO_ERR_TOO_LARGE = 3,   /* len above the server's --max-frame */
    PROTO_ERR_SERVER_FULL = 4, /* connection refused: --max-conns reached */
    PROTO_ERR_TIMEOUT = 5,     /* closed: idle past --idle-timeout, or a request not complete
                                  within --frame-timeout */
};

/* The six server-side stamps of one request, CLOCK_MONOTONIC nanoseconds, 0 = not known. */
struct proto_stamps {
    uint64_t wait;       /* process began waiting for the data */
    uint64_t arrive;     /* kernel received the data (SO_TIMESTAMPNS), 0 if the model can't know */
    uint64_t ready;      /* process learned the data were there */
    uint64_t copy_begin; /* the call that copied the data into the process began */
    uint64_t copy_end;   /* ... and ended */
    uint64_t reply;      /* the reply was handed to the kernel (stamped just before the send) */
};

struct proto_header {
    uint16_t magic;
    uint8_t type;
    uint8_t flags; /* requests: flags (reserved, ignored); replies: status */
    uint32_t seq;
    uint32_t len;
};

enum proto_mode { PROTO_MODE_UNKNOWN, PROTO_MODE_FRAME, PROTO_MODE_LINE };

enum proto_result {
    PROTO_NEED_MORE, /* nothing complete yet; *need says how many bytes in all would help */
    PROTO_FRAME,     /* a whole request frame: header + payload */
    PROTO_LINE,      /* a whole line (without its '\n') */
    PROTO_ERROR,     /* malformed input: send the error reply, then close */
};

struct proto_event {
    size_t consumed; /* bytes of the buffer this event used up */
    size_t need;     /* PROTO_NEED_MORE: total bytes needed for the next event, if known */
    struct proto_header header; /* PROTO_FRAME, and PROTO_ERROR once a header was read */
    const uint8_t *data;        /* PROTO_FRAME: payload; PROTO_LINE: the line */
    size_t data_len;
    enum proto_status status; /* PROTO_ERROR: what is wrong */
    const char *reason;       /* PROTO_ERROR: one line for the peer and the log */
};

struct proto_parser {
    enum proto_mode mode; /* decided by the connection's first byte */
    uint32_t max_frame;
};

void proto_parser_init(struct proto_parser *p, uint32_t max_frame);

/* Look at buf[0..len) and report the first thing it holds. Never reads past len. */
enum proto_result proto_parse(struct proto_parser *p, const uint8_t *buf, size_t len,
                              struct proto_event *ev);

/* Big-endian helpers. */
void proto_put_u16(uint8_t *p, uint16_t v);
void proto_put_u32(uint8_t *p, uint32_t v);
void proto_put_u64(uint8_t *p, uint64_t v);
uint16_t proto_get_u16(const uint8_t *p);
uint32_t proto_get_u32(const uint8_t *p);
uint64_t proto_get_u64(const uint8_t *p);

/* Requests (the client side). Writes PROTO_HEADER_SIZE bytes. */
void proto_write_request_header(uint8_t *out, uint8_t type, uint32_t seq, uint32_t len);

/* Replies. Writes the header and the stamps (PROTO_REPLY_PREFIX_SIZE bytes); the caller
 * puts the len payload bytes after them. The stamp offsets let a sender fill in `reply`
 * at the last moment. */
void proto_write_reply_prefix(uint8_t *out, uint8_t type, uint8_t status, uint32_t seq,
                              uint32_t len, const struct proto_stamps *st);
#define PROTO_REPLY_STAMP_OFFSET (PROTO_HEADER_SIZE + 5 * 8) /* where t_reply sits */

/* Parse a reply prefix (header + stamps) from PROTO_REPLY_PREFIX_SIZE bytes. Returns 0, or -1
 * if the magic is wrong. */
int proto_read_reply_prefix(const uint8_t *in, struct proto_header *h, struct proto_stamps *st);

/* Line mode: the reply to a line is the same line in upper case. */
void proto_upper_line(uint8_t *out, const uint8_t *line, size_t len);

const char *proto_type_name(uint8_t type);
const char *proto_status_name(uint8_t status);

#endif
