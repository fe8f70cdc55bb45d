/* options.c - the shared server command line (see options.h). */
#include "options.h"
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define IOMODELS_VERSION "0.1"

static void usage(const struct server_options *opt, FILE *to)
{
    fprintf(
        to,
        "usage: %s [options]\n"
        "%s\n\n"
        "  -p, --port PORT           TCP port to listen on (default %d; 0 picks a free one)\n"
        "  -b, --bind ADDR           address to bind (default %s)\n"
        "      --max-conns N         refuse connections past N open ones (default %d)\n"
        "      --max-frame BYTES     longest frame payload accepted (default %u)\n"
        "      --idle-timeout SECS   close a connection idle this long: nothing received,\n"
        "                            nothing to send, no request begun (default %d; 0: never)\n"
        "      --frame-timeout SECS  close a connection whose frame or line, once begun, is not\n"
        "                            whole within this (default %d; 0: no limit); fractions\n"
        "                            of a second are allowed in both\n"
        "      --work                compute in the background while not serving, counted in\n"
        "                            STATS as work_units (see docs/models/ for each model)\n"
        "      --no-stamps           send every stamp as 0, reading no clock and asking the\n"
        "                            kernel for no arrival stamp for them: shows what the\n"
        "                            measurement costs (STATS says stamps=0)\n"
        "  -h, --help                show this help\n"
        "  -V, --version             show the version\n\n"
        "The first line on stdout is \"listening on ADDR:PORT\". SIGINT or SIGTERM stops the\n"
        "server, which then prints one \"STATS key=value ...\" line. Protocol: docs/protocol.md\n",
        opt->model, opt->summary, OPTIONS_DEFAULT_PORT, OPTIONS_DEFAULT_BIND,
        OPTIONS_DEFAULT_MAX_CONNS, PROTO_DEFAULT_MAX_FRAME, OPTIONS_DEFAULT_IDLE_TIMEOUT,
        OPTIONS_DEFAULT_FRAME_TIMEOUT);
}

static long parse_number(const struct server_options *opt, const char *name, const char *text,
                         long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "%s: %s must be a number from %ld to %ld, not \"%s\"\n", opt->model, name,
                min, max, text);
        exit(2);
    }
    return v;
}

/* A timeout in seconds, fractions allowed (e.g. 0.5), as nanoseconds; 0 turns it off. */
static uint64_t parse_seconds(const struct server_options *opt, const char *name, const char *text)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0 && v <= OPTIONS_MAX_TIMEOUT)) {
        fprintf(stderr, "%s: %s must be a number of seconds from 0 to %d, not \"%s\"\n", opt->model,
                name, OPTIONS_MAX_TIMEOUT, text);
        exit(2);
    }
    return (uint64_t)(v * 1e9 + 0.5);
}

void options_parse(int argc, char **argv, const char *model, const char *summary,
                   struct server_options *opt)
{
    enum {
        OPT_MAX_CONNS = 256,
        OPT_MAX_FRAME,
        OPT_WORK,
        OPT_IDLE_TIMEOUT,
        OPT_FRAME_TIMEOUT,
        OPT_NO_STAMPS
    };
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
        {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"frame-timeout", required_argument, NULL, OPT_FRAME_TIMEOUT},
        {"work", no_argument, NULL, OPT_WORK},
        {"no-stamps", no_argument, NULL, OPT_NO_STAMPS},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *opt = (struct server_options){
        .model = model,
        .summary = summary,
        .bind = OPTIONS_DEFAULT_BIND,
        .port = OPTIONS_DEFAULT_PORT,
        .max_conns = OPTIONS_DEFAULT_MAX_CONNS,
        .max_frame = PROTO_DEFAULT_MAX_FRAME,
        .stamps = 1,
        .idle_timeout_ns = OPTIONS_DEFAULT_IDLE_TIMEOUT * 1000000000ull,
        .frame_timeout_ns = OPTIONS_DEFAULT_FRAME_TIMEOUT * 1000000000ull,
    };
    int c;
    while ((c = getopt_long(argc, argv, "p:b:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            opt->port = (int)parse_number(opt, "--port", optarg, 0, 65535);
            break;
        case 'b':
            opt->bind = optarg;
            break;
        case OPT_MAX_CONNS:
            opt->max_conns = parse_number(opt, "--max-conns", optarg, 1, 10000000);
            break;
        case OPT_MAX_FRAME:
            opt->max_frame = (uint32_t)parse_number(opt, "--max-frame", optarg, 0, 1L << 30);
            break;
        case OPT_IDLE_TIMEOUT:
            opt->idle_timeout_ns = parse_seconds(opt, "--idle-timeout", optarg);
            break;
        case OPT_FRAME_TIMEOUT:
            opt->frame_timeout_ns = parse_seconds(opt, "--frame-timeout", optarg);
            break;
        case OPT_WORK:
            opt->work = 1;
            break;
        case OPT_NO_STAMPS:
            opt->stamps = 0;
            break;
        case 'h':
            usage(opt, stdout);
            exit(0);
        case 'V':
            printf("%s (iomodels) %s\n", model, IOMODELS_VERSION);
            exit(0);
        default:
            usage(opt, stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", model, argv[optind]);
        usage(opt, stderr);
        exit(2);
    }
}
