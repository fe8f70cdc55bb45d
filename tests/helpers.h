/* helpers.h - what the Check tests share: start a built server, talk to it as a client. */
#ifndef IOMODELS_TEST_HELPERS_H
#define IOMODELS_TEST_HELPERS_H

#include "../common/proto.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TEST_IO_TIMEOUT_S 10 /* no test waits longer than this for a byte: it fails instead */

struct test_server {
    pid_t pid;
    int port;
    int stdout_fd; /* the server's stdout, after its "listening on" line */
    char log[128]; /* file holding the server's stderr */
};

/* Start build/<model> on 127.0.0.1, port 0, with extra arguments (NULL-terminated list, may
 * be NULL). Fails the test if it does not print "listening on ADDR:PORT". The server dies
 * with the test process if the test fails. */
void server_spawn(struct test_server *s, const char *model, const char *const *extra);

/* The same, with the server's descriptor limit (soft and hard) set to max_fds. */
void server_spawn_limited(struct test_server *s, const char *model, const char *const *extra,
                          int max_fds);

/* SIGTERM, wait for exit; returns the exit status (or 128+signal), and copies the server's
 * remaining stdout (the STATS line) into out. */
int server_stop(struct test_server *s, char *out, size_t out_size);

/* Read the server's log (stderr) so far into out; returns its length. */
size_t server_log(const struct test_server *s, char *out, size_t out_size);

/* A blocking client socket connected to 127.0.0.1:port, with receive and send timeouts. */
int client_connect(int port);
void send_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes; returns 0, or -1 on end of file, timeout or error. */
int recv_exact(int fd, void *buf, size_t len);
/* True if the peer closes (end of file or reset) within the I/O timeout, with no more data. */
int expect_closed(int fd);
/* Is something to read within ms milliseconds? */
int readable_within(int fd, int ms);

/* Send one request frame. */
void send_frame(int fd, uint8_t type, uint32_t seq, const void *payload, uint32_t len);
/* Read one reply: header, stamps, and a malloc'd payload (caller frees; NUL-terminated). */
int read_reply(int fd, struct proto_header *h, struct proto_stamps *st, uint8_t **payload);

/* Look up key in "key=value" text (lines or space separated); -1 if absent. */
long long stats_value(const char *text, const char *key);

/* Path of a built program: BUILD_DIR/name. */
const char *build_path(const char *name);

#endif
