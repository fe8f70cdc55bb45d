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

/* The same, with one resource limit (soft and hard) set, e.g. RLIMIT_SIGPENDING. */
void server_spawn_rlimit(struct test_server *s, const char *model, const char *const *extra,
                         int resource, long limit);

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

/* ---- for the per-model suites ------------------------------------------------------------ */

/* One line of tests/models.list: a model and what it can do (the list's header says). */
struct test_model {
    char name[32];
    int iterative, arrival, many, fd_setsize, forks, may_skip;
    char stamps[16]; /* blocking, readiness, polling or completion */
};
#define TEST_MAX_MODELS 32

/* The models of tests/models.list that IOMODELS_TEST_MODELS="a b" picks (all if unset), read
 * once. A may_skip model whose server exits 77 on this machine is left out, with a SKIPPED
 * line. Returns how many; *list points at them. */
int test_models_load(const struct test_model **list);

/* n pseudo-random bytes (malloc'd); the same seed gives the same bytes. */
uint8_t *test_random_bytes(size_t n, unsigned seed);

/* client_connect() with SO_RCVBUF and SO_SNDBUF set before connecting (when > 0): buffers
 * the kernel will not grow, for a client that is to fall behind. */
int client_connect_buffers(int port, int rcvbuf, int sndbuf);

/* close() with SO_LINGER 0: the peer gets a reset (RST), not an end of file. */
void close_with_reset(int fd);

/* Read one reply: the successful echo of payload with this seq, byte for byte. */
void check_echo_reply(int fd, uint32_t seq, const void *payload, uint32_t len);
/* Send an ECHO, then check_echo_reply(). */
void check_echo(int fd, uint32_t seq, const void *payload, uint32_t len);

/* Ask for STATS on a new connection; returns the reply's text (malloc'd). */
char *server_stats(int port);
/* Ask again every 10 ms until key equals want (a server notices closes in its own time), for
 * at most TEST_IO_TIMEOUT_S; returns the last text (malloc'd) for the caller to check. */
char *server_stats_when(int port, const char *key, long long want);

/* Fails unless a new client gets an echo within TEST_IO_TIMEOUT_S (tries every 10 ms). */
void expect_served_soon(int port);

/* Start build/loadgen -p port --json json_path args... in the background (it dies with the
 * test); its stderr (progress lines) is readable from *progress_fd. */
pid_t loadgen_start(int port, const char *const *args, const char *json_path, int *progress_fd);

/* Read fd into seen (NUL-terminated, kept between calls) until text occurs `times` times:
 * 1, or 0 after TEST_IO_TIMEOUT_S without new bytes, at end of file, or with seen full. */
int wait_for_text(int fd, const char *text, int times, char *seen, size_t seen_size);

/* Wait up to timeout_s for a child to exit: its exit status (128+signal if killed), or -1
 * if it had not, after which it is killed. */
int wait_exit(pid_t pid, int timeout_s);

/* Run a shell command (printf-style) in the source tree, its stdout and stderr into out
 * (NUL-terminated, cut at size); returns its exit status (128 if it did not exit). */
int sh(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The last n characters of s: where a long output says what went wrong. */
const char *tail(const char *s, size_t n);

#endif
