/* loadgen.c - the load generator: drives any server in frame mode and measures each request.
 *
 * Non-blocking sockets and epoll: C connections, each sending ECHO frames of -s bytes.
 * Closed loop (the default): a connection sends its next request when the reply to the last
 * one is in, after --think MS. Open loop (--rate R): requests go out on a fixed schedule of R
 * per second in all, whatever the replies do, and latency is measured from the time each
 * request was due, so a stalled server cannot hide its stall (no coordinated omission). Every
 * reply is checked byte for byte, and its six server stamps are split into the phases of
 * input (common/phases.c). With --raw it drives any plain TCP echo server: bytes out, the
 * same bytes back, no frames and no stamps.
 *
 * -t N divides the connections among N threads ("workers"), each with its own epoll, its own
 * connections, samples and histogram; they are merged at the end. Worker 0 runs in the main
 * thread and alone decides the run's course: the warm-up, the measured window, the STATS
 * control connection, the progress line and the stall check. The others only read the
 * window's state (an atomic) and publish a few counters for it. See docs/loadgen.md.
 */
#include "../common/phases.h"
#include "../common/proto.h"
#include "../common/stamp.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S      1000000000ull
#define PATTERN_SLACK 4096u /* payloads are windows into one random pattern, offset by request */
#define MAX_KEYS      64
#define MAX_THREADS   64

struct config {
    const char *addr;
    int port;
    long conns;
    long idle; /* --idle: connections opened first that never send (the cost of watching them) */
    uint32_t size;
    double duration_s; /* -d */
    long requests;     /* -n: stop after this many measured requests (0: use -d) */
    double warmup_s;
    double ramp_s; /* --ramp: first wait until every connection has been answered once */
    double think_ms;
    double rate; /* --rate: open loop, requests/s in all (0: closed loop) */
    const char *csv;
    long sample;
    const char *json;
    unsigned seed;
    double timeout_s; /* give up when no reply comes for this long */
    bool quiet;
    int threads;     /* -t: workers, each with its share of the connections */
    bool raw;        /* --raw: plain bytes, no frames, no stamps, no STATS */
    long server_pid; /* --server-pid: read the server's CPU time from /proc */
};

struct pending { /* a request sent (or due) and not yet answered */
    uint32_t seq;
    uint8_t type;
    uint64_t t_send;  /* closed loop: just before send(); open loop: when it was due */
    int64_t send_lag; /* open loop: how late the client itself was in sending it */
};

struct worker;

struct lconn {
    int id, fd;
    struct worker *w; /* the worker (thread) that owns it */
    bool idle;        /* one of the --idle connections: opened, watched, never used */
    bool connected, dead;
    uint8_t *out;
    size_t out_start, out_end, out_cap;
    uint8_t *in;
    size_t in_len, in_cap;
    struct pending *q; /* FIFO ring of requests awaiting replies */
    size_t q_head, q_len, q_cap;
    uint32_t next_seq;
    bool thinking; /* in the think-time queue: its next request is already scheduled */
    uint64_t replies, measured;
    uint32_t watched;
};

struct sample {
    struct phases ph;
    int64_t send_lag; /* open loop only; PHASE_UNKNOWN in closed loop */
};

struct kv {
    char key[48];
    double value;
};
struct snapshot {
    bool have;
    char model[64];
    int n;
    struct kv kv[MAX_KEYS];
};

/* Counters a worker owns and worker 0 reads while the run goes on (the progress line, the
 * stall check, the ramp). Only the owner writes them, so a relaxed load and store is enough:
 * on x86 a plain mov, no locked instruction on the path of every reply. */
typedef _Atomic uint64_t counter;
#define PEEK(x)    atomic_load_explicit(&(x), memory_order_relaxed)
#define BUMP(x, n) atomic_store_explicit(&(x), PEEK(x) + (n), memory_order_relaxed)
#define SET(x, v)  atomic_store_explicit(&(x), (v), memory_order_relaxed)

struct errors {
    counter payload_mismatch, seq_mismatch, bad_header, error_replies, refused, connect_failed,
        closed_by_server, stalled;
};

/* The progress line's percentiles come from this coarse histogram of round trips (16 buckets
 * per power of two; a bucket's lower edge is within 6.25%), kept as replies arrive: sorting
 * samples in the event loop would stall the client and spoil the very tail it measures. The
 * final summary sorts every sample exactly. Worker 0 reads the workers' histograms once a
 * second and prints the difference from the last second's. */
#define HIST_SUB     16
#define HIST_BUCKETS (64 * HIST_SUB)

struct worker {
    int index;
    pthread_t thread;
    int epfd, wakefd;    /* its epoll; an eventfd worker 0 writes to when the window changes */
    struct lconn *conns; /* its active connections: conns[0..n) */
    long n;
    struct sample *samples; /* every measured reply (preallocated: see samples_reserve) */
    size_t n_samples, cap_samples;
    uint64_t csv_seen, last_recv; /* last_recv: the latest measured reply, for the window end */
    struct errors err;
    char refusal[160];     /* the server's reason, from the first "server full" reply */
    counter settled;       /* active connections answered at least once, or dead before that */
    counter active_dead;   /* active connections closed (by either side) */
    counter last_progress; /* when the last correct reply came */
    counter replies_total;
    counter hist[HIST_BUCKETS];
    _Atomic bool waiting, done; /* published: a live connection awaits a reply; drained */
    int *think_q; /* think-time queue: connections waiting to send their next request */
    uint64_t *think_due;
    size_t think_head, think_len;
    uint64_t next_due, gap; /* open loop: its share of the schedule */
    uint64_t rr;
    uint64_t cpu_start, cpu_used; /* its own CPU time (CLOCK_THREAD_CPUTIME_ID) in the window */
    int saw;                      /* the last window state it noted its CPU time at */
};

static struct config cfg = {
    .addr = "127.0.0.1",
    .port = 0,
    .conns = 1,
    .size = 64,
    .duration_s = 5,
    .warmup_s = 1,
    .sample = 1,
    .seed = 1,
    .timeout_s = 10,
    .threads = 1,
};
static struct lconn *all;   /* the --idle connections first, then the active ones */
static struct lconn *conns; /* the active ones: all + cfg.idle */
static long n_all;
static struct worker workers[MAX_THREADS];
static uint8_t *pattern;
static volatile sig_atomic_t interrupted;

/* The window, decided by worker 0 alone. t_start is written before state becomes MEASURING
 * (release), so a worker that sees MEASURING (acquire) sees t_start too. */
enum { WARMUP, MEASURING, FINISHED };
static _Atomic int state = WARMUP;
static _Atomic bool quit;           /* worker 0 ended the run: every worker stops */
static atomic_ulong measured_total; /* -n: replies measured by all workers */
static uint64_t t_start, t_end;     /* the measured window */
static uint64_t t_begin;            /* the start of the warm-up (and of the open-loop schedule) */

/* Results that worker 0 alone writes. */
static FILE *csv;
static struct snapshot stats_before, stats_after;
static double ramp_time;   /* --ramp: how long it took */
static long ramp_unserved; /* connections still unserved when the ramp ended */

static inline bool measuring(void)
{
    return atomic_load_explicit(&state, memory_order_acquire) == MEASURING;
}

