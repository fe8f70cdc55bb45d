/* threads.c - blocking I/O, one thread per connection.
 *
 * The model: the same blocking calls as blocking.c, but every accepted connection gets a
 * thread of its own that sleeps in recv() for that client alone. Both phases of input still
 * block, but only the thread that asked; the kernel's scheduler does the multiplexing. This
 * is the practical form of blocking I/O (UNP chapter 26).
 *
 * Run:    build/threads -p 9000         then nc 127.0.0.1 9000 from several terminals
 * Watch:  every client is answered at once, unlike blocking.c. The price shows in STATS:
 *         calls_thread_create, one per connection, and ctx_voluntary, a context switch every
 *         time a thread sleeps in recv(). With thousands of connections there are thousands
 *         of threads, each with its own stack (256 KiB here), nearly all asleep.
 *
 * Signals: SIGINT/SIGTERM must reach the main thread (asleep in accept), so each worker is
 * started with them blocked; a worker's recv() is never interrupted by them.
 */
#include "../common/conn.h"
#include "../common/serve_blocking.h"
#include "../common/server.h"
#include "../common/stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define THREAD_STACK_SIZE (256 * 1024)

static void *connection_thread(void *arg)
{
    serve_blocking(arg); /* this thread alone sleeps in recv() */
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_options opt;
    int listen_fd =
        server_start(argc, argv, "threads", "blocking I/O, one thread per connection", &opt);
    server_accept_wakes_each_second(listen_fd); /* to look for a stop signal (server.h) */
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 ||
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
        pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE) != 0)
        die("pthread_attr");

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
        if (!conn_admit(fd, &opt))
            continue;
        /* Open it here, not in the thread, so --max-conns counts it before the next accept. */
        struct conn *c = conn_open(fd, &opt);
        sigset_t old;
        pthread_sigmask(SIG_BLOCK, server_stop_signals(), &old); /* inherited by the thread */
        pthread_t tid;
        int rc = pthread_create(&tid, &attr, connection_thread, c);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        stats_add(STAT_calls_thread_create, 1);
        if (rc != 0) {
            fprintf(stderr, "threads: pthread_create: %s\n", strerror(rc));
            conn_refuse(c, "no thread for this connection (pthread_create failed)");
        }
    }
    return server_finish();
}
