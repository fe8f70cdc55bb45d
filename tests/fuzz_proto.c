/* fuzz_proto.c - a libFuzzer target for the protocol state machine (common/proto.c).
 *
 * `make fuzz` builds it with clang -fsanitize=fuzzer,address,undefined and runs it on a copy
 * of tests/fuzz/corpus. It drives proto_parse() the way conn_received() in common/conn.c
 * does: bytes arrive in reads of some size, and after each read every whole request in the
 * buffer is taken out, until the parser says "need more" or reports an error (after which
 * conn.c reads nothing more). The read sizes come from the input too, so the fuzzer explores
 * how a request may be split.
 *
 * Input: byte 0 picks the setup, byte 1 how many read-size bytes follow, then those bytes,
 * then the stream the client sends (tests/fuzz/make-corpus writes files of this shape).
 *   byte 0, bits 0-1: --max-frame: 0, 64, 1 MiB (the default) or 2^30 (the largest allowed)
 *   byte 0, bits 2-3: 1 = the connection is already in frame mode, 2 = in line mode (as after
 *                     its first request); otherwise the stream's first byte decides
 *   byte 1 & 15:      N, the number of read-size bytes (0: the whole stream in one read)
 *   N bytes:          read sizes, used in turn: v < 128 means v + 1 bytes, else (v - 127) * 256
 *
 * Each input is parsed twice: in one read, and in the reads the input asks for. The
 * invariants checked (a failure aborts, which libFuzzer reports as a crash):
 *   - the parser never reads outside the bytes it is given (the live bytes sit at the very
 *     end of an allocation of their exact size, so AddressSanitizer catches a read past them);
 *   - consumed <= the bytes provided, and a frame or line consumes at least one byte;
 *   - a frame's payload length never exceeds max_frame, its type is known, its magic right;
 *     a line holds no '\n' and is at most PROTO_MAX_LINE bytes;
 *   - "need more" consumes nothing, asks for more than it holds, and comes only while the
 *     bytes held can still become a valid request (bad magic, type or length is refused as
 *     soon as its bytes are in, a line as soon as it is too long);
 *   - an error has a status and a one-line reason, and the parser stays in error: the same
 *     bytes, and the same bytes with everything after them, give the same error again;
 *   - the mode, once decided, never changes;
 *   - how the stream is split changes nothing: both passes report the same frames, lines
 *     and error at the same stream offsets.
 */
#include "../common/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_proto: invariant failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What one pass saw: every frame, line and error, by stream offset. */
struct record {
    enum proto_result result;
    size_t offset, consumed, data_offset, data_len;
    struct proto_header header;
    enum proto_status status;
};

struct pass {
    struct record *events; /* at most one per stream byte (each consumes one), + an error */
    size_t n, cap;
    size_t end_offset; /* where the last "need more" or the error began */
    enum proto_result last;
};

static const uint32_t max_frames[4] = {0, 64, PROTO_DEFAULT_MAX_FRAME, 1u << 30};

/* Bytes [from, to) of the stream, copied into an allocation of exactly that size: what the
 * connection holds after a read ends exactly where the allocation ends. */
static uint8_t *exact_copy(const uint8_t *stream, size_t from, size_t to)
{
    uint8_t *p = malloc(to > from ? to - from : 1);
    CHECK(p != NULL);
    if (to > from)
        memcpy(p, stream + from, to - from);
    return p;
}

/* Parse the len bytes at buf, stream bytes from `offset` on; check what any one
 * answer must hold, and turn ev->data into a pointer into the stream. */
static enum proto_result parse_checked(struct proto_parser *p, const uint8_t *buf, size_t len,
                                       const uint8_t *stream, size_t offset, struct proto_event *ev)
{
    enum proto_mode mode_before = p->mode;
    enum proto_result r = proto_parse(p, buf, len, ev);

    if (mode_before != PROTO_MODE_UNKNOWN)
        CHECK(p->mode == mode_before);
    else if (len > 0)
        CHECK(p->mode == (buf[0] == PROTO_MAGIC_FIRST_BYTE ? PROTO_MODE_FRAME : PROTO_MODE_LINE));
    CHECK(ev->consumed <= len);
    switch (r) {
    case PROTO_NEED_MORE:
        CHECK(ev->consumed == 0);
        CHECK(ev->need > len);
        /* ...and only while what it holds can still become a request: each check is made
         * as soon as the bytes it looks at are in (docs/protocol.md, 1.6) */
        if (p->mode == PROTO_MODE_FRAME) {
            CHECK(len < 2 ? len == 0 || buf[0] == PROTO_MAGIC_FIRST_BYTE
                          : proto_get_u16(buf) == PROTO_MAGIC);
            if (len >= PROTO_HEADER_SIZE) {
                uint8_t type = buf[2];
                CHECK(type == PROTO_ECHO || type == PROTO_STATS || type == PROTO_STATS_RESET);
                CHECK(proto_get_u32(buf + 8) <= p->max_frame);
                CHECK(ev->need == PROTO_HEADER_SIZE + (size_t)proto_get_u32(buf + 8));
            }
            CHECK(ev->need <= PROTO_HEADER_SIZE + (size_t)p->max_frame);
        } else {
            CHECK(len <= PROTO_MAX_LINE && memchr(buf, '\n', len) == NULL);
        }
        break;
    case PROTO_FRAME:
        CHECK(p->mode == PROTO_MODE_FRAME);
        CHECK(ev->header.magic == PROTO_MAGIC);
        CHECK(ev->header.type == PROTO_ECHO || ev->header.type == PROTO_STATS ||
              ev->header.type == PROTO_STATS_RESET);
        CHECK(ev->header.len <= p->max_frame);
        CHECK(ev->data_len == ev->header.len);
        CHECK(ev->data == buf + PROTO_HEADER_SIZE);
        CHECK(ev->consumed == PROTO_HEADER_SIZE + ev->data_len);
        break;
    case PROTO_LINE:
        CHECK(p->mode == PROTO_MODE_LINE);
        CHECK(ev->data == buf);
        CHECK(ev->data_len <= PROTO_MAX_LINE);
        CHECK(ev->consumed == ev->data_len + 1);
        CHECK(buf[ev->data_len] == '\n');
        CHECK(memchr(ev->data, '\n', ev->data_len) == NULL);
        break;
    case PROTO_ERROR:
        CHECK(ev->status != PROTO_OK);
        CHECK(ev->reason != NULL && ev->reason[0] != '\0');
        CHECK(strchr(ev->reason, '\n') == NULL);
        break;
    default:
        CHECK(!"proto_parse returned no proto_result");
    }
    if (r == PROTO_FRAME || r == PROTO_LINE) {
        CHECK(ev->consumed > 0); /* otherwise conn_received() would loop for ever */
        /* the payload lies inside the bytes given; keep it as a stream offset */
        CHECK(ev->data_len <= len && (size_t)(ev->data - buf) <= len - ev->data_len);
        ev->data = stream + offset + (size_t)(ev->data - buf);
    } else {
        ev->data = NULL;
    }
    return r;
}