static inline bool finished(void)
{
    return atomic_load_explicit(&state, memory_order_acquire) == FINISHED;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Per-connection complaints go to stderr, but only the first few of each kind: 9,000
 * connections refused at once must not bury the summary. (Per worker, with -t.) */
static bool complain(counter *count)
{
    uint64_t n = PEEK(*count) + 1;
    atomic_store_explicit(count, n, memory_order_relaxed);
    if (n == 6)
        fprintf(stderr, "loadgen: (more of these not shown; the summary counts them all)\n");
    return n <= 5;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        die("realloc");
    return q;
}

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
        die("clock_gettime CLOCK_THREAD_CPUTIME_ID");
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- connections ---------------------------------------------------------------------- */

static const uint8_t *payload_for(int conn, uint32_t seq)
{
    uint64_t h = (uint64_t)conn * 0x9E3779B97F4A7C15ull ^ (uint64_t)seq * 0xC2B2AE3D27D4EB4Full;
    return pattern + (h >> 17) % PATTERN_SLACK;
}

/* epoll_ctl only when the interest changes: in the steady state (one request out, its reply
 * awaited) a connection stays on EPOLLIN and costs no epoll_ctl at all. */
static void watch(struct lconn *c)
{
    uint32_t want = EPOLLIN | (c->out_end > c->out_start || !c->connected ? EPOLLOUT : 0);
    if (want == c->watched || c->dead)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->watched = want;
}

static void kill_conn(struct lconn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (!c->idle && c->replies == 0)
        BUMP(c->w->settled, 1);
    if (!c->idle)
        BUMP(c->w->active_dead, 1);
    close(c->fd);
}

/* End of file or a socket error: an error unless the window is over and nothing was
 * outstanding on the connection. */
static void closed_by_server(struct lconn *c, const char *why)
{
    if (!finished() || c->q_len > 0) {
        if (complain(&c->w->err.closed_by_server))
            fprintf(stderr, "loadgen: connection %d: the server closed it (%s)\n", c->id, why);
    }
    kill_conn(c);
}

static int flush(struct lconn *c)
{
    while (c->out_end > c->out_start) {
        ssize_t n = send(c->fd, c->out + c->out_start, c->out_end - c->out_start, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            closed_by_server(c, strerror(errno));
            return -1;
        }
        c->out_start += (size_t)n;
    }
    if (c->out_start == c->out_end)
        c->out_start = c->out_end = 0;
    watch(c);
    return 0;
}

/* Queue one request (a frame, or with --raw just the payload bytes) and send it. now is a
 * clock reading the caller just took, or 0 to take one here. */
static void queue_request(struct lconn *c, uint8_t type, uint64_t t_due, uint64_t now)
{
    uint32_t len = type == PROTO_ECHO ? cfg.size : 0;
    size_t head = cfg.raw ? 0 : PROTO_HEADER_SIZE, need = head + len;
    if (c->out_cap - c->out_end < need && c->out_start > 0) {
        memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
        c->out_end -= c->out_start;
        c->out_start = 0;
    }
    if (c->out_cap - c->out_end < need) {
        c->out_cap = c->out_end + need + c->out_cap;
        c->out = xrealloc(c->out, c->out_cap);
    }
    uint32_t seq = c->next_seq++;
    if (!cfg.raw)
        proto_write_request_header(c->out + c->out_end, type, seq, len);
    if (len)
        memcpy(c->out + c->out_end + head, payload_for(c->id, seq), len);
    c->out_end += need;
    if (c->q_len == c->q_cap) {
        size_t cap = c->q_cap ? 2 * c->q_cap : 4;
        struct pending *q = xrealloc(NULL, cap * sizeof *q);
        for (size_t i = 0; i < c->q_len; i++)
            q[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = q;
        c->q_head = 0;
        c->q_cap = cap;
    }
    /* Closed loop: the send clock starts just before send(); open loop: when it was due. */
    if (now == 0)
        now = stamp_now();
    size_t tail = c->q_head + c->q_len++;
    c->q[tail < c->q_cap ? tail : tail - c->q_cap] = (struct pending){
        seq, type, t_due ? t_due : now, t_due ? (int64_t)(now - t_due) : PHASE_UNKNOWN};
    flush(c);
}

/* ---- think-time queue: connections waiting to send their next request (FIFO = due order) */

static void think_push(struct lconn *c, uint64_t due)
{
    struct worker *w = c->w;
    size_t i = (w->think_head + w->think_len++) % (size_t)w->n;
    w->think_q[i] = (int)(c - w->conns);
    w->think_due[i] = due;
    c->thinking = true;
}

static void next_request(struct lconn *c)
{
    if (c->dead || finished() || cfg.rate > 0 || c->q_len > 0 || c->thinking)
        return; /* (a STATS reply can come in while the connection thinks) */
    if (cfg.think_ms > 0)
        think_push(c, stamp_now() + (uint64_t)(cfg.think_ms * 1e6));
    else
        queue_request(c, PROTO_ECHO, 0, 0);
}

/* ---- replies ------------------------------------------------------------------------------ */

/* A STATS line is kept only if it looks like the server's: a key of [a-z0-9_] and a number
 * (the model: printable ASCII). Anything else is not a figure, and must not reach the JSON. */
static bool stats_key_ok(const char *key, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') ||
              key[i] == '_'))
            return false;
    return len > 0;
}

static void parse_stats(const uint8_t *text, size_t len, struct snapshot *s)
{
    s->have = true;
    s->n = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        const char *line = (const char *)text + i;
        size_t ll = j - i;
        const char *eq = memchr(line, '=', ll);
        if (eq != NULL) {
            size_t kl = (size_t)(eq - line);
            char val[64];
            size_t vl = ll - kl - 1 < sizeof val - 1 ? ll - kl - 1 : sizeof val - 1;
            memcpy(val, eq + 1, vl);
            val[vl] = '\0';
            bool printable = vl > 0;
            for (size_t k = 0; k < vl; k++)
                printable = printable && val[k] > ' ' && val[k] < 0x7f;
            char *end;
            double v = strtod(val, &end);
            if (kl == 5 && memcmp(line, "model", 5) == 0) {
                if (printable)
                    snprintf(s->model, sizeof s->model, "%s", val);
            } else if (s->n < MAX_KEYS && kl < sizeof s->kv[0].key && stats_key_ok(line, kl) &&
                       vl > 0 && *end == '\0' && isfinite(v)) {
                memcpy(s->kv[s->n].key, line, kl);
                s->kv[s->n].key[kl] = '\0';
                s->kv[s->n].value = v;
                s->n++;
            }
        }
        i = j + 1;
    }
}

static int hist_bucket(uint64_t ns)
{
    if (ns < HIST_SUB)
        return (int)ns;
    int log2 = 63 - __builtin_clzll(ns);
    int sub = (int)((ns >> (log2 - 4)) & (HIST_SUB - 1));
    int b = (log2 - 3) * HIST_SUB + sub;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static double hist_value(int b) /* the lower edge of bucket b, in ns */
{
    if (b < HIST_SUB * 1)
        return b;
    int log2 = b / HIST_SUB + 3, sub = b % HIST_SUB;
    return (double)(1ull << log2) * (1.0 + sub / (double)HIST_SUB);
}

static double hist_percentile(const uint64_t *hist, uint64_t hist_n, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)hist_n), seen = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= want && seen > 0)
            return hist_value(b);
    }
    return 0;
}

/* Room for the samples: made once, before the run, for as many replies as the window can
 * plausibly hold (-n exactly; else a guess that grows by doubling if it is short), and
 * touched then, so that no page fault or copy lands inside the window. */
static void samples_reserve(struct worker *w, size_t n)
{
    w->samples = xrealloc(w->samples, n * sizeof *w->samples);
    memset(w->samples + w->cap_samples, 0, (n - w->cap_samples) * sizeof *w->samples);
    w->cap_samples = n;
}

static void record(struct lconn *c, const struct pending *p, const struct proto_stamps *st,
                   uint64_t t_recv)
{
    struct worker *w = c->w;
    if (cfg.requests && atomic_fetch_add_explicit(&measured_total, 1, memory_order_relaxed) >=
                            (unsigned long)cfg.requests)
        return; /* -n: exactly that many, among all workers */
    if (w->n_samples == w->cap_samples)
        samples_reserve(w, w->cap_samples ? 2 * w->cap_samples : 65536);
    struct sample *s = &w->samples[w->n_samples++];
    phases_derive(st, p->t_send, t_recv, &s->ph);
    s->send_lag = p->send_lag;
    c->measured++;
    w->last_recv = t_recv;
    if (csv && w->csv_seen++ % (uint64_t)cfg.sample == 0) {
        flockfile(csv); /* one row at a time, whichever worker writes it */
        fprintf(csv, "%d,%u,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu", c->id, p->seq,
                (unsigned long long)p->t_send, (unsigned long long)t_recv,
                (unsigned long long)st->wait, (unsigned long long)st->arrive,
                (unsigned long long)st->ready, (unsigned long long)st->copy_begin,
                (unsigned long long)st->copy_end, (unsigned long long)st->reply);
        const int64_t *v = &s->ph.wait_data;
        for (int i = 0; i < 6; i++) {
            if (v[i] == PHASE_UNKNOWN)
                fputs(",", csv);
            else
                fprintf(csv, ",%lld", (long long)v[i]);
        }
        fputc('\n', csv);
        funlockfile(csv);
    }
}

