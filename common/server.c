/* server.c - start-up, stop signals and the exit line (see server.h). */
#include "server.h"
#include "conn.h"
#include "stamp.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *server_model = "server";
/* Set by the SIGINT/SIGTERM handler, read by every thread (threads' workers check it before
 * each recv): a lock-free atomic is both async-signal-safe and free of data races, which a
 * volatile sig_atomic_t is only within one thread. */
static atomic_int stop_requested;
static sigset_t stop_signals;

static void on_stop_signal(int sig)
{
    (void)sig;
    atomic_store_explicit(&stop_requested, 1, memory_order_relaxed);
}

bool server_stopping(void)
{
    return atomic_load_explicit(&stop_requested, memory_order_relaxed) != 0;
}

const sigset_t *server_stop_signals(void)
{
    return &stop_signals;
}

void die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", server_model, what, strerror(errno));
    exit(1);
}

int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void install_signals(void)
{
    /* No SA_RESTART: a blocked accept() or recv() must return EINTR so the model sees the stop. */
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        die("sigaction");
    /* A peer that closes while we write must cost an EPIPE, not the process. */
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGPIPE, &ignore, NULL) < 0)
        die("sigaction");
}

static void raise_descriptor_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            die("setrlimit");
    }
}

static int open_listener(const struct server_options *opt)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", opt->port);
    int rc = getaddrinfo(opt->bind, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s: bad bind address \"%s\": %s\n", opt->model, opt->bind,
                gai_strerror(rc));
        exit(2);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
        die("setsockopt SO_REUSEADDR");
    /* Replies are whole messages written at once: Nagle's algorithm would only hold a reply
     * back until the previous one is acknowledged. Accepted sockets inherit this. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0)
        die("setsockopt TCP_NODELAY");
    /* Accepted sockets inherit this: every recvmsg() then carries the kernel's arrival stamp.
     * (Not with --no-stamps: then the kernel need not stamp packets for us at all.) */
    if (opt->stamps) {
        if (stamp_enable_arrival(fd) < 0)
            die("setsockopt SO_TIMESTAMPNS");
        /* If no socket in the system had asked for stamps, the kernel switches them on a
         * moment later, from a worker queued on this CPU (net_enable_timestamp() defers it):
         * let it run before any client can connect, or a model that never sleeps (nonblock,
         * --work) keeps it waiting and the first requests arrive unstamped. */
        sched_yield();
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die("bind");
    freeaddrinfo(ai);
    if (listen(fd, SOMAXCONN) < 0)
        die("listen");

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        die("getsockname");
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    rc = getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv, sizeof serv,
                     NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc != 0) {
        fprintf(stderr, "%s: getnameinfo: %s\n", opt->model, gai_strerror(rc));
        exit(1);
    }
    printf(ss.ss_family == AF_INET6 ? "listening on [%s]:%s\n" : "listening on %s:%s\n", host,
           serv);
    fflush(stdout);
    return fd;
}

int server_start(int argc, char **argv, const char *model, const char *summary,
                 struct server_options *opt)
{
    server_model = model;
    options_parse(argc, argv, model, summary, opt);
    if (!opt->stamps)
        stamp_disable(); /* before any thread, and before anything takes a stamp */
    stats_init(model);
    install_signals();
    raise_descriptor_limit();
    conn_reserve_spare();
    return open_listener(opt);
}

int server_finish(void)
{
    stats_print_line();
    return 0;
}

void server_accept_wakes_each_second(int listen_fd)
{
    struct timeval tv = {.tv_sec = 1};
    if (setsockopt(listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        die("setsockopt SO_RCVTIMEO");
}
