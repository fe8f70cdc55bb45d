/* blocking.c - blocking I/O, iterative: one connection at a time.
 *
 * The model: the process calls accept(), then recv(), and sleeps inside each call until
 * the kernel has something for it. Both phases of input block the process: it waits for
 * the data inside recv(), and the kernel copies the data into it before recv() returns.
 * This is UNP's figure 6.1, and the simplest server there is.
 *
 * Run:    build/blocking -p 9000        then, in another terminal:  nc 127.0.0.1 9000
 * Watch:  open a second nc while the first is still connected. It connects (the kernel
 *         completes the handshake and queues it), but nothing it types is answered until
 *         the first one leaves: while the process sleeps in one client's recv(), nobody
 *         else exists for it. build/loadgen -c 2 reports the second connection as never
 *         served. In a STATS reply, t_ready equals t_copy_end: the process learns that data
 *         arrived only when the call that copied it returns.
 *
 * The per-connection loop is serve_blocking() in common/serve_blocking.c, shared with
 * threads.c, so that diffing the two shows only how connections are handed out. There,
 * SO_RCVTIMEO ends a recv() that waited past --idle-timeout or --frame-timeout: here that is
 * what frees the one server from a client that went quiet, for the next one in the queue.
 */
#include "../common/conn.h"
#include "../common/serve_blocking.h"
#include "../common/server.h"
#include "../common/stats.h"

#include <errno.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    struct server_options opt;
    int listen_fd = server_start(argc, argv, "blocking",
                                 "blocking I/O, iterative: one connection at a time", &opt);
    server_accept_wakes_each_second(listen_fd); /* to look for a stop signal (server.h) */
    while (!server_stopping()) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC); /* blocks until a client comes */
        stats_add(STAT_calls_accept, 1);
        if (fd < 0) {
            if (errno == EINTR)
                stats_add(STAT_eintr, 1);
            else if (errno != ECONNABORTED && errno != EAGAIN) /* EAGAIN: 1 s, no client */
                conn_accept_failed(listen_fd, errno);          /* e.g. EMFILE: keep serving */
            continue;
        }
        if (conn_admit(fd, &opt))
            serve_blocking(conn_open(fd, &opt)); /* the others wait in the listen queue */
    }
    return server_finish();
}