static void record(struct pass *pass, enum proto_result r, size_t offset,
                   const struct proto_event *ev, const uint8_t *stream)
{
    struct record *rec = &pass->events[pass->n++];
    memset(rec, 0, sizeof *rec);
    rec->result = r;
    rec->offset = offset;
    rec->consumed = ev->consumed;
    rec->data_offset = ev->data ? (size_t)(ev->data - stream) : 0;
    rec->data_len = ev->data_len;
    rec->header = ev->header;
    rec->status = ev->status;
}

/* One connection's life: reads of the given sizes (none: one read of everything). */
static void run(struct pass *pass, unsigned setup, const uint8_t *sizes, size_t n_sizes,
                const uint8_t *stream, size_t stream_len)
{
    struct proto_parser p;
    proto_parser_init(&p, max_frames[setup & 3]);
    if (((setup >> 2) & 3) == 1)
        p.mode = PROTO_MODE_FRAME;
    else if (((setup >> 2) & 3) == 2)
        p.mode = PROTO_MODE_LINE;

    size_t start = 0, end = 0;        /* the connection's input buffer: stream bytes [start, end) */
    if (pass->cap < stream_len + 1) { /* kept from input to input */
        pass->cap = stream_len + 1;
        pass->events = realloc(pass->events, pass->cap * sizeof *pass->events);
        CHECK(pass->events != NULL);
    }
    pass->n = 0;
    pass->last = PROTO_NEED_MORE;
    pass->end_offset = 0;
    for (size_t read = 0; end < stream_len; read++) {
        size_t n = stream_len - end;
        if (n_sizes > 0) {
            uint8_t v = sizes[read % n_sizes];
            size_t want = v < 128 ? (size_t)v + 1 : (size_t)(v - 127) * 256;
            if (want < n)
                n = want;
        }
        end += n;
        size_t held = start; /* the buffer holds stream bytes [held, end) */
        uint8_t *buf = exact_copy(stream, held, end);
        for (;;) { /* conn_received(): answer every whole request now in the buffer */
            struct proto_event ev;
            enum proto_result r =
                parse_checked(&p, buf + (start - held), end - start, stream, start, &ev);
            pass->last = r;
            pass->end_offset = start;
            if (r == PROTO_NEED_MORE)
                break;
            record(pass, r, start, &ev, stream);
            if (r == PROTO_ERROR) {
                /* The parser stays in error: the same bytes, and then every byte the peer
                 * sends after them, are refused the same way. conn.c reads no more. */
                struct proto_event again;
                CHECK(parse_checked(&p, buf + (start - held), end - start, stream, start, &again) ==
                      PROTO_ERROR);
                CHECK(again.status == ev.status);
                free(buf);
                buf = exact_copy(stream, start, stream_len);
                CHECK(parse_checked(&p, buf, stream_len - start, stream, start, &again) ==
                      PROTO_ERROR);
                CHECK(again.status == ev.status);
                free(buf);
                return;
            }
            start += ev.consumed;
        }
        free(buf);
    }
}

static struct pass whole, split;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned setup = data[0];
    size_t n_sizes = data[1] & 15u;
    if (size < 2 + n_sizes)
        return 0;
    const uint8_t *sizes = data + 2;
    const uint8_t *stream = data + 2 + n_sizes;
    size_t stream_len = size - 2 - n_sizes;

    run(&whole, setup, NULL, 0, stream, stream_len);
    run(&split, setup, sizes, n_sizes, stream, stream_len);

    /* Splitting the stream changes nothing the server would do. */
    CHECK(whole.n == split.n);
    for (size_t i = 0; i < whole.n; i++) {
        const struct record *a = &whole.events[i], *b = &split.events[i];
        CHECK(a->result == b->result);
        CHECK(a->offset == b->offset);
        CHECK(a->consumed == b->consumed);
        CHECK(a->data_offset == b->data_offset && a->data_len == b->data_len);
        CHECK(a->status == b->status);
        CHECK(memcmp(&a->header, &b->header, sizeof a->header) == 0);
    }
    CHECK(whole.last == split.last);
    CHECK(whole.end_offset == split.end_offset);
    return 0;
}
