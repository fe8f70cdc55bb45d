/* fork.c - blocking I/O, one process per connection: the classic concurrent server.
 *
 * The model: the parent sleeps in accept(); for each connection it fork()s a child, closes
 * its own copy of the socket and goes back to accept(). The child closes the listening
 * socket, serves its one client with the blocking calls of blocking.c, and exits. Both
 * phases of input block, but only the child that asked. This is UNP's figure 6.1 inside the
 * concurrent server of UNP section 4.8 (the "one fork per client" server of chapter 30).
 *
 * Run:    build/fork -p 9000            then nc 127.0.0.1 9000 from several terminals
 * Watch:  `ps --ppid $(pgrep -xo fork)` lists one child per open connection. In STATS,
 *         calls_fork (one per connection) and calls_waitpid (the parent collecting exited
 *         children, so that none stays a zombie); eintr counts the SIGCHLDs that woke the
 *         parent's accept4(). ctx_voluntary is about one per request, as in threads.
 * --work: as in blocking.c, one unit between calls, done by each child in serve_blocking();
 *         the parent only accepts and forks.
 *
 * After fork() the processes share nothing they did not share before it: the counters live
 * in memory mapped MAP_SHARED (stats_share_between_processes()), so STATS adds up every
 * process, and each process adds its own CPU time with stats_account_cpu(): the parent in
 * its loop, a child after each request (serve_blocking() does it) and when it exits.
 * Children are reaped as they exit (a SIGCHLD wakes accept4), and at a stop signal the
 * parent stops them before it prints STATS.
 */
#include "../common/conn.h"
#include "../common/serve_blocking.h"
#include "../common/server.h"
#include "../common/stamp.h"
#include "../common/stats.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_WAIT_NS 2000000000u /* at exit: how long children get to finish, then SIGKILL */

static pid_t *children; /* not yet reaped, so their pids cannot have been reused */
static size_t n_children, cap_children;
static volatile sig_atomic_t child_exited;

static void on_sigchld(int sig)
{
    (void)sig;
    child_exited = 1; /* and, with no SA_RESTART, the parent's accept4() returns EINTR */
}

static void remember_child(pid_t pid)
{
    if (n_children == cap_children) {
        cap_children = cap_children ? 2 * cap_children : 64;
        children = realloc(children, cap_children * sizeof *children);
        if (children == NULL)
            die("realloc");
    }
    children[n_children++] = pid;
}

/* Collect every child that has exited: until then each one is a zombie. */
static void reap_children(void)
{
    child_exited = 0;
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) { /* 0: the rest still run; -1: none left */
        stats_add(STAT_calls_waitpid, 1);
        for (size_t i = 0; i < n_children; i++)
            if (children[i] == pid) {
                children[i] = children[--n_children];
                break;
            }
    }
    stats_add(STAT_calls_waitpid, 1);
}

static _Noreturn void serve_child(struct conn *c, int listen_fd)
{
    if (close(listen_fd) < 0) /* the child never accepts */
        die("close");
    serve_blocking(c);   /* until the client leaves: recv, reply, ...; then conn_close() */
    stats_account_cpu(); /* the rest of this child's CPU time */
    _exit(0); /* not exit(): no STATS line, nothing of the parent's (stdio, atexit) run twice */
}

/* SIGTERM every child, again every 100 ms (one may have been between two calls at the first
 * and gone back to sleep in recv()), reap them, and SIGKILL what is left after STOP_WAIT_NS. */
static void stop_children(void)
{
    uint64_t deadline = stamp_clock() + STOP_WAIT_NS;
    reap_children();
    while (n_children > 0 && stamp_clock() < deadline) {
        for (size_t i = 0; i < n_children; i++)
            if (kill(children[i], SIGTERM) < 0) /* cannot fail: it is not reaped yet */
                die("kill");
        struct timespec pause = {0, 100000000};
        if (nanosleep(&pause, NULL) < 0 && errno != EINTR) /* a SIGCHLD ends it early */
            die("nanosleep");
        reap_children();
    }
    for (size_t i = 0; i < n_children; i++) {
        if (kill(children[i], SIGKILL) < 0)
            die("kill");
        while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
            continue;
        stats_add(STAT_calls_waitpid, 1);
    }
    n_children = 0;
    free(children);
}

int main(int argc, char **argv)
{
    struct server_options opt;
    int listen_fd =
        server_start(argc, argv, "fork", "blocking I/O, one process per connection", &opt);
    stats_share_between_processes();            /* before the first fork: see the header */
    server_accept_wakes_each_second(listen_fd); /* to look for a stop signal (server.h) */
    struct sigaction chld = {.sa_handler = on_sigchld};
    sigemptyset(&chld.sa_mask);
    if (sigaction(SIGCHLD, &chld, NULL) < 0)
        die("sigaction");

    while (!server_stopping()) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC); /* blocks until a client comes */
        stats_add(STAT_calls_accept, 1);
        int err = errno; /* before reaping, which may change it */
        if (child_exited)
            reap_children();
        stats_account_cpu(); /* the parent's own CPU time: accepting, forking, reaping */
        if (fd < 0) {
            if (err == EINTR) /* SIGCHLD, or a stop signal */
                stats_add(STAT_eintr, 1);
            else if (err != ECONNABORTED && err != EAGAIN) /* EAGAIN: 1 s, no client */
                conn_accept_failed(listen_fd, err);        /* e.g. ENFILE: keep serving */
            continue;
        }
        if (!conn_admit(fd, &opt))
            continue;
        /* Open it here, not in the child, so --max-conns counts it before the next accept. */
        struct conn *c = conn_open(fd, &opt);
        stats_add(STAT_calls_fork, 1); /* before: after it, two processes would count it */
        pid_t pid = fork(); /* copy-on-write: the child gets this whole process, c included */
        if (pid == 0)
            serve_child(c, listen_fd);
        if (pid < 0) {
            fprintf(stderr, "fork: fork: %s\n", strerror(errno));
            conn_refuse(c, "no process for this connection (fork failed)");
            continue;
        }
        remember_child(pid);
        conn_forget(c); /* close the parent's descriptor; the child's conn_close() counts it */
    }
    stop_children();
    return server_finish();
}
