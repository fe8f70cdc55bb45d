/* proto.c - parser and builders for the wire protocol (see proto.h, docs/protocol.md). */
#include "proto.h"

#include <string.h>

void proto_parser_init(struct proto_parser *p, uint32_t max_frame)
{
    p->mode = PROTO_MODE_UNKNOWN;
    p->max_frame = max_frame;
}

void proto_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void proto_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

void proto_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint16_t proto_get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t proto_get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t proto_get_u64(const uint8_t *p)
{
    return ((uint64_t)proto_get_u32(p) << 32) | proto_get_u32(p + 4);
}

static void read_header(const uint8_t *in, struct proto_header *h)
{
    h->magic = proto_get_u16(in);
    h->type = in[2];
    h->flags = in[3];
    h->seq = proto_get_u32(in + 4);
    h->len = proto_get_u32(in + 8);
}

static enum proto_result parse_error(struct proto_event *ev, enum proto_status status,
                                     const char *reason)
{
    ev->status = status;
    ev->reason = reason;
    return PROTO_ERROR;
}

static enum proto_result parse_frame(struct proto_parser *p, const uint8_t *buf, size_t len,
                                     struct proto_event *ev)
{
    /* Check the magic as soon as its bytes are here, so garbage is refused at once
     * instead of after waiting for a 12-byte header that may never come. */
    if (len >= 1 && buf[0] != PROTO_MAGIC_FIRST_BYTE)
        return parse_error(ev, PROTO_ERR_BAD_MAGIC, "bad magic");
    if (len >= 2 && proto_get_u16(buf) != PROTO_MAGIC)
        return parse_error(ev, PROTO_ERR_BAD_MAGIC, "bad magic");
    if (len < PROTO_HEADER_SIZE) {
        ev->need = PROTO_HEADER_SIZE;
        return PROTO_NEED_MORE;
    }
    read_header(buf, &ev->header);
    uint8_t type = ev->header.type;
    if (type != PROTO_ECHO && type != PROTO_STATS && type != PROTO_STATS_RESET)
        return parse_error(ev, PROTO_ERR_UNKNOWN_TYPE, "unknown request type");
    if (ev->header.len > p->max_frame)
        return parse_error(ev, PROTO_ERR_TOO_LARGE, "frame longer than the server's --max-frame");
    size_t total = PROTO_HEADER_SIZE + (size_t)ev->header.len;
    if (len < total) {
        ev->need = total;
        return PROTO_NEED_MORE;
    }
    ev->consumed = total;
    ev->data = buf + PROTO_HEADER_SIZE;
    ev->data_len = ev->header.len;
    return PROTO_FRAME;
}

static enum proto_result parse_line(const uint8_t *buf, size_t len, struct proto_event *ev)
{
    size_t look = len < PROTO_MAX_LINE + 1 ? len : PROTO_MAX_LINE + 1;
    const uint8_t *nl = memchr(buf, '\n', look);
    /* A zero byte is no text: refused as soon as it is here, like a bad magic in frame mode
     * (line mode has no status on the wire; the status only tells the caller which error). */
    if (memchr(buf, '\0', nl != NULL ? (size_t)(nl - buf) : look) != NULL)
        return parse_error(ev, PROTO_ERR_BAD_MAGIC, "zero byte in a line");
    if (nl == NULL) {
        if (len > PROTO_MAX_LINE)
            return parse_error(ev, PROTO_ERR_TOO_LARGE, "line too long");
        ev->need = len + 1;
        return PROTO_NEED_MORE;
    }
    ev->data = buf;
    ev->data_len = (size_t)(nl - buf);
    ev->consumed = ev->data_len + 1;
    return PROTO_LINE;
}

enum proto_result proto_parse(struct proto_parser *p, const uint8_t *buf, size_t len,
                              struct proto_event *ev)
{
    memset(ev, 0, sizeof *ev);
    if (p->mode == PROTO_MODE_UNKNOWN) {
        if (len == 0) {
            ev->need = 1;
            return PROTO_NEED_MORE;
        }
        p->mode = buf[0] == PROTO_MAGIC_FIRST_BYTE ? PROTO_MODE_FRAME : PROTO_MODE_LINE;
    }
    if (p->mode == PROTO_MODE_FRAME)
        return parse_frame(p, buf, len, ev);
    return parse_line(buf, len, ev);
}

void proto_write_request_header(uint8_t *out, uint8_t type, uint32_t seq, uint32_t len)
{
    proto_put_u16(out, PROTO_MAGIC);
    out[2] = type;
    out[3] = 0;
    proto_put_u32(out + 4, seq);
    proto_put_u32(out + 8, len);
}

void proto_write_reply_prefix(uint8_t *out, uint8_t type, uint8_t status, uint32_t seq,
                              uint32_t len, const struct proto_stamps *st)
{
    proto_put_u16(out, PROTO_MAGIC);
    out[2] = type;
    out[3] = status;
    proto_put_u32(out + 4, seq);
    proto_put_u32(out + 8, len);
    uint8_t *s = out + PROTO_HEADER_SIZE;
    proto_put_u64(s + 0, st->wait);
    proto_put_u64(s + 8, st->arrive);
    proto_put_u64(s + 16, st->ready);
    proto_put_u64(s + 24, st->copy_begin);
    proto_put_u64(s + 32, st->copy_end);
    proto_put_u64(s + 40, st->reply);
}

int proto_read_reply_prefix(const uint8_t *in, struct proto_header *h, struct proto_stamps *st)
{
    read_header(in, h);
    const uint8_t *s = in + PROTO_HEADER_SIZE;
    st->wait = proto_get_u64(s + 0);
    st->arrive = proto_get_u64(s + 8);
    st->ready = proto_get_u64(s + 16);
    st->copy_begin = proto_get_u64(s + 24);
    st->copy_end = proto_get_u64(s + 32);
    st->reply = proto_get_u64(s + 40);
    return h->magic == PROTO_MAGIC ? 0 : -1;
}

void proto_upper_line(uint8_t *out, const uint8_t *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = line[i];
        out[i] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - 'a' + 'A') : c;
    }
}

const char *proto_type_name(uint8_t type)
{
    switch (type) {
    case PROTO_ECHO:
        return "ECHO";
    case PROTO_STATS:
        return "STATS";
    case PROTO_STATS_RESET:
        return "STATS_RESET";
    default:
        return "unknown";
    }
}

const char *proto_status_name(uint8_t status)
{
    switch (status) {
    case PROTO_OK:
        return "ok";
    case PROTO_ERR_BAD_MAGIC:
        return "bad magic";
    case PROTO_ERR_UNKNOWN_TYPE:
        return "unknown type";
    case PROTO_ERR_TOO_LARGE:
        return "too large";
    case PROTO_ERR_SERVER_FULL:
        return "server full";
    case PROTO_ERR_TIMEOUT:
        return "timeout";
    default:
        return "unknown status";
    }
}