/* The oldest outstanding request, taken off the queue; false (counted) if there is none. */
static bool pop_pending(struct lconn *c, struct pending *p, uint32_t seq_seen)
{
    if (c->q_len == 0) {
        if (complain(&c->w->err.seq_mismatch))
            fprintf(stderr, "loadgen: connection %d: a reply nobody asked for (seq %u)\n", c->id,
                    seq_seen);
        return false;
    }
    *p = c->q[c->q_head];
    c->q_head = c->q_head + 1 == c->q_cap ? 0 : c->q_head + 1;
    c->q_len--;
    return true;
}

/* A correct ECHO reply: count it, and measure it if the window is open. */
static void echoed(struct lconn *c, const struct pending *p, const struct proto_stamps *st,
                   uint64_t t_recv)
{
    struct worker *w = c->w;
    if (c->replies++ == 0)
        BUMP(w->settled, 1);
    BUMP(w->replies_total, 1);
    if (t_recv >= p->t_send)
        BUMP(w->hist[hist_bucket(t_recv - p->t_send)], 1);
    if (measuring() && t_recv >= t_start)
        record(c, p, st, t_recv);
}

/* --raw: the reply to the oldest request is its own bytes, back. Returns the bytes used, 0
 * if they are not all here yet, or -1 if the connection is beyond repair. */
static ssize_t take_raw(struct lconn *c, const uint8_t *in, size_t len, uint64_t t_recv)
{
    if (len < cfg.size)
        return 0;
    struct pending p;
    if (!pop_pending(c, &p, 0))
        return -1;
    SET(c->w->last_progress, t_recv);
    if (memcmp(in, payload_for(c->id, p.seq), cfg.size) != 0) {
        if (complain(&c->w->err.payload_mismatch))
            fprintf(stderr, "loadgen: connection %d: request %u: echoed bytes differ\n", c->id,
                    p.seq);
        return (ssize_t)cfg.size;
    }
    static const struct proto_stamps none; /* no stamps: every phase is unknown */
    echoed(c, &p, &none, t_recv);
    return (ssize_t)cfg.size;
}

/* One whole reply frame is at in[0..len). Returns its size, or 0 if it is not all here yet,
 * or -1 if the connection is beyond repair. */
static ssize_t take_reply(struct lconn *c, const uint8_t *in, size_t len, uint64_t t_recv)
{
    if (len < PROTO_REPLY_PREFIX_SIZE)
        return 0;
    struct worker *w = c->w;
    struct proto_header h;
    struct proto_stamps st;
    if (proto_read_reply_prefix(in, &h, &st) < 0 || h.len > cfg.size + 65536u) {
        if (complain(&w->err.bad_header))
            fprintf(stderr, "loadgen: connection %d: the server sent a malformed reply header\n",
                    c->id);
        return -1;
    }
    size_t total = PROTO_REPLY_PREFIX_SIZE + h.len;
    if (len < total)
        return 0;
    const uint8_t *payload = in + PROTO_REPLY_PREFIX_SIZE;
    if (h.flags != PROTO_OK) {
        int shown = (int)(h.len > 150 ? 150 : h.len);
        bool full = h.flags == PROTO_ERR_SERVER_FULL;
        if (full && PEEK(w->err.refused) == 0)
            snprintf(w->refusal, sizeof w->refusal, "%.*s", shown, (const char *)payload);
        if (complain(full ? &w->err.refused : &w->err.error_replies))
            fprintf(stderr, "loadgen: connection %d: error reply (%s): %.*s\n", c->id,
                    proto_status_name(h.flags), shown, payload);
        return -1; /* the server closes after an error reply */
    }
    struct pending p;
    if (!pop_pending(c, &p, h.seq))
        return -1;
    if (h.seq != p.seq || h.type != p.type) {
        if (complain(&w->err.seq_mismatch))
            fprintf(stderr,
                    "loadgen: connection %d: reply seq %u type %u, expected seq %u type %u\n",
                    c->id, h.seq, h.type, p.seq, p.type);
        return -1;
    }
    SET(w->last_progress, t_recv); /* an answer in sequence, right or wrong */
    if (p.type == PROTO_STATS) {
        parse_stats(payload, h.len, stats_before.have ? &stats_after : &stats_before);
        return (ssize_t)total;
    }
    if (h.len != cfg.size || memcmp(payload, payload_for(c->id, p.seq), cfg.size) != 0) {
        if (complain(&w->err.payload_mismatch))
            fprintf(stderr, "loadgen: connection %d: seq %u: echoed payload differs\n", c->id,
                    p.seq);
        return (ssize_t)total;
    }
    echoed(c, &p, &st, t_recv);
    return (ssize_t)total;
}

/* One recv() per readiness, then every whole reply in the buffer is taken in place; what is
 * left of an incomplete one moves to the front once, at the end. */
static void readable(struct lconn *c)
{
    /* Small to begin with (a few replies' worth: 100 connections with 128 KiB each would
     * spread every recv() over 13 MB of cache), doubled while a big reply comes in. */
    if (c->in_cap - c->in_len < 2048) {
        c->in_cap =
            c->in_cap ? 2 * c->in_cap : 4096 + 2 * ((size_t)cfg.size + PROTO_REPLY_PREFIX_SIZE);
        c->in = xrealloc(c->in, c->in_cap);
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    uint64_t t_recv = stamp_now();
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        closed_by_server(c, n == 0 ? "end of file" : strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    size_t used = 0;
    for (;;) {
        ssize_t r = cfg.raw ? take_raw(c, c->in + used, c->in_len - used, t_recv)
                            : take_reply(c, c->in + used, c->in_len - used, t_recv);
        if (r < 0) {
            kill_conn(c);
            return;
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    if (used == c->in_len) {
        c->in_len = 0; /* the usual case: nothing left over */
    } else if (used) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    next_request(c);
}

/* ---- set-up --------------------------------------------------------------------------- */

static void connect_all(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg.port);
    int rc = getaddrinfo(cfg.addr, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "loadgen: bad address %s: %s\n", cfg.addr, gai_strerror(rc));
        exit(2);
    }
    /* The idle connections first: the server sees them before any active one (and, in
     * select, they take the low descriptors). Every connection is made in worker 0's epoll,
     * then moved to its own worker's. */
    long pending = 0;
    for (long i = 0; i < n_all; i++) {
        struct lconn *c = &all[i];
        c->idle = i < cfg.idle;
        c->id = (int)(c->idle ? cfg.conns + i : i - cfg.idle);
        c->next_seq = 1;
        c->w = c->idle ? &workers[0] : &workers[(i - cfg.idle) * cfg.threads / cfg.conns];
        c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            die("socket (raise the descriptor limit, or use fewer connections)");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            BUMP(c->w->err.connect_failed, 1);
            c->dead = true;
            close(c->fd);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(workers[0].epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl");
        c->watched = ev.events;
        pending++;
    }
    freeaddrinfo(ai);

    uint64_t deadline = stamp_now() + (uint64_t)(cfg.timeout_s * NS_PER_S);
    struct epoll_event evs[256];
    bool told = false; /* only the first failure is printed */
    while (pending > 0 && !interrupted) {
        uint64_t now = stamp_now();
        if (now >= deadline)
            break;
        int n = epoll_wait(workers[0].epfd, evs, 256, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct lconn *c = evs[i].data.ptr;
            if (c->connected || c->dead)
                continue;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                soerr = errno;
            pending--;
            if (soerr != 0) {
                if (!told)
                    fprintf(stderr, "loadgen: connect to %s:%d: %s\n", cfg.addr, cfg.port,
                            strerror(soerr));
                told = true;
                BUMP(c->w->err.connect_failed, 1);
                kill_conn(c);
                continue;
            }
            c->connected = true;
            if (c->w != &workers[0]) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(workers[0].epfd, EPOLL_CTL_DEL, c->fd, NULL) < 0 ||
                    epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                    die("epoll_ctl");
                c->watched = EPOLLIN;
            } else {
                watch(c);
            }
        }
    }
    for (long i = 0; i < n_all; i++)
        if (!all[i].connected && !all[i].dead) {
            BUMP(all[i].w->err.connect_failed, 1);
            kill_conn(&all[i]);
        }
}

/* The first live connection (NULL: none could be made). It is the STATS control connection
 * if worker 0 owns it: worker 0 alone keeps the snapshots. */
static struct lconn *control_conn(void)
{
    for (long i = 0; i < cfg.conns; i++)
        if (conns[i].connected && !conns[i].dead)
            return &conns[i];
    return NULL;
}

/* ---- summary ------------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct dist {
    size_t n;
    double p50, p90, p99, p999, max, mean;
};

static double pct(const int64_t *v, size_t n, double q)
{
    size_t i = (size_t)ceil(q * (double)n);
    if (i > 0)
        i--;
    if (i >= n)
        i = n - 1;
    return (double)v[i];
}

/* Field k of a sample: the six phases in struct phases order, then the send lag. */
static int64_t sample_field(const struct sample *s, size_t k)
{
    const int64_t ph[6] = {s->ph.wait_data, s->ph.notify,     s->ph.dispatch,
                           s->ph.copy_data, s->ph.processing, s->ph.round_trip};
    return k < 6 ? ph[k] : s->send_lag;
}

/* Distribution of one field (see sample_field) over the known values. */
static struct dist distribution(size_t field)
{
    struct dist d = {0};
    size_t total = 0;
    for (int t = 0; t < cfg.threads; t++)
        total += workers[t].n_samples;
    int64_t *v = malloc((total ? total : 1) * sizeof *v);
    if (v == NULL)
        die("malloc");
    double sum = 0;
    for (int t = 0; t < cfg.threads; t++)
        for (size_t i = 0; i < workers[t].n_samples; i++) {
            int64_t x = sample_field(&workers[t].samples[i], field);
            if (x != PHASE_UNKNOWN) {
                v[d.n++] = x;
                sum += (double)x;
            }
        }
    if (d.n > 0) {
        qsort(v, d.n, sizeof *v, cmp_i64);
        d.p50 = pct(v, d.n, 0.50) / 1e3;
        d.p90 = pct(v, d.n, 0.90) / 1e3;
        d.p99 = pct(v, d.n, 0.99) / 1e3;
        d.p999 = pct(v, d.n, 0.999) / 1e3;
        d.max = (double)v[d.n - 1] / 1e3;
        d.mean = sum / (double)d.n / 1e3;
    }
    free(v);
    return d;
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_dist(FILE *f, const char *name, struct dist d, bool last)
{
    if (d.n == 0)
        fprintf(f, "    \"%s\": null%s\n", name, last ? "" : ",");
    else
        fprintf(f,
                "    \"%s\": {\"n\": %zu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
                "\"p999\": %.3f, \"max\": %.3f, \"mean\": %.3f}%s\n",
                name, d.n, d.p50, d.p90, d.p99, d.p999, d.max, d.mean, last ? "" : ",");
}

/* STATS values that are levels, not counts: the after value is what it is, and per request
 * they mean nothing. */
static bool is_gauge(const char *key)
{
    static const char *const gauges[] = {"connections_open", "buffer_bytes", "buffer_bytes_peak",
                                         "rss_peak_kb",      "threads",      "stamps"};
    for (size_t i = 0; i < sizeof gauges / sizeof *gauges; i++)
        if (strcmp(key, gauges[i]) == 0)
            return true;
    return false;
}

static double snap_get(const struct snapshot *s, const char *key, bool *found)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->kv[i].key, key) == 0) {
            if (found)
                *found = true;
            return s->kv[i].value;
        }
    if (found)
        *found = false;
    return 0;
}

