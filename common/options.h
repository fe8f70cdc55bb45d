/* options.h - the command line every server shares (getopt_long). */
#ifndef IOMODELS_OPTIONS_H
#define IOMODELS_OPTIONS_H

#include <stdint.h>

#define OPTIONS_DEFAULT_PORT          9000
#define OPTIONS_DEFAULT_BIND          "127.0.0.1"
#define OPTIONS_DEFAULT_MAX_CONNS     16384
#define OPTIONS_DEFAULT_IDLE_TIMEOUT  60      /* seconds */
#define OPTIONS_DEFAULT_FRAME_TIMEOUT 10      /* seconds */
#define OPTIONS_MAX_TIMEOUT           1000000 /* seconds: about 11 days */

struct server_options {
    const char *model;   /* the server's name, e.g. "epoll" */
    const char *summary; /* one line: what the model is */
    const char *bind;    /* -b ADDR: numeric IPv4 or IPv6 address */
    int port;            /* -p PORT: 0 picks a free port */
    long max_conns;      /* --max-conns N: connections past it are told so and closed */
    uint32_t max_frame;  /* --max-frame BYTES: longest accepted payload */
    int work;            /* --work: do background computation while not serving (work.h) */
    int stamps;          /* 0 with --no-stamps: every stamp 0, no clock read or kernel stamp */
    /* --idle-timeout SECS: close a connection idle this long; --frame-timeout SECS: close one
     * whose frame or line, once begun, is not whole within this. Nanoseconds; 0: never. */
    uint64_t idle_timeout_ns, frame_timeout_ns;
};

/* Parse argv into opt. Prints usage and exits 0 for -h, the version for -V, and a message
 * and exit status 2 for anything it does not understand. */
void options_parse(int argc, char **argv, const char *model, const char *summary,
                   struct server_options *opt);

#endif
