/* server.h - what every server does around its model: start-up, stop signals, the exit line. */
#ifndef IOMODELS_SERVER_H
#define IOMODELS_SERVER_H

#include "options.h"

#include <signal.h>
#include <stdbool.h>

/* Parse the command line, set up the counters and the stop signals (SIGINT, SIGTERM; SIGPIPE
 * is ignored), raise the descriptor limit, and open the listening socket, printing
 * "listening on ADDR:PORT". Returns the listening socket (blocking). Dies on failure. */
int server_start(int argc, char **argv, const char *model, const char *summary,
                 struct server_options *opt);

/* True once SIGINT or SIGTERM has arrived. Blocking calls then fail with EINTR. */
bool server_stopping(void);

/* The stop signals, for a model that blocks them outside its wait call (pselect, ppoll,
 * epoll_pwait) or keeps them away from worker threads. */
const sigset_t *server_stop_signals(void);

/* Print the "STATS ..." exit line; returns the exit status for main(). */
int server_finish(void);

/* For set-up failures: print "model: what: strerror(errno)" and exit 1. */
_Noreturn void die(const char *what);

/* For a model that sleeps in a blocking accept(): a stop signal that lands after its last look
 * at server_stopping() but before accept() begins would not interrupt the accept(), and the
 * server would sleep on until the next client came. With this (SO_RCVTIMEO on the listening
 * socket) accept() gives up after a second with EAGAIN, and the model looks again. Accepted
 * sockets inherit the timeout; serve_blocking() sets their own. Dies on failure. */
void server_accept_wakes_each_second(int listen_fd);

/* Make a descriptor non-blocking (fcntl O_NONBLOCK). Returns 0 or -1 with errno. */
int set_nonblocking(int fd);

#endif