static uint64_t rusage_cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static const char *phase_names[6] = {"wait_data", "notify",     "dispatch",
                                     "copy_data", "processing", "round_trip"};

/* Print the summary on stdout and, with --json, into the file. server_cpu_us is the server's
 * CPU time over the window from /proc (--server-pid), or negative without it. Returns the exit
 * status. */
static int report(uint64_t client_cpu_us, double server_cpu_us)
{
    size_t n_samples = 0;
    struct {
        uint64_t payload_mismatch, seq_mismatch, bad_header, error_replies, refused, connect_failed,
            closed_by_server, stalled;
    } err = {0};
    const char *refusal = "";
    bool client_bound = false; /* some worker was busy more than 90% of the window */
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &workers[t];
        n_samples += w->n_samples;
        err.payload_mismatch += PEEK(w->err.payload_mismatch);
        err.seq_mismatch += PEEK(w->err.seq_mismatch);
        err.bad_header += PEEK(w->err.bad_header);
        err.error_replies += PEEK(w->err.error_replies);
        err.refused += PEEK(w->err.refused);
        err.connect_failed += PEEK(w->err.connect_failed);
        err.closed_by_server += PEEK(w->err.closed_by_server);
        err.stalled += PEEK(w->err.stalled);
        if (!refusal[0])
            refusal = w->refusal;
    }
    double window = t_end > t_start ? (double)(t_end - t_start) / 1e9 : 0;
    double rps = window > 0 ? (double)n_samples / window : 0;
    struct dist ph[6];
    for (int i = 0; i < 6; i++)
        ph[i] = distribution((size_t)i);
    struct dist lag = distribution(6);
    long connected = 0, never_served = 0;
    uint64_t min_m = UINT64_MAX, max_m = 0;
    double sx = 0, sxx = 0;
    for (long i = 0; i < cfg.conns; i++) {
        struct lconn *c = &conns[i];
        if (!c->connected)
            continue;
        connected++;
        if (c->replies == 0)
            never_served++;
        if (c->measured < min_m)
            min_m = c->measured;
        if (c->measured > max_m)
            max_m = c->measured;
        sx += (double)c->measured;
        sxx += (double)c->measured * (double)c->measured;
    }
    if (connected == 0)
        min_m = 0;
    double jain = sxx > 0 ? sx * sx / ((double)connected * sxx) : 0;
    double client_util = window > 0 ? (double)client_cpu_us / 1e6 / window : 0;
    for (int t = 0; t < cfg.threads; t++)
        client_bound =
            client_bound || (window > 0 && (double)workers[t].cpu_used / 1e9 / window > 0.9);
    double client_per_req = n_samples ? (double)client_cpu_us / (double)n_samples : 0;
    uint64_t errors = err.payload_mismatch + err.seq_mismatch + err.bad_header + err.error_replies +
                      err.refused + err.connect_failed + err.closed_by_server + err.stalled;
    long idle_connected = 0, idle_open = 0;
    for (long i = 0; i < cfg.idle; i++) {
        idle_connected += all[i].connected;
        idle_open += all[i].connected && !all[i].dead;
    }
    const char *model = stats_before.have && stats_before.model[0] ? stats_before.model : "unknown";
    double srv_req =
        snap_get(&stats_after, "requests", NULL) - snap_get(&stats_before, "requests", NULL);
    /* The server's counters cover the time between its answers to the two STATS requests. A
     * server that answers the control connection late (thousands of threads or processes
     * starting up) would give a window much shorter than ours: its per-request figures would
     * describe some other moment, so they are not given. */
    double srv_window = stats_after.have ? (snap_get(&stats_after, "elapsed_us", NULL) -
                                            snap_get(&stats_before, "elapsed_us", NULL)) /
                                               1e6
                                         : 0;
    bool srv_valid = stats_after.have && srv_req > 0 && srv_window >= 0.5 * window;
    /* The server's CPU time per request: from /proc (--server-pid) if asked for, else from its
     * STATS. */
    const char *srv_cpu_source = NULL;
    double srv_cpu_per_req = 0;
    bool srv_has_cpu;
    double srv_cpu = snap_get(&stats_after, "cpu_user_us", &srv_has_cpu) +
                     snap_get(&stats_after, "cpu_sys_us", NULL) -
                     snap_get(&stats_before, "cpu_user_us", NULL) -
                     snap_get(&stats_before, "cpu_sys_us", NULL);
    if (server_cpu_us >= 0 && n_samples > 0) {
        srv_cpu_source = "proc";
        srv_cpu_per_req = server_cpu_us / (double)n_samples;
    } else if (srv_valid && srv_has_cpu) {
        srv_cpu_source = "stats";
        srv_cpu_per_req = srv_cpu / srv_req;
    }

    printf("loadgen: %s, %ld connection%s, %u-byte messages, %s%s\n", model, cfg.conns,
           cfg.conns == 1 ? "" : "s", cfg.size, cfg.rate > 0 ? "open loop" : "closed loop",
           interrupted ? " (interrupted)" : "");
    printf("  requests %zu in %.2f s: %.0f req/s\n", n_samples, window, rps);
    printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", ph[5].p50,
           ph[5].p90, ph[5].p99, ph[5].p999, ph[5].max);
    if (cfg.raw)
        printf("  phases: no stamps in --raw mode");
    else
        printf("  phases us (median / p99):");
    for (int i = 0; i < 5 && !cfg.raw; i++) {
        if (ph[i].n)
            printf("  %s %.1f/%.1f", phase_names[i], ph[i].p50, ph[i].p99);
        else
            printf("  %s n/a", phase_names[i]);
    }
    if (lag.n)
        printf("\n  client send lag us (open loop, included in latency): p50 %.1f  p99 %.1f  "
               "max %.1f",
               lag.p50, lag.p99, lag.max);
    printf("\n  connections: %ld connected, %ld never served, replies per connection min %llu "
           "max %llu\n",
           connected, never_served, (unsigned long long)min_m, (unsigned long long)max_m);
    if (stats_after.have && srv_req <= 0)
        printf("  server: no per-request figures: its STATS replies show no requests\n");
    else if (stats_after.have && !srv_valid)
        printf("  server: no per-request figures: its STATS window was %.3f s of our %.3f s "
               "(the control connection was answered late)\n",
               srv_window, window);
    if (srv_valid) {
        double cpu = snap_get(&stats_after, "cpu_user_us", NULL) +
                     snap_get(&stats_after, "cpu_sys_us", NULL) -
                     snap_get(&stats_before, "cpu_user_us", NULL) -
                     snap_get(&stats_before, "cpu_sys_us", NULL);
        bool has_cpu, shown = false; /* a server that gives no CPU time is not shown as 0 */
        snap_get(&stats_after, "cpu_user_us", &has_cpu);
        if (has_cpu)
            printf("  server: %.2f us CPU per request", cpu / srv_req);
        else
            printf("  server: CPU n/a");
        for (int i = 0; i < stats_after.n; i++) {
            const char *k = stats_after.kv[i].key;
            static const char *const per_request[] = {
                "eagain",      "eintr",       "signals",    "signal_overflows",
                "submissions", "completions", "busy_polls", "work_units"};
            bool show = strncmp(k, "calls_", 6) == 0;
            for (size_t j = 0; j < sizeof per_request / sizeof *per_request; j++)
                show = show || strcmp(k, per_request[j]) == 0;
            if (show)
                printf(", %s %.2f", k,
                       (stats_after.kv[i].value - snap_get(&stats_before, k, NULL)) / srv_req);
            shown = shown || show;
        }
        printf("%s\n", shown ? " per request" : "");
    }
    if (cfg.ramp_s > 0)
        printf("  ramp: %s after %.2f s\n",
               ramp_unserved == 0 ? "every connection answered once" : "gave up waiting",
               ramp_time);
    if (cfg.idle)
        printf("  idle connections: %ld asked, %ld connected, %ld still open at the end\n",
               cfg.idle, idle_connected, idle_open);
    if (server_cpu_us >= 0)
        printf("  server (/proc/%ld): %.2f us CPU per request\n", cfg.server_pid,
               n_samples ? server_cpu_us / (double)n_samples : 0);
    printf("  client CPU %.0f%%, %.2f us per request", client_util * 100, client_per_req);
    if (cfg.threads > 1) {
        printf(" (threads:");
        for (int t = 0; t < cfg.threads; t++)
            printf(" %.0f%%", window > 0 ? (double)workers[t].cpu_used / 1e9 / window * 100 : 0);
        printf(")");
    }
    printf("%s\n", client_bound ? " - WARNING: the client was the bottleneck" : "");
    if (never_served > 0)
        printf("  note: %ld connection%s never got a reply: the server did not serve them\n",
               never_served, never_served == 1 ? "" : "s");
    if (err.refused)
        printf("  refused: %llu connection%s told \"server full\": %s\n",
               (unsigned long long)err.refused, err.refused == 1 ? "" : "s", refusal);
    if (errors)
        printf("  ERRORS: payload %llu, seq %llu, bad header %llu, error replies %llu, refused "
               "%llu, connect %llu, closed by server %llu, stalled %llu\n",
               (unsigned long long)err.payload_mismatch, (unsigned long long)err.seq_mismatch,
               (unsigned long long)err.bad_header, (unsigned long long)err.error_replies,
               (unsigned long long)err.refused, (unsigned long long)err.connect_failed,
               (unsigned long long)err.closed_by_server, (unsigned long long)err.stalled);

    if (cfg.json) {
        FILE *f = fopen(cfg.json, "w");
        if (f == NULL)
            die(cfg.json);
        fprintf(f, "{\n  \"tool\": \"loadgen\",\n  \"interrupted\": %s,\n",
                interrupted ? "true" : "false");
        fprintf(f, "  \"config\": {\"addr\": ");
        json_string(f, cfg.addr);
        fprintf(f,
                ", \"port\": %d, \"connections\": %ld, "
                "\"size\": %u, \"duration_s\": %g, \"requests\": %ld, \"warmup_s\": %g, "
                "\"think_ms\": %g, \"rate\": %g, \"mode\": \"%s\", \"seed\": %u, \"idle\": %ld, "
                "\"threads\": %d, \"raw\": %s, \"server_pid\": %ld},\n",
                cfg.port, cfg.conns, cfg.size, cfg.duration_s, cfg.requests, cfg.warmup_s,
                cfg.think_ms, cfg.rate, cfg.rate > 0 ? "open" : "closed", cfg.seed, cfg.idle,
                cfg.threads, cfg.raw ? "true" : "false", cfg.server_pid);
        fprintf(f, "  \"model\": ");
        json_string(f, model);
        fprintf(f, ",\n  \"window_s\": %.6f,\n  \"requests\": %zu,\n", window, n_samples);
        fprintf(f, "  \"throughput_rps\": %.3f,\n  \"latency_us\": {\n", rps);
        json_dist(f, "round_trip", ph[5], false);
        json_dist(f, "send_lag", lag, true);
        fprintf(f, "  },\n  \"phases_us\": {\n");
        for (int i = 0; i < 5; i++)
            json_dist(f, phase_names[i], ph[i], i == 4);
        fprintf(f,
                "  },\n  \"fairness\": {\"connected\": %ld, \"never_served\": %ld, "
                "\"min\": %llu, \"max\": %llu, \"jain\": %.4f},\n",
                connected, never_served, (unsigned long long)min_m, (unsigned long long)max_m,
                jain);
        fprintf(f,
                "  \"errors\": {\"total\": %llu, \"payload_mismatch\": %llu, \"seq_mismatch\": "
                "%llu, \"bad_header\": %llu, \"error_replies\": %llu, \"refused\": %llu, "
                "\"connect_failed\": %llu, \"closed_by_server\": %llu, \"stalled\": %llu},\n",
                (unsigned long long)errors, (unsigned long long)err.payload_mismatch,
                (unsigned long long)err.seq_mismatch, (unsigned long long)err.bad_header,
                (unsigned long long)err.error_replies, (unsigned long long)err.refused,
                (unsigned long long)err.connect_failed, (unsigned long long)err.closed_by_server,
                (unsigned long long)err.stalled);
        fprintf(f, "  \"ramp\": {\"s\": %.3f, \"unserved\": %ld},\n", ramp_time, ramp_unserved);
        fprintf(f, "  \"refusal_reason\": ");
        json_string(f, refusal);
        fprintf(f, ",\n  \"idle\": {\"asked\": %ld, \"connected\": %ld, \"open_at_end\": %ld},\n",
                cfg.idle, idle_connected, idle_open);
        fprintf(f, "  \"server_stats_delta\": {");
        for (int i = 0; stats_after.have && i < stats_after.n; i++) {
            const char *k = stats_after.kv[i].key;
            double d = is_gauge(k) ? stats_after.kv[i].value
                                   : stats_after.kv[i].value - snap_get(&stats_before, k, NULL);
            fprintf(f, "%s\"%s\": %.0f", i ? ", " : "", k, d);
        }
        fprintf(f, "},\n  \"server_window_s\": %.6f,\n  \"server_stats_per_request\": {",
                srv_window);
        const char *sep = "";
        for (int i = 0; srv_valid && i < stats_after.n; i++) {
            const char *k = stats_after.kv[i].key;
            if (is_gauge(k))
                continue; /* a gauge: per request it means nothing */
            double d = stats_after.kv[i].value - snap_get(&stats_before, k, NULL);
            fprintf(f, "%s\"%s\": %.4f", sep, k, d / srv_req);
            sep = ", ";
        }
        fprintf(f,
                "},\n  \"client\": {\"cpu_us\": %llu, \"cpu_util\": %.4f, \"bottleneck\": %s, "
                "\"cpu_us_per_request\": %.4f, \"threads\": %d, \"per_thread\": [",
                (unsigned long long)client_cpu_us, client_util, client_bound ? "true" : "false",
                client_per_req, cfg.threads);
        for (int t = 0; t < cfg.threads; t++) {
            struct worker *w = &workers[t];
            fprintf(f,
                    "%s{\"connections\": %ld, \"requests\": %zu, \"cpu_us\": %llu, "
                    "\"cpu_util\": %.4f}",
                    t ? ", " : "", w->n, w->n_samples, (unsigned long long)(w->cpu_used / 1000),
                    window > 0 ? (double)w->cpu_used / 1e9 / window : 0);
        }
        fprintf(f, "]},\n  \"server_cpu_source\": ");
        if (srv_cpu_source)
            fprintf(f, "\"%s\",\n  \"server_cpu_us_per_request\": %.4f\n}\n", srv_cpu_source,
                    srv_cpu_per_req);
        else
            fprintf(f, "null,\n  \"server_cpu_us_per_request\": null\n}\n");
        if (fclose(f) != 0)
            die(cfg.json);
    }
    if (interrupted)
        return 130;
    return errors ? 1 : 0;
}

