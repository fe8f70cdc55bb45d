/* serve_blocking.c - the blocking per-connection loop (see serve_blocking.h).
 *
 * recv() here does both phases of input at once: the process sleeps inside it until data
 * arrive (wait-data) and the kernel copies them before it returns (copy-data). The process
 * only learns the data were there when the call returns, so t_ready = t_copy_end, and the
 * copy stamps bracket the whole call: from outside it, waking up and copying look the same.
 */
#include "serve_blocking.h"
#include "server.h"
#include "stamp.h"
#include "stats.h"
#include "work.h"

#include <errno.h>

void serve_blocking(struct conn *c)
{
    while (!conn_done(c)) {
        size_t room;
        uint8_t *space = conn_in_space(c, &room);
        struct proto_stamps st = {0};
        st.wait = st.copy_begin = stamp_now();
        ssize_t n;
        do
            n = stamp_recv(c->fd, space, room, 0, &st.arrive); /* blocks: wait, then copy */
        while (n < 0 && errno == EINTR && !server_stopping());
        st.ready = st.copy_end = stamp_now();
        if (n < 0 && errno == EINTR) /* only when the server is stopping */
            break;
        if (n <= 0) {
            conn_read_ended(c, n, errno); /* every reply is sent already: conn_done() */
            continue;
        }
        conn_received(c, (size_t)n, &st);
        if (conn_flush(c) < 0) /* blocks until every reply byte is handed to the kernel */
            break;
        stats_account_cpu(); /* a forked server's child adds its CPU time (else: nothing) */
        if (c->opt->work)
            work_unit(); /* between calls is the only time a blocking server has for it */
    }
    conn_close(c);
}
