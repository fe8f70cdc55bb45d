/* serve_blocking.h - serve one connection with blocking calls, until it ends.
 *
 * The per-connection loop of the blocking models (blocking, threads, and later fork), shared
 * the way Unix Network Programming shares str_echo() between its servers: the models differ
 * only in how they run this loop (one at a time, one thread each, one process each).
 */
#ifndef IOMODELS_SERVE_BLOCKING_H
#define IOMODELS_SERVE_BLOCKING_H

#include "conn.h"

/* Read requests and answer them until the peer closes, an error occurs, or the server is
 * stopping; then close the connection. */
void serve_blocking(struct conn *c);

#endif