/* ---- the run -------------------------------------------------------------------------- */

static void usage(FILE *to)
{
    fprintf(to,
            "usage: loadgen -p PORT [options]\n"
            "Drive an iomodels server with ECHO frames (or, with --raw, any TCP echo server)\n"
            "and measure every request.\n\n"
            "  -a, --addr ADDR      server address (default 127.0.0.1)\n"
            "  -p, --port PORT      server port (required)\n"
            "  -c, --conns N        concurrent connections (default 1)\n"
            "      --idle N         also open N connections first that never send (default 0)\n"
            "  -s, --size BYTES     payload bytes per request (default 64)\n"
            "  -d, --duration SECS  measured time (default 5)\n"
            "  -n, --requests N     stop after N measured requests instead\n"
            "      --warmup SECS    unmeasured time before (default 1)\n"
            "      --ramp SECS      before the warm-up, wait up to SECS until every connection\n"
            "                       has had a reply (default 0: no wait)\n"
            "      --think MS       closed loop: pause before each request (default 0)\n"
            "      --rate R         open loop: R requests/s in all, latency from the due time\n"
            "      --csv FILE       one row per measured request\n"
            "      --sample N       with --csv, keep every Nth row (default 1)\n"
            "      --json FILE      the summary as JSON\n"
            "      --seed N         payload seed (default 1)\n"
            "      --timeout SECS   give up when no reply comes for this long (default 10)\n"
            "  -t, --threads N      divide the connections among N threads (default 1)\n"
            "      --raw            plain bytes: send -s bytes, expect them back (no frames,\n"
            "                       stamps or STATS), for any TCP echo server\n"
            "      --server-pid PID read the server's CPU time from /proc/PID over the window\n"
            "  -q, --quiet          no progress line each second\n"
            "  -h, --help\n\n"
            "Exit status: 0 all good, 1 errors (mismatches, error replies, failures), 2 usage,\n"
            "130 interrupted (the files are still written).\n");
}

static double number(const char *name, const char *text, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "loadgen: %s must be a number from %g to %g, not \"%s\"\n", name, min, max,
                text);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum {
        O_IDLE = 254,
        O_RAMP,
        O_WARMUP,
        O_THINK,
        O_RATE,
        O_CSV,
        O_SAMPLE,
        O_JSON,
        O_SEED,
        O_TIMEOUT,
        O_RAW,
        O_SERVER_PID
    };
    static const struct option longopts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"conns", required_argument, NULL, 'c'},
        {"idle", required_argument, NULL, O_IDLE},
        {"size", required_argument, NULL, 's'},
        {"duration", required_argument, NULL, 'd'},
        {"requests", required_argument, NULL, 'n'},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"ramp", required_argument, NULL, O_RAMP},
        {"think", required_argument, NULL, O_THINK},
        {"rate", required_argument, NULL, O_RATE},
        {"csv", required_argument, NULL, O_CSV},
        {"sample", required_argument, NULL, O_SAMPLE},
        {"json", required_argument, NULL, O_JSON},
        {"seed", required_argument, NULL, O_SEED},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"threads", required_argument, NULL, 't'},
        {"raw", no_argument, NULL, O_RAW},
        {"server-pid", required_argument, NULL, O_SERVER_PID},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "a:p:c:s:d:n:t:qh", longopts, NULL)) != -1) {
        switch (o) {
        case 'a':
            cfg.addr = optarg;
            break;
        case 'p':
            cfg.port = (int)number("--port", optarg, 1, 65535);
            break;
        case 'c':
            cfg.conns = (long)number("--conns", optarg, 1, 1000000);
            break;
        case O_IDLE:
            cfg.idle = (long)number("--idle", optarg, 0, 1000000);
            break;
        case 's':
            cfg.size = (uint32_t)number("--size", optarg, 0, 1 << 30);
            break;
        case 'd':
            cfg.duration_s = number("--duration", optarg, 0.001, 86400);
            break;
        case 'n':
            cfg.requests = (long)number("--requests", optarg, 1, 1e12);
            break;
        case O_RAMP:
            cfg.ramp_s = number("--ramp", optarg, 0, 3600);
            break;
        case O_WARMUP:
            cfg.warmup_s = number("--warmup", optarg, 0, 3600);
            break;
        case O_THINK:
            cfg.think_ms = number("--think", optarg, 0, 3600e3);
            break;
        case O_RATE:
            cfg.rate = number("--rate", optarg, 0.001, 1e8);
            break;
        case O_CSV:
            cfg.csv = optarg;
            break;
        case O_SAMPLE:
            cfg.sample = (long)number("--sample", optarg, 1, 1e9);
            break;
        case O_JSON:
            cfg.json = optarg;
            break;
        case O_SEED:
            cfg.seed = (unsigned)number("--seed", optarg, 0, 4294967295.0);
            break;
        case O_TIMEOUT:
            cfg.timeout_s = number("--timeout", optarg, 0.1, 3600);
            break;
        case 't':
            cfg.threads = (int)number("--threads", optarg, 1, MAX_THREADS);
            break;
        case O_RAW:
            cfg.raw = true;
            break;
        case O_SERVER_PID:
            cfg.server_pid = (long)number("--server-pid", optarg, 1, 4194304);
            break;
        case 'q':
            cfg.quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc || cfg.port == 0) {
        fprintf(stderr,
                optind < argc ? "loadgen: unexpected argument \"%s\"\n"
                              : "loadgen: -p PORT is required\n",
                argv[optind]);
        usage(stderr);
        exit(2);
    }
    if (cfg.threads > cfg.conns) {
        fprintf(stderr, "loadgen: -t %d needs at least as many connections (-c %ld)\n", cfg.threads,
                cfg.conns);
        exit(2);
    }
    if (cfg.raw && cfg.size == 0) {
        fprintf(stderr, "loadgen: --raw needs -s of at least 1 byte\n");
        exit(2);
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        (rlim_t)(cfg.conns + cfg.idle) + 16 + 2 * (rlim_t)cfg.threads > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %ld connections need more descriptors than the limit (%llu)\n",
                cfg.conns + cfg.idle, (unsigned long long)rl.rlim_cur);
        exit(2);
    }
}

/* ---- the server's CPU time from /proc (--server-pid) ------------------------------------ */

/* The CPU time, in ns, of every thread the process has now: the first field of
 * /proc/PID/task/TID/schedstat is the thread's time on a CPU (user + system), counted by the
 * scheduler in nanoseconds. (A thread that exits within the window takes its time with it; a
 * child process is not counted.) Negative if the process cannot be read. */
static double proc_cpu_ns(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    double sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[128];
        snprintf(file, sizeof file, "/proc/%ld/task/%.20s/schedstat", pid, e->d_name);
        FILE *f = fopen(file, "r");
        unsigned long long ns;
        if (f == NULL)
            continue; /* the thread has just exited */
        if (fscanf(f, "%llu", &ns) == 1)
            sum += (double)ns;
        fclose(f);
    }
    closedir(d);
    return sum;
}

/* ---- the run -------------------------------------------------------------------------- */

/* Worker 0's own state: the window, the STATS control connection, the progress line. */
static struct {
    struct lconn *ctl; /* the control connection (NULL: no STATS, e.g. --raw) */
    bool ramping, asked_before, asked_after, check_stall;
    uint64_t ramp_end, warm_end, next_tick, end_deadline;
    uint64_t cpu_start, cpu_used;     /* the process's CPU time (every thread) in the window */
    double srv_cpu_start, srv_cpu_ns; /* --server-pid: the server's, from /proc */
    uint64_t last_replies, prev_hist[HIST_BUCKETS];
} run;

static void set_state(int s)
{
    atomic_store_explicit(&state, s, memory_order_release);
    for (int t = 1; t < cfg.threads; t++) { /* wake the others: they note their CPU time */
        uint64_t one = 1;
        if (write(workers[t].wakefd, &one, sizeof one) < 0)
            die("write eventfd");
    }
}

/* Is a live connection of w waiting for a reply? */
static bool any_waiting(const struct worker *w)
{
    for (long i = 0; i < w->n; i++)
        if (!w->conns[i].dead && w->conns[i].q_len > 0)
            return true;
    return false;
}

/* Has every connection of w that was ever served its last replies? */
static bool drained(const struct worker *w)
{
    for (long i = 0; i < w->n; i++)
        if (!w->conns[i].dead && w->conns[i].replies > 0 && w->conns[i].q_len > 0)
            return false;
    return true;
}

/* The stall timeout: a live connection waits for a reply, and no correct reply has come on
 * any connection for more than --timeout. Counted and reported once; the run then ends. While
 * the other workers run, worker 0 goes by what they published at their last tick. */
static bool stalled(uint64_t now, bool joined)
{
    bool waiting = false;
    uint64_t last = 0;
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &workers[t];
        waiting = waiting || (t == 0 || joined ? any_waiting(w) : atomic_load(&w->waiting));
        if (PEEK(w->last_progress) > last)
            last = PEEK(w->last_progress);
    }
    if (!waiting || now - last <= (uint64_t)(cfg.timeout_s * NS_PER_S))
        return false;
    BUMP(workers[0].err.stalled, 1);
    fprintf(stderr, "loadgen: no reply for %.1f s: giving up\n", cfg.timeout_s);
    return true;
}

static void progress(uint64_t now)
{
    double since = (double)(now - t_begin) / 1e9;
    uint64_t replies = 0, errors = 0, hist[HIST_BUCKETS], hist_n = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        uint64_t sum = 0;
        for (int t = 0; t < cfg.threads; t++)
            sum += PEEK(workers[t].hist[b]);
        hist[b] = sum - run.prev_hist[b]; /* this second's round trips */
        run.prev_hist[b] = sum;
        hist_n += hist[b];
    }
    for (int t = 0; t < cfg.threads; t++) {
        struct errors *e = &workers[t].err;
        replies += PEEK(workers[t].replies_total);
        errors += PEEK(e->payload_mismatch) + PEEK(e->seq_mismatch) + PEEK(e->bad_header) +
                  PEEK(e->error_replies) + PEEK(e->refused) + PEEK(e->closed_by_server) +
                  PEEK(e->connect_failed);
    }
    fprintf(
        stderr, "loadgen: %5.1f s %s  %llu replies/s  p50 ~%.1f us  p99 ~%.1f us  errors %llu\n",
        since, measuring() ? "measuring" : (finished() ? "finishing" : "warm-up  "),
        (unsigned long long)(replies - run.last_replies), hist_percentile(hist, hist_n, 0.5) / 1e3,
        hist_percentile(hist, hist_n, 0.99) / 1e3, (unsigned long long)errors);
    run.last_replies = replies;
}

/* Worker 0, at the top of each pass of its loop: move the run along (ramp, warm-up, window,
 * draining, progress, stall). Lowers *wake to the next time it has something to do. Returns
 * true when the run is over. */
static bool coordinate(uint64_t now, uint64_t *wake)
{
    long dead = 0, settled = 0;
    for (int t = 0; t < cfg.threads; t++) {
        dead += (long)PEEK(workers[t].active_dead);
        settled += (long)PEEK(workers[t].settled);
    }
    if (dead == cfg.conns)
        return true; /* every connection is gone: nothing is left to measure (window ends now) */
    if (run.ramping && (settled >= cfg.conns || now >= run.ramp_end)) {
        run.ramping = false;
        ramp_time = (double)(now - t_begin) / 1e9;
        ramp_unserved = cfg.conns - settled;
        run.warm_end = now + (uint64_t)(cfg.warmup_s * NS_PER_S);
    }
    struct lconn *ctl = run.ctl;
    if (!measuring() && !finished() && now >= run.warm_end) {
        t_start = now;
        t_end = cfg.requests ? UINT64_MAX : t_start + (uint64_t)(cfg.duration_s * NS_PER_S);
        run.cpu_start = rusage_cpu_us();
        if (cfg.server_pid)
            run.srv_cpu_start = proc_cpu_ns(cfg.server_pid);
        set_state(MEASURING);
        if (ctl && !ctl->dead) {
            queue_request(ctl, PROTO_STATS, cfg.rate > 0 ? now : 0, 0);
            run.asked_before = true;
        }
    }
    if (measuring() && (now >= t_end || (cfg.requests && atomic_load(&measured_total) >=
                                                             (unsigned long)cfg.requests))) {
        t_end = now;
        run.cpu_used = rusage_cpu_us() - run.cpu_start; /* the window only, not the draining */
        if (cfg.server_pid)
            run.srv_cpu_ns = proc_cpu_ns(cfg.server_pid) - run.srv_cpu_start;
        run.end_deadline = now + (uint64_t)(cfg.timeout_s * NS_PER_S);
        set_state(FINISHED);
        if (ctl && !ctl->dead && run.asked_before) {
            queue_request(ctl, PROTO_STATS, cfg.rate > 0 ? now : 0, 0);
            run.asked_after = true;
        }
    }
    if (finished()) {
        bool all_drained = drained(&workers[0]); /* served connections have their last replies */
        for (int t = 1; t < cfg.threads && all_drained; t++)
            all_drained = atomic_load(&workers[t].done);
        if ((!run.asked_after || stats_after.have || ctl->dead) && all_drained)
            return true;
        if (now >= run.end_deadline) {
            run.check_stall = true; /* a stall that began late in the window: the next tick */
            return true;            /* would be too late (checked once every worker stopped) */
        }
    }
    if (now >= run.next_tick) {
        if (!cfg.quiet)
            progress(now);
        run.next_tick += NS_PER_S;
        if (stalled(now, false)) {
            if (!finished())
                t_end = now;
            return true;
        }
    }
    if (run.next_tick < *wake)
        *wake = run.next_tick;
    if (!measuring() && !finished() && run.warm_end < *wake)
        *wake = run.warm_end;
    if (run.ramping && run.ramp_end < *wake)
        *wake = run.ramp_end;
    if (measuring() && t_end < *wake)
        *wake = t_end;
    if (finished() && run.end_deadline < *wake)
        *wake = run.end_deadline;
    return false;
}

/* Note the worker's own CPU time when it first sees the window open, and when it sees it
 * closed: the figures for its saturation warning. */
static void note_cpu(struct worker *w)
{
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (s >= MEASURING && w->saw < MEASURING) {
        w->cpu_start = thread_cpu_ns();
        w->saw = MEASURING;
    }
    if (s == FINISHED && w->saw < FINISHED) {
        w->cpu_used = thread_cpu_ns() - w->cpu_start;
        w->saw = FINISHED;
    }
}

/* One worker's event loop: its own open-loop schedule or think times, its own sockets. Worker 0
 * also runs the window (coordinate()). */
static void run_worker(struct worker *w)
{
    uint64_t next_tick = t_begin + NS_PER_S;
    for (long i = 0; i < w->n; i++)
        next_request(&w->conns[i]);
    struct epoll_event evs[512];
    while (!interrupted && !atomic_load_explicit(&quit, memory_order_relaxed)) {
        uint64_t now = stamp_now();
        uint64_t wake = UINT64_MAX;
        if (w->index == 0 && coordinate(now, &wake))
            break;
        note_cpu(w);
        bool fin = finished();
        if (w->index > 0 && fin && drained(w)) {
            atomic_store(&w->done, true);
            break;
        }
        if (cfg.rate > 0 && !fin) {
            while (w->next_due <= now) { /* open loop: whatever the replies do */
                for (long k = 0; k < w->n; k++) {
                    struct lconn *c = &w->conns[w->rr++ % (uint64_t)w->n];
                    if (!c->dead) {
                        queue_request(c, PROTO_ECHO, w->next_due, 0);
                        break;
                    }
                }
                w->next_due += w->gap;
            }
            if (w->next_due < wake)
                wake = w->next_due;
        }
        while (w->think_len > 0 && w->think_due[w->think_head] <= now) {
            struct lconn *c = &w->conns[w->think_q[w->think_head]];
            w->think_head = (w->think_head + 1) % (size_t)w->n;
            w->think_len--;
            c->thinking = false;
            if (!c->dead && !fin)
                queue_request(c, PROTO_ECHO, 0, 0);
        }
        if (w->think_len > 0 && w->think_due[w->think_head] < wake)
            wake = w->think_due[w->think_head];
        if (w->index > 0) { /* publish for worker 0's stall check, once a second */
            if (now >= next_tick) {
                atomic_store(&w->waiting, any_waiting(w));
                next_tick += NS_PER_S;
            }
            if (next_tick < wake)
                wake = next_tick;
        }
        /* Sleep until the next thing that is due. */
        now = stamp_now();
        struct timespec ts = {0, 0};
        if (wake > now)
            ts = (struct timespec){(time_t)((wake - now) / NS_PER_S),
                                   (long)((wake - now) % NS_PER_S)};
        int n = epoll_pwait2(w->epfd, evs, 512, &ts, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_pwait2");
        }
        for (int i = 0; i < n; i++) {
            struct lconn *c = evs[i].data.ptr;
            if (c == NULL) { /* the wake-up eventfd */
                uint64_t count;
                if (read(w->wakefd, &count, sizeof count) < 0 && errno != EAGAIN)
                    die("read eventfd");
                continue;
            }
            if (c->dead)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                readable(c);
            if (!c->dead && (evs[i].events & EPOLLOUT))
                flush(c);
        }
    }
    note_cpu(w);
    if (w->saw == MEASURING) /* the run ended inside the window */
        w->cpu_used = thread_cpu_ns() - w->cpu_start;
}

static void *worker_thread(void *arg)
{
    run_worker(arg);
    return NULL;
}
int main(int argc, char **argv)
{
    parse_args(argc, argv);
    raise_fd_limit();
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Sleep as exactly as the kernel can: the default 50 us timer slack would add itself to
     * every think time and every open-loop send. */
    if (prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0) < 0)
        die("prctl PR_SET_TIMERSLACK");

    pattern = malloc((size_t)cfg.size + PATTERN_SLACK);
    if (pattern == NULL)
        die("malloc");
    srandom(cfg.seed);
    for (size_t i = 0; i < (size_t)cfg.size + PATTERN_SLACK; i++)
        pattern[i] = (uint8_t)(random() >> 7);
    n_all = cfg.idle + cfg.conns;
    n_all = cfg.idle + cfg.conns;
    all = calloc((size_t)n_all, sizeof *all);
    if (all == NULL)
        die("calloc");
    conns = all + cfg.idle;
    if (cfg.csv) {
        csv = fopen(cfg.csv, "w");
        if (csv == NULL)
            die(cfg.csv);
        fputs("conn,seq,client_send,client_recv,t_wait,t_arrive,t_ready,t_copy_begin,"
              "t_copy_end,t_reply,wait_data_ns,notify_ns,dispatch_ns,copy_data_ns,"
              "processing_ns,round_trip_ns\n",
              csv);
    }
    /* Worker t gets the active connections i with i * threads / conns == t: contiguous
     * shares that differ by one at most. */
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &workers[t];
        w->index = t;
        long first = ((long)t * cfg.conns + cfg.threads - 1) / cfg.threads;
        long end = ((long)(t + 1) * cfg.conns + cfg.threads - 1) / cfg.threads;
        w->conns = conns + first;
        w->n = end - first;
        w->think_q = calloc((size_t)w->n, sizeof *w->think_q);
        w->think_due = calloc((size_t)w->n, sizeof *w->think_due);
        if (w->think_q == NULL || w->think_due == NULL)
            die("calloc");
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0)
            die("epoll_create1");
        w->wakefd = -1;
        if (t > 0) { /* worker 0 wakes the others with it when the window opens or closes */
            w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
            if (w->wakefd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) < 0)
                die("eventfd");
        }
        /* -n: room for every sample (one worker may get them all); else a start, doubled
         * when full */
        samples_reserve(w, cfg.requests ? (size_t)cfg.requests + 1 : 65536);
    }

    connect_all();
    struct lconn *first = control_conn();
    if (first == NULL) {
        fprintf(stderr, "loadgen: no connection to %s:%d could be made\n", cfg.addr, cfg.port);
        return 1;
    }
    /* The STATS control connection: worker 0's first live one (--raw: none). */
    run.ctl = !cfg.raw && first->w == &workers[0] ? first : NULL;

    t_begin = stamp_now();
    /* --ramp: thousands of connections (a thread or process each) take a while to be served
     * for the first time; the warm-up starts once they all have been, or when the ramp's time
     * is up. A connection still unserved then shows up as "never served". */
    run.ramp_end = t_begin + (uint64_t)(cfg.ramp_s * NS_PER_S);
    run.ramping = cfg.ramp_s > 0;
    run.warm_end = run.ramping ? UINT64_MAX : t_begin + (uint64_t)(cfg.warmup_s * NS_PER_S);
    run.next_tick = t_begin + NS_PER_S;
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &workers[t];
        SET(w->last_progress, t_begin);
        if (cfg.rate > 0) { /* the workers' schedules interleave into one of R per second */
            w->gap = (uint64_t)(1e9 * cfg.threads / cfg.rate);
            w->next_due = t_begin + (uint64_t)(1e9 * t / cfg.rate);
        }
    }

    /* The other workers take no signals: SIGINT and SIGTERM go to worker 0, whose wait they
     * interrupt. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int t = 1; t < cfg.threads; t++) {
        int rc = pthread_create(&workers[t].thread, NULL, worker_thread, &workers[t]);
        if (rc != 0) {
            errno = rc;
            die("pthread_create");
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    run_worker(&workers[0]);
    atomic_store(&quit, true);
    for (int t = 1; t < cfg.threads; t++) {
        uint64_t one = 1;
        if (write(workers[t].wakefd, &one, sizeof one) < 0)
            die("write eventfd");
        int rc = pthread_join(workers[t].thread, NULL);
        if (rc != 0) {
            errno = rc;
            die("pthread_join");
        }
    }
    if (run.check_stall)
        stalled(stamp_now(), true);
    if (measuring()) { /* interrupted, stalled or every connection gone */
        t_end = stamp_now();
        run.cpu_used = rusage_cpu_us() - run.cpu_start;
        if (cfg.server_pid)
            run.srv_cpu_ns = proc_cpu_ns(cfg.server_pid) - run.srv_cpu_start;
    } else if (!finished()) {
        t_end = t_start;
    }
    /* Another worker may have measured a reply in the moment between worker 0's reading of
     * the clock that ended the window and its telling them: the window covers it too. */
    for (int t = 0; t < cfg.threads; t++)
        if (workers[t].n_samples > 0 && workers[t].last_recv > t_end)
            t_end = workers[t].last_recv;
    if (csv && fclose(csv) != 0)
        die(cfg.csv);
    double srv_cpu_us = -1;
    if (cfg.server_pid && run.srv_cpu_start >= 0 && run.srv_cpu_ns >= 0)
        srv_cpu_us = run.srv_cpu_ns / 1e3;
    return report(run.cpu_used, srv_cpu_us);
}
